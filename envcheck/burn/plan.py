"""Plan a burn-in: the options as numbers, and one :class:`BurnJob` per device for its worker.

Plain data and pure functions (no torch, no NVML): the lab spec's ``[burn]`` section parses its durations
here too. A job travels to its worker (envcheck.burn.worker) as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envcheck.devices.model import DeviceInfo

#: ``--dtype``: what the matmuls compute in. bf16 is the default on a GPU (what training runs in, and the
#: tensor cores' full load); a CPU burn computes in fp32 (CPUs have no fast bf16 path to speak of).
DTYPES = ("bf16", "fp16", "tf32", "fp32")
DEFAULT_GPU_DTYPE = "bf16"
CPU_DTYPE = "fp32"
#: ``--duration`` when none is given: ten minutes, long enough for a GPU to reach its steady temperature
#: (minutes 2 to 5 on an air-cooled board) and to stay there a while.
DEFAULT_DURATION = "10m"
#: How often each worker recomputes the fixed product and compares it with the first result.
CHECK_EVERY_S = 10.0
#: How often each worker reports its throughput: the sampler's interval, so the two line up.
REPORT_EVERY_S = 1.0
#: Past its duration, how long a worker may take to finish its last batch and check before it is called hung.
FINISH_S = 30.0
#: Silence (no throughput report) after which a loading worker is called hung: a batch takes a fraction of a
#: second, and a check on the largest working set a few seconds.
SILENCE_S = 60.0


@dataclass(frozen=True)
class BurnJob:
    """One device's burn, for one worker process."""

    device: DeviceInfo
    dtype: str
    duration_s: float
    #: ``CUDA_VISIBLE_DEVICES`` for the worker: its GPU alone ("" for a CPU burn).
    visible: str
    check_every_s: float = CHECK_EVERY_S
    report_every_s: float = REPORT_EVERY_S
    startup_s: float = 100.0
    silence_s: float = SILENCE_S
    #: The matmul's size (n × n × n); None: the worker's default for its device.
    size: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device.to_json(),
            "dtype": self.dtype,
            "duration_s": self.duration_s,
            "visible": self.visible,
            "check_every_s": self.check_every_s,
            "report_every_s": self.report_every_s,
            "startup_s": self.startup_s,
            "silence_s": self.silence_s,
            "size": self.size,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BurnJob:
        fields = {k: v for k, v in data.items() if k != "device"}
        return cls(device=DeviceInfo.from_json(data["device"]), **fields)

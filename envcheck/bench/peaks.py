"""Datasheet peaks: dense (no 2:4 sparsity) tensor throughput per dtype, and memory bandwidth.

Every figure names its source. Datasheets quote tensor rates "with sparsity" (marked *); the dense
rate is half of that, and that halving is stated next to each number. GeForce cards are listed at
their rate *with FP32 accumulation*, which is what torch's matmuls use and which is half the
FP16-accumulate rate NVIDIA's marketing quotes. ``fp32`` is the non-tensor FP32 rate (what a matmul
with TF32 disabled can reach). A card not in the table gets no fraction of peak: nothing is guessed.

Names are matched exactly (after trimming and case-folding) against what torch / NVML report, because
near-miss names are different cards: "NVIDIA H200 NVL" is not an H200 SXM, "NVIDIA A10G" is not an
A10, and a MIG slice ("... MIG 1g.10gb") has a fraction of the whole card's peak.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envcheck.devices.model import DeviceInfo


@dataclass(frozen=True)
class Peak:
    model: str
    names: tuple[str, ...]  # device names as torch.cuda.get_device_name / NVML report them
    tflops: dict[str, float]  # dtype -> dense TFLOP/s
    memory_gbs: float  # GB/s (10^9 bytes)
    source: str

    def for_key(self, key: str) -> float | None:
        """The peak for a result's ``peak_key``: a dtype in TFLOP/s, or ``memory`` in GB/s."""
        if key == "memory":
            return self.memory_gbs
        return self.tflops.get(key)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Peak:
        """Back from :meth:`to_json`: the entry travels to a bench worker in its job."""
        return cls(data["model"], tuple(data["names"]), dict(data["tflops"]), data["memory_gbs"], data["source"])


_A100 = {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}  # A100 datasheet: TF32 312*, BF16/FP16 624*
_H100_SXM = {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5, "fp8": 1979.0}  # datasheet 989*/1979*/3958*

PEAKS: tuple[Peak, ...] = (
    Peak(
        "V100 SXM2",
        ("Tesla V100-SXM2-16GB", "Tesla V100-SXM2-32GB"),
        {"fp32": 15.7, "fp16": 125.0},
        900.0,
        "NVIDIA Tesla V100 datasheet (SXM2): FP32 15.7, Tensor 125 TFLOPS, HBM2 900 GB/s; no TF32/BF16",
    ),
    Peak(
        "V100 PCIe",
        ("Tesla V100-PCIE-16GB", "Tesla V100-PCIE-32GB"),
        {"fp32": 14.0, "fp16": 112.0},
        900.0,
        "NVIDIA Tesla V100 datasheet (PCIe): FP32 14, Tensor 112 TFLOPS, HBM2 900 GB/s",
    ),
    Peak(
        "V100S PCIe",
        ("Tesla V100S-PCIE-32GB",),
        {"fp32": 16.4, "fp16": 130.0},
        1134.0,
        "NVIDIA V100S datasheet: FP32 16.4, Tensor 130 TFLOPS, HBM2 1134 GB/s",
    ),
    Peak(
        "A10",
        ("NVIDIA A10",),
        {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0},
        600.0,
        "NVIDIA A10 datasheet: FP32 31.2; TF32 125*, BF16/FP16 250* TFLOPS (sparse, halved); GDDR6 600 GB/s",
    ),
    Peak(
        "A100 SXM4 40GB",
        ("NVIDIA A100-SXM4-40GB",),
        _A100,
        1555.0,
        "NVIDIA A100 datasheet (40GB SXM): FP32 19.5; TF32 312*, BF16/FP16 624* (halved); HBM2 1555 GB/s",
    ),
    Peak(
        "A100 SXM4 80GB",
        ("NVIDIA A100-SXM4-80GB",),
        _A100,
        2039.0,
        "NVIDIA A100 datasheet (80GB SXM): FP32 19.5; TF32 312*, BF16/FP16 624* (halved); HBM2e 2039 GB/s",
    ),
    Peak(
        "A100 PCIe 40GB",
        ("NVIDIA A100-PCIE-40GB",),
        _A100,
        1555.0,
        "NVIDIA A100 datasheet (40GB PCIe): FP32 19.5; TF32 312*, BF16/FP16 624* (halved); HBM2 1555 GB/s",
    ),
    Peak(
        "A100 PCIe 80GB",
        ("NVIDIA A100 80GB PCIe", "NVIDIA A100-PCIE-80GB"),
        _A100,
        1935.0,
        "NVIDIA A100 datasheet (80GB PCIe): FP32 19.5; TF32 312*, BF16/FP16 624* (halved); HBM2e 1935 GB/s",
    ),
    Peak(
        "L4",
        ("NVIDIA L4",),
        {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0, "fp8": 242.5},
        300.0,
        "NVIDIA L4 datasheet: FP32 30.3; TF32 120*, BF16/FP16 242*, FP8 485* TFLOPS (halved); GDDR6 300 GB/s",
    ),
    Peak(
        "L40S",
        ("NVIDIA L40S",),
        {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0},
        864.0,
        "NVIDIA L40S datasheet: FP32 91.6; TF32 366*, BF16/FP16 733*, FP8 1466* TFLOPS (halved); 864 GB/s",
    ),
    Peak(
        "GeForce RTX 3090",
        ("NVIDIA GeForce RTX 3090",),
        {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0, "fp16": 71.0},
        936.0,
        "NVIDIA Ampere GA102 whitepaper, RTX 3090 column: FP32 35.6; TF32 35.6; FP16/BF16 tensor with FP32 "
        "accumulate 71 TFLOPS (dense); GDDR6X 936 GB/s",
    ),
    Peak(
        "GeForce RTX 4090",
        ("NVIDIA GeForce RTX 4090",),
        {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "fp8": 330.3},
        1008.0,
        "NVIDIA Ada GPU architecture whitepaper, RTX 4090 column: FP32 82.6; TF32 82.6; FP16/BF16 tensor with FP32 "
        "accumulate 165.2, FP8 with FP32 accumulate 330.3 TFLOPS (dense); GDDR6X 1008 GB/s",
    ),
    Peak(
        "H100 SXM",
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB"),
        _H100_SXM,
        3350.0,
        "NVIDIA H100 datasheet (SXM): FP32 67; TF32 989*, BF16/FP16 1979*, FP8 3958* TFLOPS (halved); 3.35 TB/s",
    ),
    Peak(
        "H100 PCIe",
        ("NVIDIA H100 PCIe",),
        {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5, "fp8": 1513.0},
        2000.0,
        "NVIDIA H100 datasheet (PCIe): FP32 51; TF32 756*, BF16/FP16 1513*, FP8 3026* TFLOPS (halved); 2 TB/s",
    ),
    Peak(
        "H200 SXM",
        ("NVIDIA H200",),
        _H100_SXM,
        4800.0,
        "NVIDIA H200 datasheet (SXM): FP32 67; TF32 989*, BF16/FP16 1979*, FP8 3958* TFLOPS (halved); HBM3e 4.8 TB/s",
    ),
    Peak(
        "B200 (HGX)",
        ("NVIDIA B200",),
        {"fp32": 75.0, "tf32": 1100.0, "bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0},
        7700.0,
        "NVIDIA Blackwell datasheet, HGX B200 per GPU: FP32 75; TF32 2.2*, FP16/BF16 4.5*, FP8 9* PFLOPS (halved); "
        "HBM3e 7.7 TB/s",
    ),
)


def _norm(name: str) -> str:
    return " ".join(name.split()).casefold()


_BY_NAME = {_norm(n): p for p in PEAKS for n in p.names}


def lookup(device_name: str | None) -> Peak | None:
    """The datasheet entry for a device name, or None for a card not in the table (no guessing)."""
    if not device_name:
        return None
    return _BY_NAME.get(_norm(device_name))


def by_device(devices: Iterable[DeviceInfo]) -> dict[str, Peak | None]:
    """Each device's entry by its label, looked up once per run (a CPU has none): the workers figure their
    fractions of peak from it, and the report names it."""
    return {d.name: lookup(d.model) if d.is_cuda else None for d in devices}

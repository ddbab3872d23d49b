"""CUDA's reading of CUDA_VISIBLE_DEVICES (shared by torch.devices, torch.arch and env.gpu_vars), against
GPU lists read through the real NVML probe from fake NVML scenarios."""

from __future__ import annotations

import pytest

from envcheck.core.model import Status
from envcheck.probes.nvml.inventory import GpuInfo, probe_nvml
from envcheck.probes.visible import device_order_note, parse_visible_devices


def gpus_of(nvml, scenario: str) -> list[GpuInfo]:
    nvml(scenario)
    state = probe_nvml()
    assert state.available
    return state.gpus


#: The sentence for an entry where CUDA stops reading: the entry, why it stops, and what it then ignores.
STOPS = "CUDA_VISIBLE_DEVICES entry {!r} {}; CUDA ignores it and all after it ({})"
NOT_A_GPU = "is neither a GPU index nor a GPU-/MIG- UUID"
NO_UUID = "matches no GPU's UUID (list them with `nvidia-smi -L`)"
AMBIGUOUS = "is ambiguous: it starts the UUIDs of GPUs 0, 1, 2, 3"  # every UUID in the scenario starts GPU-0000000


@pytest.mark.parametrize(
    "value, indices, status, problem",
    [
        (None, [0, 1, 2, 3], None, None),
        ("1,0", [1, 0], None, None),
        ("GPU-00000002", [2], None, None),  # a unique UUID prefix is enough for CUDA
        ("MIG-5f3c", None, None, None),  # MIG instances: NVML's GPU list cannot say which exist
        ("", [], Status.WARN, "CUDA_VISIBLE_DEVICES is set but empty, which hides every GPU"),
        (" ", [], Status.WARN, "CUDA_VISIBLE_DEVICES is set but empty, which hides every GPU"),
        ("-1", [], Status.WARN, "CUDA_VISIBLE_DEVICES=-1 hides every GPU"),
        ("0,7", [0], Status.WARN, STOPS.format("7", "is out of range: this machine has 4 GPU(s), 0 to 3", "7")),
        ("GPU-9999", [], Status.FAIL, STOPS.format("GPU-9999", NO_UUID, "GPU-9999")),
        ("GPU-0000000", [], Status.FAIL, STOPS.format("GPU-0000000", AMBIGUOUS, "GPU-0000000")),
        ("0,0", [], Status.FAIL, "CUDA_VISIBLE_DEVICES=0,0 names GPU 0 twice, and CUDA then shows no GPU at all"),
        ("cuda:0", [], Status.FAIL, STOPS.format("cuda:0", NOT_A_GPU, "cuda:0")),
        ("0,-1,1", [0], Status.WARN, STOPS.format("-1", "is negative", "-1, 1")),
        # A trailing empty or negative entry ends the list after every GPU meant: harmless, not reported.
        ("0,1,", [0, 1], None, None),
        ("1,-1", [1], None, None),
    ],
)
def test_visible_devices_rules(nvml, value, indices, status, problem):
    visibility = parse_visible_devices(value, gpus_of(nvml, "healthy_multi_gpu"))
    assert visibility.indices == indices
    assert visibility.problems == ([] if problem is None else [(status, problem)])
    assert visibility.hidden_on_purpose is (value is not None and value.strip() in ("", "-1"))


@pytest.mark.parametrize(
    "scenario, env, noted",
    [
        ("mixed_generations", {"CUDA_VISIBLE_DEVICES": "0"}, True),
        ("mixed_generations", {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, False),
        ("mixed_generations", {"CUDA_VISIBLE_DEVICES": "GPU-00000001"}, False),  # a UUID names the card in any order
        ("mixed_generations", {}, False),  # no index to misread
        ("healthy_multi_gpu", {"CUDA_VISIBLE_DEVICES": "0"}, False),  # one model: the two orders agree
    ],
)
def test_device_order_note(nvml, scenario, env, noted):
    note = device_order_note(env, gpus_of(nvml, scenario))
    expected = (
        "GPUs of different models and CUDA_VISIBLE_DEVICES by index: CUDA numbers them fastest first, so its "
        "indices may not be nvidia-smi's (set CUDA_DEVICE_ORDER=PCI_BUS_ID to make them agree)"
    )
    assert note == (expected if noted else None)

"""--device parsing and resolution: what is accepted, and the one-line errors with their exit codes."""

from __future__ import annotations

import pytest

from envcheck.bench import devices
from envcheck.bench.devices import DeviceError, Inventory, Request
from envcheck.core.exit import ExitCode

NO_GPU = Inventory((), "torch 2.13.0+cpu is a CPU-only build")
TWO_H100 = Inventory(("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"))


@pytest.mark.parametrize(
    ("text", "request_"),
    [
        ("auto", Request("auto")),
        ("cpu", Request("cpu")),
        ("CUDA", Request("cuda")),
        ("cuda:0", Request("cuda", (0,))),
        ("cuda:0,1", Request("cuda", (0, 1))),
        ("cuda:2,cuda:5", Request("cuda", (2, 5))),
    ],
)
def test_accepted_forms(text, request_):
    assert devices.parse(text) == request_


@pytest.mark.parametrize("text", ["tpu", "gpu", "cuda:", "cuda:x", "cuda:0,", "cpu:0", "cuda:-1", "", "cuda:0,0"])
def test_malformed_or_unknown_is_a_usage_error(text):
    with pytest.raises(DeviceError) as err:
        devices.parse(text)
    assert err.value.exit_code == ExitCode.USAGE
    assert "\n" not in str(err.value)


def test_auto_means_every_gpu_else_cpu():
    assert devices.resolve(Request("auto"), TWO_H100) == ["cuda:0", "cuda:1"]
    assert devices.resolve(Request("auto"), NO_GPU) == ["cpu"]
    assert devices.resolve(Request("cuda"), TWO_H100) == ["cuda:0", "cuda:1"]


def test_cuda_without_a_gpu_names_why_and_what_is_available():
    with pytest.raises(DeviceError) as err:
        devices.resolve(Request("cuda"), NO_GPU)
    assert err.value.exit_code == ExitCode.FAILED
    assert str(err.value) == "no CUDA device is visible (torch 2.13.0+cpu is a CPU-only build); available: cpu"


def test_a_missing_index_names_the_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(DeviceError) as err:
        devices.resolve(Request("cuda", (0, 3)), TWO_H100)
    assert err.value.exit_code == ExitCode.FAILED
    message = str(err.value)
    assert message.startswith("cuda:3 does not exist: 2 GPUs visible (CUDA_VISIBLE_DEVICES=0,1)")
    assert "available: cpu, cuda:0 (NVIDIA H100 80GB HBM3), cuda:1 (NVIDIA H100 80GB HBM3)" in message


def test_inventory_of_a_cpu_build_says_so():
    import torch

    inv = devices.inventory()
    if torch.version.cuda is None:
        assert inv.names == () and "CPU-only build" in inv.why_none


def test_describe_cpu():
    info = devices.describe("cpu")
    assert info.kind == "cpu" and info.model and info.threads >= 1

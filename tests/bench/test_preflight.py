"""The bench's GPU preflight is the doctor's own checks (torch.arch, gpu.memory), run over the same torch
child and NVML reading the bench uses: here over the fake NVML library and, for a CUDA build, a fake
torch imported by the real child process. Then run_bench end to end on fake GPUs, where the preflight
alone decides the exit code and every GPU carries its NVML identity into the report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envcheck.bench import app
from envcheck.bench.app import BenchRequest, run_bench
from envcheck.bench.report import bench_document
from envcheck.core.exit import ExitCode
from envcheck.core.model import Status
from envcheck.devices import resolve
from envcheck.devices.model import DeviceInfo
from envcheck.doctor.runner import ProbeRunner
from envcheck.probes.torch import TorchDevice
from tests.bench.conftest import h100

FAKE_CUDA_TORCH = Path(__file__).resolve().parent / "fake_cuda_torch"
H100 = DeviceInfo("cuda:0", "cuda", "NVIDIA H100 80GB HBM3", 0, (9, 0))


def cuda_torch_env() -> dict[str, str]:
    """This environment, with a CUDA 12.4 torch built for sm_80 and sm_90 first on the child's path."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(FAKE_CUDA_TORCH), os.environ.get("PYTHONPATH")])),
    }


def by_id(checks) -> dict[str, object]:
    return {c.id: c for c in checks}


def test_a_card_newer_than_the_torch_builds_arch_list_fails_the_preflight(nvml):
    nvml("mixed_generations")  # an H100 (9.0) and an RTX PRO 6000 Blackwell (12.0)
    checks = by_id(app.preflight(ProbeRunner(cuda_torch_env(), 60), [H100], None))
    assert list(checks) == ["torch.arch", "gpu.memory"]
    arch = checks["torch.arch"]
    assert arch.status is Status.FAIL
    assert arch.summary.startswith(
        "GPU 1 (NVIDIA RTX PRO 6000 Blackwell Workstation Edition, compute capability 12.0): "
        "not in torch 2.5.1+cu124's arch list (sm_80 sm_90)"
    )
    assert checks["gpu.memory"].status is Status.OK


def test_another_process_holding_a_gpus_memory_is_a_preflight_warning(nvml):
    nvml("other_process_memory")  # pid 4242 holds 70 GiB of GPU 0
    checks = by_id(app.preflight(ProbeRunner(dict(os.environ), 60), [H100], None))
    memory = checks["gpu.memory"]
    assert memory.status is Status.WARN and "held by pid 4242" in memory.summary
    assert memory.fix is not None and "CUDA_VISIBLE_DEVICES" in memory.fix.text
    assert checks["torch.arch"].status in (Status.SKIP, Status.OK)  # this machine's torch: CPU or CUDA build


#: The fake NVML scenario's GPUs (tests/fakenvml.py): uuid GPU-0000000i-aaaa-..., PCI bus 0x18 + i.
def uuid(i: int) -> str:
    return f"{i:08d}-aaaa-bbbb-cccc-000000000000"


@pytest.mark.parametrize(
    ("scenario", "cards", "code", "arch"),
    [
        # two A100s (8.0) with MIG on one: the torch build covers them
        ("mig_enabled", [(8, 0), (8, 0)], ExitCode.OK, Status.OK),
        # an H100 (9.0) and a Blackwell card (12.0) the build has no kernels for
        ("mixed_generations", [(9, 0), (12, 0)], ExitCode.FAILED, Status.FAIL),
    ],
)
def test_run_bench_on_fake_gpus_reports_identity_and_judges_by_the_preflight(
    nvml, monkeypatch, scenario, cards, code, arch
):
    """The bench never imports torch itself: the GPUs are the ones the torch child reports (made to see
    these cards here), each named by its NVML identity. No case is planned, so no worker starts."""
    nvml(scenario)
    child = resolve.torch_from

    def sees_the_cards(probe):
        info = child(probe)
        info.cuda_available, info.device_count = True, len(cards)
        info.devices = [TorchDevice(i, h100()["name"], cc, uuid(i)) for i, cc in enumerate(cards)]
        return info

    monkeypatch.setattr(resolve, "torch_from", sees_the_cards)
    # train.cnn_amp has no fp32 case: the suite plans nothing, so no kernel runs on the fake GPUs
    request = BenchRequest.parse(device="cuda", only="train.cnn_amp", dtype="fp32")
    report = run_bench(request, env=cuda_torch_env())
    assert report.results == () and report.exit_code is code
    assert by_id(report.preflight)["torch.arch"].status is arch
    doc = bench_document(report)
    assert doc["exit_code"] == int(code)
    assert [(d["name"], d["uuid"], d["pci_bus_id"]) for d in doc["devices"]] == [
        ("cuda:0", f"GPU-{uuid(0)}", "00000000:18:00.0"),
        ("cuda:1", f"GPU-{uuid(1)}", "00000000:19:00.0"),
    ]
    assert [g["uuid"] for g in doc["gpus"]] == [f"GPU-{uuid(0)}", f"GPU-{uuid(1)}"]  # the report's envelope
    assert [c["id"] for c in doc["preflight"]] == ["torch.arch", "gpu.memory"]
    assert doc["workers"] == []


def chosen_gpu(i: int) -> DeviceInfo:
    """CUDA device ``i`` as the bench resolves it: with its NVML identity (the fake scenario's card ``i``)."""
    return DeviceInfo(
        f"cuda:{i}",
        "cuda",
        "NVIDIA H100 80GB HBM3",
        i,
        (9, 0),
        uuid=f"GPU-{uuid(i)}",
        pci_bus_id=f"00000000:{0x18 + i:02X}:00.0",
    )


@pytest.mark.parametrize(("index", "memory"), [(1, Status.OK), (0, Status.WARN)])
def test_the_preflight_judges_only_the_chosen_gpus(nvml, index, memory):
    """`bench --device cuda:1` is not held up by another job on GPU 0; `--device cuda:0` still is."""
    nvml("other_process_memory")  # pid 4242 holds 70 GiB of GPU 0; GPU 1 is free
    checks = by_id(app.preflight(ProbeRunner(dict(os.environ), 60), [chosen_gpu(index)], None))
    assert checks["gpu.memory"].status is memory
    assert ("held by pid 4242" in checks["gpu.memory"].summary) is (memory is Status.WARN)
    assert list(checks["gpu.memory"].details["gpus"]) == [str(index)]


@pytest.mark.parametrize(("device", "memory"), [("cuda:1", Status.OK), ("cuda:0", Status.WARN)])
def test_run_bench_preflights_the_device_it_was_given(nvml, monkeypatch, device, memory):
    """The same through run_bench: the chosen device comes from --device, its identity from the torch child."""
    nvml("other_process_memory")
    child = resolve.torch_from

    def sees_two_h100s(probe):
        info = child(probe)
        info.cuda_available, info.device_count = True, 2
        info.devices = [TorchDevice(i, h100()["name"], (9, 0), uuid(i)) for i in range(2)]
        return info

    monkeypatch.setattr(resolve, "torch_from", sees_two_h100s)
    report = run_bench(BenchRequest.parse(device=device, only="train.cnn_amp", dtype="fp32"), env=cuda_torch_env())
    checks = by_id(report.preflight)
    assert checks["gpu.memory"].status is memory
    assert checks["torch.arch"].status is Status.OK
    assert [d.name for d in report.devices] == [device]


@pytest.mark.parametrize(
    ("variable", "dtype", "words"),
    [
        ("NVIDIA_TF32_OVERRIDE=0", "tf32", "NVIDIA_TF32_OVERRIDE=0 is set: the tf32 figures are plain fp32"),
        ("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1", "fp32", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 is set: the fp32 matmul"),
    ],
)
def test_a_variable_that_changes_the_precision_measured_is_said_beside_the_figures(
    nvml, monkeypatch, variable, dtype, words
):
    """A healthy H100 with NVIDIA_TF32_OVERRIDE=0 gives a tf32 figure far below the tf32 peak: the run says
    why, with the variable, instead of leaving the user to suspect the card."""
    nvml("healthy_multi_gpu")
    child = resolve.torch_from

    def sees_one_card(probe):
        info = child(probe)
        info.cuda_available, info.device_count = True, 1
        info.devices = [TorchDevice(0, h100()["name"], (9, 0), uuid(0))]
        return info

    monkeypatch.setattr(resolve, "torch_from", sees_one_card)
    name, value = variable.split("=")
    request = BenchRequest.parse(device="cuda", only="train.cnn_amp", dtype=dtype)  # plans nothing: no kernel
    report = run_bench(request, env={**cuda_torch_env(), name: value})
    override = by_id(report.preflight)["bench.tf32_override"]
    assert override.status is Status.WARN and override.summary.startswith(words)
    assert override.fix is not None and override.fix.command == f"env -u {name} envcheck bench"
    assert report.exit_code is ExitCode.OK  # a warning: nothing is wrong with the card
    quiet = run_bench(request, env={**cuda_torch_env(), name: "0" if value == "1" else "1"})
    assert "bench.tf32_override" not in by_id(quiet.preflight)


def test_a_cpu_bench_has_no_tf32_to_override():
    cpu = DeviceInfo("cpu", "cpu", "x")
    assert app.tf32_overrides({"NVIDIA_TF32_OVERRIDE": "0"}, [cpu], app.Options()) == ()


@pytest.mark.parametrize("value", ["true", "yes", " 1", "0", ""])
def test_torch_takes_only_1_as_forcing_tf32(value):
    """torch reads TORCH_ALLOW_TF32_CUBLAS_OVERRIDE with c10's check_env: "1" is on, anything else is off
    (with a warning for a value neither "1" nor "0"), so only "1" is said to make the fp32 figures TF32."""
    assert app.tf32_overrides({"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": value}, [H100], app.Options()) == ()
    assert app.tf32_overrides({"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"}, [H100], app.Options())

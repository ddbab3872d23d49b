"""--device: parsing, resolution against what torch sees (the torch child's report of the faked cards),
and each GPU's NVML identity through CUDA_VISIBLE_DEVICES, with the fake NVML library and a fake
torch.cuda at the lowest boundaries; what a worker adds to the parent's description; and the memory a
CPU bench may use under a (faked) cgroup limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from envcheck.bench.benchmarks import matmul, memory
from envcheck.bench.model import Options
from envcheck.core.exit import ExitCode
from envcheck.devices import resolve
from envcheck.devices.model import DeviceInfo
from envcheck.devices.resolve import DeviceError, Inventory, Request
from envcheck.probes import host
from envcheck.probes.nvml.inventory import probe_nvml
from envcheck.probes.torch import TorchDevice, TorchInfo
from tests.bench.conftest import FakeCuda, h100


def reported(cuda: FakeCuda) -> TorchInfo:
    """What the doctor's torch child reports of the faked cards: the parent's view, from which it resolves."""
    cards = [TorchDevice(i, g["name"], (9, 0), g.get("uuid")) for i, g in enumerate(cuda.gpus)]
    return TorchInfo(
        status="ok", version="2.13.0", cuda="12.4", cuda_available=bool(cards), device_count=len(cards), devices=cards
    )


NO_GPU = Inventory((), "torch 2.13.0+cpu is a CPU-only build")
TWO_H100 = Inventory(("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"))
MiB = 1 << 20


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
    assert resolve.parse(text) == request_


@pytest.mark.parametrize("text", ["tpu", "gpu", "cuda:", "cuda:x", "cuda:0,", "cpu:0", "cuda:-1", "", "cuda:0,0"])
def test_malformed_or_unknown_is_a_usage_error(text):
    with pytest.raises(DeviceError) as err:
        resolve.parse(text)
    assert err.value.exit_code == ExitCode.USAGE
    assert "\n" not in str(err.value)


def test_auto_means_every_gpu_else_cpu():
    assert resolve.resolve(Request("auto"), TWO_H100) == (0, 1)
    assert resolve.resolve(Request("auto"), NO_GPU) is None  # the CPU
    assert resolve.resolve(Request("cuda"), TWO_H100) == (0, 1)
    assert resolve.resolve(Request("cuda", (1,)), TWO_H100) == (1,)


def test_cuda_without_a_gpu_names_why_and_what_is_available():
    with pytest.raises(DeviceError) as err:
        resolve.resolve(Request("cuda"), NO_GPU)
    assert err.value.exit_code == ExitCode.FAILED
    assert str(err.value) == "no CUDA device is visible (torch 2.13.0+cpu is a CPU-only build); available: cpu"


def test_a_missing_index_names_the_visible_gpus():
    with pytest.raises(DeviceError) as err:
        resolve.resolve(Request("cuda", (0, 3)), TWO_H100, {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert err.value.exit_code == ExitCode.FAILED
    message = str(err.value)
    assert message.startswith("cuda:3 does not exist: 2 GPUs visible (CUDA_VISIBLE_DEVICES=0,1)")
    assert "available: cpu, cuda:0 (NVIDIA H100 80GB HBM3), cuda:1 (NVIDIA H100 80GB HBM3)" in message


def test_inventory_of_a_cpu_build_says_so():
    import torch

    build = TorchInfo(status="ok", version=torch.__version__, cuda=torch.version.cuda, hip=torch.version.hip)
    inv = resolve.probed_inventory(build, {})
    if torch.version.cuda is None:
        assert inv.names == () and "CPU-only build" in inv.why_none


# -- identity: which physical GPU each CUDA index is -------------------------------------------------

#: The fake scenario's GPUs (tests/fakenvml.py h100(i)): uuid GPU-0000000i-aaaa-..., PCI bus 0x18 + i.
UUID = "GPU-{:08d}-aaaa-bbbb-cccc-000000000000"
BUS = {0: "00000000:18:00.0", 1: "00000000:19:00.0", 2: "00000000:1A:00.0", 3: "00000000:1B:00.0"}


@pytest.mark.parametrize(
    ("visible", "nvml_index_of"),
    [
        (None, [0, 1]),  # CUDA's device N is NVML's GPU N
        ("2,0", [2, 0]),  # renumbered by CUDA_VISIBLE_DEVICES
        ("GPU-00000003", [3]),  # a UUID prefix names the card
        ("1,GPU-00000002-aaaa", [1, 2]),
    ],
)
def test_each_gpu_carries_the_identity_of_the_card_cuda_shows(nvml, fake_cuda, visible, nvml_index_of):
    nvml("healthy_multi_gpu")
    cuda = fake_cuda([h100() for _ in nvml_index_of])
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    found = resolve.from_probe(Request("cuda"), reported(cuda), nvml=probe_nvml(), env=env)
    assert [(d.name, d.index) for d in found] == [(f"cuda:{i}", i) for i in range(len(nvml_index_of))]
    assert [d.uuid for d in found] == [UUID.format(i) for i in nvml_index_of]
    assert [d.pci_bus_id for d in found] == [BUS[i] for i in nvml_index_of]
    assert found[0].model == "NVIDIA H100 80GB HBM3" and found[0].free_bytes == 79 << 30


def test_torchs_own_uuid_settles_which_card_it_is(nvml, fake_cuda):
    """CUDA numbers GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID: torch's UUID (printed without
    the GPU- prefix) is the card whatever the order."""
    nvml("healthy_multi_gpu")
    cuda = fake_cuda(
        [h100(uuid="00000003-aaaa-bbbb-cccc-000000000000"), h100(uuid="00000001-AAAA-bbbb-cccc-000000000000")]
    )
    found = resolve.from_probe(Request("cuda"), reported(cuda), nvml=probe_nvml(), env={})
    assert [(d.uuid, d.pci_bus_id) for d in found] == [(UUID.format(3), BUS[3]), (UUID.format(1), BUS[1])]


def test_mixed_models_numbered_by_cuda_are_not_guessed(nvml, fake_cuda):
    nvml("mixed_generations")  # an H100 and a Blackwell card: CUDA's "fastest first" may swap them
    cuda = fake_cuda([h100()])
    [found] = resolve.from_probe(Request("cuda"), reported(cuda), nvml=probe_nvml(), env={"CUDA_VISIBLE_DEVICES": "0"})
    assert (found.uuid, found.pci_bus_id) == (None, None)
    env = {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    [found] = resolve.from_probe(Request("cuda"), reported(cuda), nvml=probe_nvml(), env=env)
    assert (found.uuid, found.pci_bus_id) == (UUID.format(0), BUS[0])


def test_a_mig_instance_is_named_by_its_entry_on_its_parents_bus(nvml, fake_cuda):
    nvml("mig_enabled")  # GPU 0 has MIG on; GPU 1 only pending
    cuda = fake_cuda([{"name": "NVIDIA A100-SXM4-80GB MIG 3g.40gb", "total": 40 << 30, "free": 39 << 30}])
    mig = "MIG-5f3c1e2a-8d0b-5c61-9a7e-0123456789ab"
    [found] = resolve.from_probe(Request("cuda"), reported(cuda), nvml=probe_nvml(), env={"CUDA_VISIBLE_DEVICES": mig})
    assert (found.uuid, found.pci_bus_id) == (mig, BUS[0])


def test_without_nvml_the_identity_is_unknown_not_invented(nvml, fake_cuda):
    nvml("no_library")
    cuda = fake_cuda([h100()])
    [found] = resolve.from_probe(Request("cuda"), reported(cuda), nvml=probe_nvml(), env={})
    assert (found.uuid, found.pci_bus_id) == (None, None) and found.model == "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_a_visible_devices_mistake_hiding_every_gpu_is_one_line_not_a_cpu_run(nvml, fake_cuda, device):
    nvml("healthy_multi_gpu")
    cuda = fake_cuda([])  # torch sees none: CUDA stopped reading at "garbage"
    with pytest.raises(DeviceError) as err:
        resolve.from_probe(
            resolve.parse(device), reported(cuda), nvml=probe_nvml(), env={"CUDA_VISIBLE_DEVICES": "garbage"}
        )
    assert err.value.exit_code == ExitCode.FAILED
    assert str(err.value) == (
        "CUDA_VISIBLE_DEVICES entry 'garbage' is neither a GPU index nor a GPU-/MIG- UUID; CUDA ignores it and "
        "all after it (garbage): no GPU to benchmark; fix CUDA_VISIBLE_DEVICES, or use --device cpu"
    )


def test_gpus_hidden_on_purpose_leave_auto_on_the_cpu(nvml, fake_cuda):
    nvml("healthy_multi_gpu")
    cuda = fake_cuda([])
    [found] = resolve.from_probe(Request("auto"), reported(cuda), nvml=probe_nvml(), env={"CUDA_VISIBLE_DEVICES": ""})
    assert found.name == "cpu" and found.kind == "cpu"


def test_a_gpu_that_is_counted_but_unusable_is_one_line(nvml, fake_cuda, monkeypatch):
    import torch

    nvml("healthy_multi_gpu")
    cuda = fake_cuda([h100()])

    def busy(index):
        raise RuntimeError("CUDA error: CUDA-capable device(s) is/are busy or unavailable\nCUDA kernel errors ...")

    monkeypatch.setattr(torch.cuda, "get_device_properties", busy)
    [parents] = resolve.from_probe(Request("cuda", (0,)), reported(cuda), nvml=probe_nvml(), env={})
    with pytest.raises(DeviceError) as err:  # its worker, starting CUDA on it
        resolve.measure_here(parents.pinned())
    assert err.value.exit_code == ExitCode.FAILED
    assert str(err.value) == (
        "cuda:0 is visible but cannot be used (CUDA error: CUDA-capable device(s) is/are busy or unavailable); "
        "`envcheck doctor` says why"
    )


def test_a_worker_adds_what_its_cuda_context_tells_and_keeps_the_parents_description(fake_cuda):
    """The parent describes cuda:3 once; its worker, pinned to that card (CUDA's device 0 there), adds the
    memory its context leaves free, the L2 size and the SM count, and describes nothing again: the label,
    model and identity it reports are the parent's."""
    fake_cuda([h100(name="what CUDA would call it", free=70 << 30)])  # the one card the pinned worker sees
    parents = DeviceInfo("cuda:3", "cuda", "NVIDIA H100 80GB HBM3", 3, (9, 0), uuid=UUID.format(3), pci_bus_id=BUS[3])
    here = resolve.measure_here(parents.pinned())
    assert (here.name, here.index, here.model, here.uuid, here.pci_bus_id) == (
        "cuda:3",
        3,
        "NVIDIA H100 80GB HBM3",
        UUID.format(3),
        BUS[3],
    )
    assert here.torch_device == "cuda:0" and parents.torch_device == "cuda:3"
    assert (here.free_bytes, here.total_bytes, here.l2_bytes, here.multiprocessors) == (
        70 << 30,
        80 << 30,
        50 << 20,
        132,
    )
    assert here.to_json().keys() == parents.to_json().keys() and here.to_json()["name"] == "cuda:3"


# -- memory a CPU bench may use ------------------------------------------------------------------------


@pytest.fixture
def cgroup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty /proc and /sys for the host probe: write a cgroup v2 memory limit into the returned dir."""
    (tmp_path / "proc").mkdir()
    directory = tmp_path / "sys" / "fs" / "cgroup"
    directory.mkdir(parents=True)
    monkeypatch.setattr(host, "PROC", tmp_path / "proc")
    monkeypatch.setattr(host, "SYS", tmp_path / "sys")
    return directory


def test_cpu_memory_is_the_cgroups_headroom_not_the_hosts_ram(cgroup):
    (cgroup / "memory.max").write_text(f"{600 * MiB}\n")  # a container started with --memory 600m
    (cgroup / "memory.current").write_text(f"{400 * MiB}\n")
    cpu = resolve.cpu_here()
    assert cpu.total_bytes == 600 * MiB and cpu.free_bytes == 200 * MiB
    # 256 MiB copy buffers (two, plus the check's mask) would pass the limit: the OOM killer's SIGKILL
    # ends the whole run, which no retry can catch. A quarter of the 200 MiB headroom each.
    assert memory.device_buffer_bytes(cpu, quick=False) == 50 * MiB
    assert memory.device_buffer_bytes(cpu, quick=True) == 50 * MiB
    [plan] = memory.memory_d2d(cpu, Options())
    assert plan.build is not None


def test_cpu_matmul_halves_to_fit_the_headroom(cgroup):
    (cgroup / "memory.max").write_text(f"{100 * MiB}\n")
    (cgroup / "memory.current").write_text(f"{96 * MiB}\n")  # 4 MiB left
    cpu = resolve.cpu_here()
    assert cpu.free_bytes == 4 * MiB
    # 1024² fp32: 3 × 4 MiB + the check's block (1024 × 2048 × 8 B) is far beyond half of 4 MiB; 256² is the floor
    assert matmul.square_size(cpu, "fp32", quick=False) == 256
    assert [p.label for p in matmul.matmul_sweep(cpu, Options())] == ["fp32 256x256x256"]


def test_without_a_cgroup_limit_the_cpu_keeps_the_standard_sizes(cgroup):
    (cgroup / "memory.max").write_text("max\n")
    cpu = resolve.cpu_here()
    assert cpu.free_bytes and cpu.free_bytes > 1 << 30  # this machine's available RAM (CI has GiBs)
    assert memory.device_buffer_bytes(cpu, quick=False) == 256 * MiB
    assert matmul.square_size(cpu, "fp32", quick=False) == 1024 and matmul.square_size(cpu, "fp32", quick=True) == 512


def test_the_cards_l2_from_the_torch_child_sizes_the_memory_copy_the_parent_plans(nvml, fake_cuda):
    """The parent plans every case, so what the plans size by (the L2: a copy must be far beyond it) comes
    from the torch child's report of the card, not from a worker that describes it again."""
    from envcheck.bench.benchmarks.memory import device_buffer_bytes

    nvml("healthy_multi_gpu")
    cuda = fake_cuda([h100()])
    torch = reported(cuda)
    big_l2 = 128 * MiB  # a Blackwell-sized L2: 8 × L2 is past the 512 MiB floor
    torch.devices[0].l2_bytes, torch.devices[0].multiprocessors = big_l2, 148
    [found] = resolve.from_probe(Request("cuda", (0,)), torch, nvml=probe_nvml(), env={})
    assert (found.l2_bytes, found.multiprocessors) == (big_l2, 148)
    assert device_buffer_bytes(found, quick=True) == 8 * big_l2

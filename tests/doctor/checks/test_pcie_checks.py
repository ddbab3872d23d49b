"""``pcie.acs`` and ``gpu.count`` through the installed command, over captured PCI trees of an HGX node
(tests/doctor/checks/pcitree.py) and the fake NVML's eight GPUs at the same bus ids."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from envcheck.probes import pci
from tests import nettree
from tests.doctor.checks.pcitree import REDIRECTING, config_space, hgx_tree
from tests.doctor.test_nvml import ENVCHECK, NVML_SITE


def doctor(tree: dict[str, str], scenario: str = "hgx_8gpu", *checks: str) -> dict[str, dict[str, Any]]:
    env = {**os.environ, **tree, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": scenario}
    proc = subprocess.run(
        [ENVCHECK, "doctor", *(checks or ("pcie.acs", "gpu.count")), "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    return {c["id"]: c for c in json.loads(proc.stdout)["checks"]}


def test_the_acs_control_register_is_found_along_the_extended_capability_chain() -> None:
    assert pci.acs_control(config_space(REDIRECTING)) == REDIRECTING
    assert pci.acs_control(config_space(None)) is None
    assert pci.acs_words(REDIRECTING).startswith("SrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+")


def test_acs_redirect_on_the_bridges_above_the_gpus_warns_with_the_fix(tmp_path: Path) -> None:
    """Two GPUs per PCIe switch (DGX A100's layout): the two downstream ports where each pair meets are judged."""
    tree = hgx_tree(tmp_path, acs=REDIRECTING, iommu=True, cmdline="ro intel_iommu=on", shared=2)
    found = doctor(tree)["pcie.acs"]
    assert found["status"] == "warn", found
    assert "ACS redirect on 8 of 8 PCIe switch ports where GPUs and NICs under one switch meet" in found["summary"]
    assert "0000:90:00.0: SrcValid+ TransBlk- ReqRedir+ CmpltRedir+" in found["summary"]
    assert found["details"]["judged"][:2] == ["0000:90:00.0", "0000:90:01.0"]
    assert "IOMMU on (intel_iommu=on)" in found["summary"]
    assert "ECAP_ACS+0x6.w=0000" in found["fix"]["text"] and "BIOS" in found["fix"]["text"]


def test_no_redirect_is_ok_and_names_the_iommu_mode(tmp_path: Path) -> None:
    tree = hgx_tree(tmp_path, acs=0, cmdline="ro iommu=pt intel_iommu=on", iommu=True, shared=2)
    found = doctor(tree)["pcie.acs"]
    assert found["status"] == "ok", found
    assert found["summary"] == (
        "no ACS redirect on the 8 PCIe switch ports where GPUs and NICs under one switch meet; "
        "IOMMU passthrough (iommu=pt intel_iommu=on)"
    )
    assert len(found["details"]["bridges"]) == 16  # four root ports, four upstream ports, eight downstream


def test_without_root_the_state_is_not_available_and_the_command_is_given(tmp_path: Path) -> None:
    found = doctor(hgx_tree(tmp_path, acs=REDIRECTING, full=False, shared=2))["pcie.acs"]
    assert found["status"] == "skip", found
    assert "not available without root" in found["summary"]
    assert "sudo lspci -vvv | grep -i ACSCtl" in found["summary"]


def test_redirect_on_root_ports_only_is_noted_not_judged(tmp_path: Path) -> None:
    """GPUs under different root ports talk through the root complex whatever ACS says: a root port's redirect
    bits are not the harm, whether each GPU has its own root port or the switches below them redirect nothing."""
    alone = doctor(hgx_tree(tmp_path / "alone", acs=REDIRECTING))["pcie.acs"]
    assert alone["status"] == "ok", alone
    assert alone["summary"].startswith(
        "no GPU shares a PCIe switch with another GPU or a NIC: their P2P crosses the root complex whatever ACS "
        "says; IOMMU off (none on the kernel command line); ACS redirect on root port(s) 0000:00:01.0, "
    )
    assert alone["details"]["judged"] == [] and "0000:00:08.0" in alone["details"]["root_ports_redirected"]
    switched = doctor(hgx_tree(tmp_path / "switched", acs=0, root_acs=REDIRECTING, shared=2))["pcie.acs"]
    assert switched["status"] == "ok", switched
    assert "(noted: traffic between root ports crosses the root complex anyway)" in switched["summary"]
    assert list(switched["details"]["root_ports_redirected"]) == [f"0000:00:0{n}.0" for n in range(1, 5)]


def test_a_gpu_and_its_nic_under_one_switch_judge_both_downstream_ports(tmp_path: Path) -> None:
    """DGX H100's layout: each GPU shares its PCIe switch with one NIC; GPUDirect RDMA turns at that switch."""
    found = doctor(hgx_tree(tmp_path, acs=REDIRECTING, nics=True))["pcie.acs"]
    assert found["status"] == "warn", found
    assert found["summary"].startswith("ACS redirect on 16 of 16 PCIe switch ports")
    assert found["details"]["judged"][:2] == ["0000:90:00.0", "0000:90:10.0"]  # the GPU's port, the NIC's


def test_sixteen_redirecting_ports_read_short_and_the_fix_names_them(tmp_path: Path) -> None:
    """16 ports with the same bits: the summary names three by bus id and counts the rest; every port is in the
    details, each with its setpci command, and the fix's command clears the first."""
    found = doctor(hgx_tree(tmp_path, acs=REDIRECTING, nics=True))["pcie.acs"]
    ports = sorted(found["details"]["redirected"])
    assert len(ports) == 16
    bits = pci.acs_words(REDIRECTING)
    assert f"({ports[0]}: {bits}; the same on {ports[1]}, {ports[2]} and 13 more)" in found["summary"]
    assert found["summary"].count("SrcValid+") == 1 and ports[3] not in found["summary"]
    assert found["fix"]["command"] == f"sudo setpci -s {ports[0]} ECAP_ACS+0x6.w=0000"
    assert found["details"]["setpci"] == [f"sudo setpci -s {p} ECAP_ACS+0x6.w=0000" for p in ports]
    assert found["details"]["kernel_parameter"] == "pci=disable_acs_redir=" + ";".join(ports)
    fix = found["fix"]["text"]
    assert "each of the 16 port(s)" in fix and f"pci=disable_acs_redir={ports[0]}" in fix and "BIOS" in fix
    assert "docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting.html" in fix


def test_under_a_hypervisor_acs_is_skipped(tmp_path: Path) -> None:
    found = doctor(hgx_tree(tmp_path, acs=REDIRECTING, hypervisor="QEMU"))["pcie.acs"]
    assert found["status"] == "skip" and "hypervisor (QEMU)" in found["summary"], found


def test_the_bus_and_the_driver_agree_on_eight_and_nvswitches_are_not_gpus(tmp_path: Path) -> None:
    found = doctor(hgx_tree(tmp_path))["gpu.count"]
    assert found["status"] == "ok" and found["summary"] == "PCI sees 8, the driver 8", found


def test_a_gpu_the_driver_does_not_enumerate_is_named_by_its_bus_id(tmp_path: Path) -> None:
    """The fake NVML's seven-GPU board has GPUs 0000:18..1e; the bus shows an eighth at 0000:1f:00.0."""
    tree = hgx_tree(tmp_path)
    found = doctor(tree, "hgx_7_of_8")["gpu.count"]
    assert found["status"] == "fail", found
    assert found["summary"] == "PCI sees 8, the driver 7: missing 0000:1f:00.0"
    assert "0000:1f:00.0" in found["fix"]["command"]


@pytest.mark.parametrize("check_id", ["pcie.acs", "gpu.count"])
def test_a_machine_without_nvidia_gpus_on_the_bus_skips(tmp_path: Path, check_id: str) -> None:
    found = doctor(hgx_tree(tmp_path, gpus=0))[check_id]
    assert found["status"] == "skip" and "no NVIDIA GPU on the PCI bus" in found["summary"], found


def test_a_slurm_job_that_sees_only_its_gpus_is_not_judged_on_the_nodes_count(tmp_path: Path) -> None:
    """Slurm's device cgroup shows a job only the GPUs it was given: fewer than the bus is not a fault there."""
    tree = {**hgx_tree(tmp_path), "SLURM_JOB_ID": "4242"}
    found = doctor(tree, "hgx_7_of_8")["gpu.count"]
    assert found["status"] == "skip" and "inside Slurm job 4242" in found["summary"], found


def test_a_gpu_bound_to_another_driver_or_a_virtual_function_is_not_missing(tmp_path: Path) -> None:
    """The eighth GPU given to a VM (vfio-pci), or an SR-IOV virtual function, is not one the driver dropped."""
    tree = hgx_tree(tmp_path)
    device = Path(tree["ENVCHECK_SYSFS"]) / "bus" / "pci" / "devices" / "0000:1f:00.0"
    drivers = Path(tree["ENVCHECK_SYSFS"]) / "bus" / "pci" / "drivers" / "vfio-pci"
    drivers.mkdir(parents=True)
    (device / "driver").symlink_to(drivers)
    found = doctor(tree, "hgx_7_of_8")["gpu.count"]
    assert found["status"] == "ok" and found["details"]["bound_elsewhere"] == ["0000:1f:00.0"], found
    (device / "driver").unlink()
    (device / "physfn").symlink_to(device.parent / "0000:18:00.0")
    assert doctor(tree, "hgx_7_of_8")["gpu.count"]["status"] == "ok"


def test_one_doctor_run_scans_the_pci_bus_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nvml) -> None:
    """gpu.count, pcie.acs and net.affinity all read the bus (with the net probe beside them): one scan of
    /sys/bus/pci/devices serves them all, the ``pci`` probe's, and they still judge the node."""
    from envcheck.doctor.app import DoctorRequest, run_doctor

    nvml("hgx_8gpu")
    env = {**nettree.hgx_ndr(tmp_path), "ENVCHECK_FABRIC_INTERVAL_S": "0"}
    bus = Path(env["ENVCHECK_SYSFS"]) / "bus" / "pci" / "devices"
    scans = []
    listdir = pci.listdir
    monkeypatch.setattr(
        pci, "listdir", lambda path: (scans.append(path) if Path(path) == bus else None) or listdir(path)
    )
    selection = ("gpu.count", "pcie.acs", "net.affinity", "net.ports")
    report = run_doctor(DoctorRequest(selection, env=env, deadline_s=30.0))
    found = {r.id: r for r in report.results}
    assert found["gpu.count"].summary == "PCI sees 8, the driver 8"
    assert "GPU 0 → mlx5_0 (PIX)" in found["net.affinity"].summary
    assert "no NVIDIA GPU" not in found["pcie.acs"].summary  # it found the GPUs (and no config space to read)
    assert found["net.ports"].status.value == "ok"
    assert len(scans) == 1

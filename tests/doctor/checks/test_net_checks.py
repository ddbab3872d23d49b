"""The net area's verdicts over captured machine trees (tests/nettree.py) and the fake NVML's HGX board, through the
installed ``envcheck doctor net --json``: a healthy NDR node, a port down, no peer memory, a container without
/dev/infiniband, RoCE, EFA, a NIC across the socket; the lab spec's ``[net]``; and the probe's counter watch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from envcheck.core.model import Status
from envcheck.doctor.areas import CHECKS
from envcheck.probes.net import probe_net
from tests import nettree
from tests.doctor.test_nvml import ENVCHECK, NVML_SITE


def doctor(tree: dict[str, str], *args: str, scenario: str = "hgx_8gpu", **env: str) -> dict[str, dict[str, Any]]:
    full = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": scenario, **tree, **env}
    full["ENVCHECK_FABRIC_INTERVAL_S"] = "0.01"
    proc = subprocess.run(
        [ENVCHECK, "doctor", *(args or ("net",)), "--json"], capture_output=True, text=True, env=full, timeout=120
    )
    assert proc.returncode in (0, 1), proc.stderr
    return {c["id"]: c for c in json.loads(proc.stdout)["checks"]}


def test_a_healthy_hgx_node_has_eight_ndr_ports_and_each_gpu_its_switch_nic(tmp_path):
    found = doctor(nettree.hgx_ndr(tmp_path))
    assert {c["status"] for c in found.values()} == {"ok"}, found
    assert found["net.ports"]["summary"] == "8 ports up (400 Gb/s InfiniBand), no errors counted while watched"
    assert found["net.gpudirect"]["summary"] == "GPUDirect RDMA ready: nvidia_peermem loaded, 8 uverbs device(s)"
    affinity = found["net.affinity"]
    assert affinity["summary"].startswith("GPU 0 → mlx5_0 (PIX), GPU 1 → mlx5_1 (PIX)")
    assert affinity["details"]["gpus"]["7"] == {
        "bus_id": "00000000:1F:00.0",
        "nic": ["mlx5_7"],
        "nearness": "same PCIe switch",
        "label": "PIX",
    }
    port = found["net.ports"]["details"]["ports"][0]
    assert (port["hca"], port["rate"], port["bus_id"], port["numa_node"]) == ("mlx5_0", nettree.NDR, "0000:40:00.0", 0)
    assert port["counters"]["symbol_error"] == {"first": 0, "later": 0}


def test_a_port_down_fails_naming_it_and_its_physical_state(tmp_path):
    found = doctor(nettree.hgx_port_down(tmp_path))
    ports = found["net.ports"]
    assert ports["status"] == "fail"
    assert ports["summary"] == "7 of 8 ports up; mlx5_3 port 1 DOWN (Polling)"
    assert "Polling sees no signal" in ports["fix"]["text"] and ports["fix"]["command"] == "ibstat"


def test_a_gpu_whose_own_nic_is_down_warns_naming_it_and_where_nccl_goes(tmp_path):
    """mlx5_3, on GPU 3's PCIe switch, is down: NCCL sends GPU 3's traffic to the NICs of its NUMA node instead."""
    tree = nettree.hgx_port_down(tmp_path)
    found = doctor(tree)["net.affinity"]
    assert found["status"] == "warn", found
    assert found["summary"] == (
        "GPU 3 (00000000:1B:00.0): its NIC on the same PCIe switch, mlx5_3, has no port up: NCCL goes to "
        "mlx5_0/mlx5_1/mlx5_2 instead, across the switch (same NUMA node, NODE)"
    )
    assert found["fix"]["command"] == "ibstat mlx5_3" and "Polling sees no signal" in found["fix"]["text"]
    assert found["details"]["gpus"]["3"]["down_nic"] == ["mlx5_3"]
    assert "down_nic" not in found["details"]["gpus"]["2"]
    row = json.loads(report(tree, "json"))["fabric"]["nic_affinity"][3]
    assert row["down_nics"] == [{"hca": "mlx5_3", "ports": ["mlx5_3:1"], "pci_bus_id": "0000:43:00.0"}]
    text = report(tree, "text")
    assert "(own NIC mlx5_3:1 down)" in text


def test_no_peermem_names_modprobe_and_why_dmabuf_is_not_possible(tmp_path):
    gdr = doctor(nettree.hgx_no_peermem(tmp_path))["net.gpudirect"]
    assert gdr["status"] == "fail"
    assert gdr["summary"] == (
        "no nvidia_peermem (nor nv_peer_mem), and dma-buf not possible "
        "(driver 550.90.07 is the proprietary kernel module, not the open one)"
    )
    assert gdr["fix"]["command"] == "sudo modprobe nvidia-peermem"


def test_no_peermem_with_the_open_module_on_a_new_kernel_is_dmabuf(tmp_path):
    tree = nettree.build(tmp_path, nettree.NodeShape(nvidia_peermem=False))
    gdr = doctor(tree)["net.gpudirect"]
    assert gdr["status"] == "ok" and "dma-buf possible" in gdr["summary"], gdr
    assert gdr["details"]["dmabuf_possible"] is True


def test_a_container_without_dev_infiniband_names_each_device_to_pass(tmp_path):
    gdr = doctor(nettree.hgx_container_no_devices(tmp_path))["net.gpudirect"]
    assert gdr["status"] == "fail" and gdr["summary"] == "no /dev/infiniband/uverbs* here"
    first_two = "docker run --device /dev/infiniband/uverbs0 --device /dev/infiniband/uverbs1"
    assert gdr["fix"]["command"].startswith(first_two)
    assert "sudo modprobe ib_uverbs" in gdr["fix"]["text"]


def test_a_low_locked_memory_limit_fails_with_ulimit(tmp_path):
    gdr = doctor(nettree.build(tmp_path, nettree.NodeShape(memlock=65536)))["net.gpudirect"]
    assert gdr["status"] == "fail" and gdr["summary"] == "locked-memory limit 64 KiB"
    assert gdr["fix"]["command"] == "ulimit -l unlimited" and "LimitMEMLOCK=infinity" in gdr["fix"]["text"]


def test_a_roce_port_trained_below_its_peers_warns(tmp_path):
    ports = doctor(nettree.roce_node(tmp_path))["net.ports"]
    assert ports["status"] == "warn"
    assert ports["summary"] == ("8 of 8 ports up; mlx5_5 port 1 at 200 Gb/sec (4X HDR) where its peers run 400 Gb/s")
    assert ports["details"]["ports"][0]["link_layer"] == "Ethernet"


def test_efa_needs_the_ofi_plugin_findable(tmp_path):
    tree = nettree.efa_node(tmp_path / "node")
    gdr = doctor(tree, LD_LIBRARY_PATH=str(tmp_path / "lib"))["net.gpudirect"]
    assert gdr["status"] == "fail" and "aws-ofi-nccl" in gdr["summary"], gdr
    assert str(tmp_path / "lib") in gdr["fix"]["text"]
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libnccl-net.so").write_bytes(b"\x7fELF")
    gdr = doctor(tree, LD_LIBRARY_PATH=str(tmp_path / "lib"))["net.gpudirect"]
    assert gdr["status"] == "ok" and f"NCCL net plugin {tmp_path / 'lib' / 'libnccl-net.so'}" in gdr["summary"]


def test_a_gpu_whose_nearest_nic_is_across_the_socket_warns(tmp_path):
    """NICs 0-3 hang off a root port of socket 1: GPUs 0-3 have no NIC on their socket, 4-7 one on their switch."""
    shape = nettree.NodeShape(gpus=8, nic_place={i: "socket:1" for i in range(4)})
    found = doctor(nettree.build(tmp_path, shape))["net.affinity"]
    assert found["status"] == "warn"
    assert found["summary"].startswith("GPU 0 (00000000:18:00.0), GPU 1 (00000000:19:00.0)")
    assert found["summary"].endswith(": nearest NIC across the CPU socket")
    assert found["details"]["gpus"]["0"]["label"] == "SYS" and found["details"]["gpus"]["4"]["label"] == "PIX"


def test_no_hca_skips_every_net_check_with_the_reason(tmp_path):
    (tmp_path / "sys").mkdir()
    found = doctor({"ENVCHECK_SYSFS": str(tmp_path / "sys")})
    assert {c["status"] for c in found.values()} == {"skip"}
    assert found["net.ports"]["summary"].startswith("no InfiniBand or RoCE HCA")


def test_the_lab_spec_holds_the_port_count_and_rate(tmp_path):
    spec = tmp_path / "lab.toml"
    spec.write_text("[net]\nports = 8\nrate_gbps = 400\n")
    found = doctor(nettree.roce_node(tmp_path / "node"), "net", "--spec", str(spec))
    assert found["spec.net_ports"]["status"] == "ok"
    assert found["spec.net_rate"]["status"] == "fail"
    assert found["spec.net_rate"]["summary"] == "expected 400 Gb/s on every port; mlx5_5 port 1 at 200 Gb/sec (4X HDR)"
    down = doctor(nettree.hgx_port_down(tmp_path / "down"), "net", "--spec", str(spec))["spec.net_ports"]
    assert down["summary"] == "expected 8 InfiniBand/RoCE ports up, found 7 up (mlx5_3 port 1 down)"


# -- the probe and the checks in process: counters that rise while watched, NCCL's peermem quirk ---------------


class Ctx:
    """A check's context over given probe data."""

    def __init__(self, env: dict[str, str], **probes: Any) -> None:
        self.env, self.probes = env, probes

    def probe(self, name: str) -> Any:
        return self.probes[name]


def _judge(check_id: str, ctx: Ctx) -> Any:
    return CHECKS.get(check_id).fn(ctx)


def _nvml(nvml: Any) -> Any:
    from envcheck.probes.nvml.inventory import probe_nvml

    nvml("hgx_8gpu")
    return probe_nvml({})


def test_counters_that_rise_while_watched_fail_and_discards_only_are_noted(tmp_path):
    tree = nettree.build(tmp_path, nettree.NodeShape(counters={2: {"symbol_error": 17}}))
    counters = Path(tree["ENVCHECK_SYSFS"], "class", "infiniband", "mlx5_2", "ports", "1", "counters")

    def meanwhile(_: float) -> None:  # the link counts while envcheck waits
        (counters / "symbol_error").write_text("29\n")
        (counters / "port_xmit_discards").write_text("4\n")

    info = probe_net(tree, interval_s=0.2, sleep=meanwhile)
    assert info.interval_s == 0.2
    verdict = _judge("net.ports", Ctx(tree, net=info))
    assert verdict.status is Status.FAIL
    assert verdict.summary == "8 of 8 ports up; counting errors now: mlx5_2 port 1 symbol_error +12"
    assert verdict.details["congestion"] == ["mlx5_2 port 1 port_xmit_discards +4"]


@pytest.mark.parametrize(("nccl", "quirk"), [((2, 21, 5), True), ((2, 22, 3), True), ((2, 23, 4), False)])
def test_nccl_up_to_2_22_3_does_not_see_nvidia_peermem(tmp_path, nvml, nccl, quirk):
    from types import SimpleNamespace

    tree = nettree.build(tmp_path, nettree.NodeShape(open_module=False))
    ctx = Ctx(tree, net=probe_net(tree, interval_s=0), nvml=_nvml(nvml), torch=SimpleNamespace(nccl_version=nccl))
    verdict = _judge("net.gpudirect", ctx)
    if quirk:
        assert verdict.status is Status.FAIL
        shown = ".".join(map(str, nccl))
        assert verdict.summary == f"torch's NCCL {shown} does not see nvidia_peermem"
        assert verdict.fix.command == "pip install -U nvidia-nccl-cu12" and "NVIDIA/nccl#1676" in verdict.fix.text
    else:
        assert verdict.status is Status.OK, verdict


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("ports = 0", "lab.toml: [net] ports must be a whole number from 1 to 65536, got 0"),
        ("rate_gbps = -400", "lab.toml: [net] rate_gbps must be a positive finite number, got -400"),
        ("speed = 400", "lab.toml: [net]: unknown key 'speed' (known: ports, rate_gbps)"),
    ],
)
def test_the_spec_refuses_a_net_table_it_cannot_use(body, line):
    from envcheck.spec.parse import SpecError, parse_spec_text

    with pytest.raises(SpecError) as refused:
        parse_spec_text(f"[net]\n{body}\n", "lab.toml")
    assert str(refused.value) == line


def test_a_second_port_left_uncabled_beside_an_up_one_warns_not_fails(tmp_path):
    """A dead rail (an HCA with no port up among peers that are up) fails; a lone port with no link on a NIC of
    another driver, as a front-end or an uncabled spare may be, warns."""
    ports = {0: ("1: DOWN", "3: Disabled", "10 Gb/sec (4X SDR)")}
    tree = nettree.build(tmp_path, nettree.NodeShape(ports=ports))
    for other in (Path(tree["ENVCHECK_SYSFS"]) / "class" / "infiniband").iterdir():
        if other.name != "mlx5_0":
            other.unlink() if other.is_symlink() else shutil.rmtree(other)  # a node with one NIC, without a link
    found = doctor(tree)["net.ports"]
    assert found["status"] == "warn" and "mlx5_0 port 1 DOWN (Disabled)" in found["summary"], found


def test_gpudirect_gaps_on_ethernet_ports_alone_warn(tmp_path):
    """A cloud VM's accelerated-networking NIC shows as an mlx5 RDMA device: without a peer-memory module that is
    a warning, since the port may carry none of the GPUs' traffic."""
    shape = nettree.NodeShape(link_layer="Ethernet", nvidia_peermem=False, open_module=False)
    gdr = doctor(nettree.build(tmp_path, shape))["net.gpudirect"]
    assert gdr["status"] == "warn" and "Ethernet ports only" in gdr["summary"], gdr


# -- ports compared with their like: the same link layer on the same board --------------------------------------

MANAGEMENT = (nettree.Nic("mlx5_8"), nettree.Nic("mlx5_9"))


def test_a_compute_fabric_beside_25g_management_nics_is_two_groups_not_slow_ports(tmp_path):
    """Eight 400GbE RoCE ports (ConnectX-7) and two 25GbE ports of a ConnectX-6 Lx: the same driver and link
    layer, another board: none is slower than its peers."""
    shape = nettree.NodeShape(link_layer="Ethernet", extra=MANAGEMENT)
    ports = doctor(nettree.build(tmp_path, shape))["net.ports"]
    assert ports["status"] == "ok", ports
    assert ports["summary"] == ("10 ports up (8 × 400 Gb/s RoCE, 2 × 25 Gb/s RoCE), no errors counted while watched")


def test_a_spare_management_port_without_a_link_warns_where_a_dark_fabric_rail_fails(tmp_path):
    spare = (MANAGEMENT[0], nettree.Nic("mlx5_9", "1: DOWN", "3: Disabled", "10 Gb/sec (1X SDR)"))
    ports = doctor(nettree.build(tmp_path / "spare", nettree.NodeShape(extra=spare)))["net.ports"]
    assert ports["status"] == "warn", ports
    assert ports["summary"] == "9 of 10 ports up; mlx5_9 port 1 DOWN (Disabled)"
    rail = {2: ("1: DOWN", "3: Disabled", "10 Gb/sec (4X SDR)")}
    ports = doctor(nettree.build(tmp_path / "rail", nettree.NodeShape(ports=rail, extra=MANAGEMENT)))["net.ports"]
    assert ports["status"] == "fail" and ports["summary"] == "9 of 10 ports up; mlx5_2 port 1 DOWN (Disabled)"


def test_the_lab_spec_counts_and_rates_the_compute_fabric_only(tmp_path):
    spec = tmp_path / "lab.toml"
    spec.write_text("[net]\nports = 8\nrate_gbps = 400\n")
    tree = nettree.build(tmp_path / "node", nettree.NodeShape(extra=MANAGEMENT))
    found = doctor(tree, "net", "--spec", str(spec))
    assert found["spec.net_rate"]["status"] == "ok", found["spec.net_rate"]
    assert found["spec.net_rate"]["summary"] == "8 ports up at ≥ 400 Gb/s"
    assert found["spec.net_ports"]["summary"] == "8 ports up, spec wants 8"


# -- NCCL_IB_HCA: the ports NCCL will use -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "used"),
    [
        ("mlx5", {f"mlx5_{i}" for i in range(10)}),
        ("=mlx5_0:1,mlx5_1:1", {"mlx5_0", "mlx5_1"}),
        ("^=mlx5_8,mlx5_9", {f"mlx5_{i}" for i in range(8)}),
        ("^mlx5_1", {f"mlx5_{i}" for i in (0, 2, 3, 4, 5, 6, 7, 8, 9)}),  # a prefix: mlx5_1 only, here
        ("=mlx5_0:2", set()),
        ("mlx5_0,,mlx5_2", {"mlx5_0", "mlx5_2"}),
    ],
)
def test_nccl_ib_hca_reads_as_nccl_reads_it(value, used):
    from envcheck.probes.net import HcaFilter

    chosen = HcaFilter.parse(value)
    assert chosen is not None
    assert {f"mlx5_{i}" for i in range(10) if chosen.uses(f"mlx5_{i}", 1)} == used
    assert HcaFilter.parse("  ") is None


def test_a_down_port_that_nccl_ib_hca_leaves_out_is_noted_not_failed(tmp_path):
    tree = nettree.hgx_port_down(tmp_path)
    ports = doctor(tree, NCCL_IB_HCA="^=mlx5_3")["net.ports"]
    assert ports["status"] == "ok", ports
    assert ports["summary"] == (
        "7 ports up (400 Gb/s InfiniBand), no errors counted while watched "
        "(mlx5_3 port 1 down: left out by NCCL_IB_HCA, not judged)"
    )
    assert ports["details"]["left_out_by_nccl_ib_hca"] == ["mlx5_3 port 1"]
    assert doctor(tree, NCCL_IB_HCA="=mlx5_0,mlx5_3")["net.ports"]["status"] == "fail"


@pytest.mark.parametrize(("value", "named"), [("=mlx5_0,mlx5_12", "mlx5_12"), ("mlx5_1:2", "mlx5_1:2"),
                                              ("^=mlx6_0", "mlx6_0")])  # fmt: skip
def test_nccl_ib_hca_naming_a_device_or_port_not_here_fails_with_those_that_are(tmp_path, value, named):
    ports = doctor(nettree.hgx_ndr(tmp_path), NCCL_IB_HCA=value)["net.ports"]
    assert ports["status"] == "fail", ports
    assert ports["summary"] == f"NCCL_IB_HCA={value} names {named}, which this node does not have"
    assert "mlx5_0 port 1, mlx5_1 port 1" in ports["fix"]["text"] and ports["fix"]["command"] == "ibv_devices"


def test_the_devices_to_pass_into_a_container_are_those_nccl_ib_hca_uses(tmp_path):
    gdr = doctor(nettree.hgx_container_no_devices(tmp_path), NCCL_IB_HCA="=mlx5_2,mlx5_5")["net.gpudirect"]
    assert gdr["fix"]["command"].startswith(
        "docker run --device /dev/infiniband/uverbs2 --device /dev/infiniband/uverbs5 --device /dev/infiniband/rdma_cm"
    ), gdr


# -- the fabric section: each GPU's nearest NIC, in every format -------------------------------------------------


def report(tree: dict[str, str], fmt: str) -> str:
    full = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "hgx_8gpu", **tree}
    full.update({"ENVCHECK_FABRIC_INTERVAL_S": "0.01", "COLUMNS": "200"})
    proc = subprocess.run(
        [ENVCHECK, "doctor", "net", "--format", fmt], capture_output=True, text=True, env=full, timeout=120
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout


def test_the_fabric_section_shows_each_gpus_nearest_nic_in_every_format(tmp_path):
    tree = nettree.hgx_ndr(tmp_path)
    doc = json.loads(report(tree, "json"))
    rows = doc["fabric"]["nic_affinity"]
    assert [(r["gpu"], [n["hca"] for n in r["nics"]], r["label"]) for r in rows] == [
        (i, [f"mlx5_{i}"], "PIX") for i in range(8)
    ]
    assert rows[3] == {
        "gpu": 3,
        "pci_bus_id": "00000000:1B:00.0",
        "nics": [{"hca": "mlx5_3", "ports": ["mlx5_3:1"], "pci_bus_id": "0000:43:00.0"}],
        "nearness": "same PCIe switch",
        "label": "PIX",
    }
    text = report(tree, "text").splitlines()
    start = text.index("Nearest NIC per GPU")
    assert text[start + 1].split() == ["GPU", "PCI", "bus", "nearest", "NIC", "how", "near"]
    assert text[start + 2].split() == ["GPU", "0", "00000000:18:00.0", "mlx5_0:1", "same", "PCIe", "switch", "(PIX)"]
    assert len([line for line in text[start + 2 :] if line.strip().startswith("GPU ")]) == 8
    markdown = report(tree, "markdown")
    assert "### GPU fabric" in markdown and "| GPU | PCI bus | nearest NIC | how near |" in markdown
    assert "| GPU 7 | `00000000:1F:00.0` | `mlx5_7:1` | same PCIe switch (PIX) |" in markdown
    page = report(tree, "html")
    assert "<h3>Nearest NIC per GPU</h3>" in page and page.count("mlx5_5:1") == 1


def test_a_node_without_nics_has_no_nic_table_not_an_empty_one(tmp_path):
    (tmp_path / "sys").mkdir()
    tree = {"ENVCHECK_SYSFS": str(tmp_path / "sys")}
    assert json.loads(report(tree, "json"))["fabric"] is None
    for fmt in ("text", "markdown", "html"):
        assert "Nearest NIC" not in report(tree, fmt), fmt

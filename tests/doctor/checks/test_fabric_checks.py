"""The fabric area's verdicts over named NVML scenarios (tests/fakenvml.py) and the real probe: what each check
says on an HGX node with a link down, without its fabric manager, on a PCIe node without P2P, with PCIe replays;
the words of each fix; the doctor's ``fabric`` JSON block; and once through the installed ``envcheck`` command.

The probe's wait between its two counter readings is shrunk through ``ENVCHECK_FABRIC_INTERVAL_S``; the fake's
counters rise per read, so a short wait still sees them rise."""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
from click.testing import CliRunner

from envcheck.cli import main
from envcheck.doctor.areas import select_checks
from tests import fakenvml
from tests.doctor.test_nvml import ENVCHECK, NVML_SITE

FAST = {"ENVCHECK_FABRIC_INTERVAL_S": "0.01"}


def doctor(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["doctor", "fabric", "--json", *args], env=FAST)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def checks(*args: str) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in doctor(*args)[1]["checks"]}


# -- a healthy HGX node --------------------------------------------------------------------------------------


def test_healthy_hgx_node_is_all_ok_with_the_matrix_in_the_report(nvml):
    nvml("hgx_8gpu")
    code, doc = doctor()
    found = {c["id"]: c for c in doc["checks"]}
    assert code == 0 and {c["status"] for c in doc["checks"]} == {"ok"}
    assert doc["areas"] == {"fabric": "GPU fabric (NVLink, P2P, topology)"}
    assert found["fabric.topology"]["summary"] == (
        "8 GPUs, every pair NVLink (NV18); GPUs 0-3 and 4-7 across the CPU socket (SYS)"
    )
    assert found["fabric.nvlink"]["summary"] == "144 links up on 8 GPU(s) (NVLink 4.0), no errors"
    assert found["fabric.manager"]["summary"] == "8 GPU(s) registered with the NVSwitch fabric"
    assert found["fabric.p2p"]["summary"] == "P2P between all 28 pairs of 8 GPUs (over NVLink)"
    fabric = doc["fabric"]
    assert fabric["gpus"] == list(range(8)) and fabric["interval_s"] == 0.01
    assert fabric["topology"][0] == ["X"] + ["NV18"] * 7
    assert fabric["topology"][7] == ["NV18"] * 7 + ["X"]
    assert fabric["p2p"]["read"][2] == ["OK", "OK", "X", "OK", "OK", "OK", "OK", "OK"]
    nvlink = fabric["nvlink"]["0"]
    assert (nvlink["links_up"], nvlink["links_total"], nvlink["version"]) == (18, 18, "4.0")
    assert nvlink["links"][0]["remote_type"] == "switch"
    assert nvlink["links"][0]["counters"]["replay"] == {"first": 0, "later": 0}
    assert fabric["fabric_manager"]["0"]["state"] == "completed"
    assert fabric["pcie_replay"]["0"] == {"first": 0, "later": 0}


# -- fabric.nvlink -------------------------------------------------------------------------------------------


def test_a_link_down_and_a_link_counting_errors_fail(nvml):
    nvml("hgx_nvlink_down")
    code, doc = doctor()
    found = {c["id"]: c for c in doc["checks"]}
    assert code == 1
    link = found["fabric.nvlink"]
    assert link["status"] == "fail"
    # "in N s": the time between the GPU's two readings as it happened, the 0.01 s wait and the reads between
    summary, watched = re.fullmatch(r"(.*) in ([0-9.e-]+) s", link["summary"]).groups()
    assert summary == (
        "GPU 3 (00000000:1B:00.0): link 7 down (17 of 18 NVLinks up); "
        "GPU 5 (00000000:1D:00.0): link 2 replays +7 (127 in all), CRC errors (flit) +3 (43 in all)"
    )
    assert 0.01 <= float(watched) < 5
    assert "Xid 74" in link["fix"]["text"] and "`nvidia-smi nvlink -e`" in link["fix"]["text"]
    assert "marginal link" in link["fix"]["text"]
    assert link["fix"]["command"] == "nvidia-smi nvlink -s -i 3"
    assert link["details"]["gpus"]["3"]["down"] == [7]
    assert link["details"]["gpus"]["5"]["errors"] == {"2": {"replay": 127, "crc_flit": 43}}
    topology = found["fabric.topology"]
    assert topology["status"] == "warn"
    assert topology["summary"] == (
        "GPU 3 (00000000:1B:00.0) NV17 to every peer, the others NV18 (a link is down: see fabric.nvlink)"
    )
    assert topology["fix"]["command"] == "nvidia-smi topo -m"
    assert doc["fabric"]["nvlink"]["3"]["links_up"] == 17 and doc["fabric"]["topology"][3][0] == "NV17"
    assert doc["fabric"]["nvlink"]["3"]["links"][7] == {
        "link": 7,
        "active": False,
        "version": None,
        "remote_type": None,
        "remote_bus_id": None,
        "counters": {},
    }


def test_nvlink5_counters_that_read_na_everywhere_are_not_no_errors(nvml):
    """NVLink 5 moved its error counts to field values: the per-link counters answer N/A on every link, and
    the check used to say "no errors" from that."""
    nvml("nvlink5_counters_na")
    link = checks()["fabric.nvlink"]
    assert link["status"] == "ok"
    assert link["summary"] == (
        "144 links up on 8 GPU(s) (NVLink 5.0); error counters not available on any GPU (not judged)"
    )
    assert "no errors" not in link["summary"]


def test_steady_error_counts_are_history_reported_not_judged(nvml):
    """A healthy node after weeks of uptime carries counts from the links' training at boot: a warning for
    them would stay on every healthy HGX node for good (and fail it under --strict). DCGM judges the rate."""
    nvml("old_steady_replays")
    found = checks()
    link, replay = found["fabric.nvlink"], found["fabric.pcie_replay"]
    assert link["status"] == "ok" and link["fix"] is None
    assert link["summary"] == (
        "144 links up on 8 GPU(s) (NVLink 4.0), no errors while watched; since the driver loaded (history, not "
        "judged): GPU 1 link 4: 2 recoveries; GPU 6 link 0: 5 replays"
    )
    assert link["details"]["gpus"]["1"]["errors"] == {"4": {"recovery": 2}}
    assert replay["status"] == "ok"
    assert replay["summary"].startswith(
        "no PCIe replays while watched on 8 GPU(s); since the driver loaded: 12 on GPU 3"
    )


def test_crc_errors_rising_slower_than_nvidias_fault_rate_warn_and_faster_fail(nvml):
    """DCGM: NVLink CRC errors "only matter at rates of 100+ per second". One more in a watch of well under a
    second is no such rate (a warning); 150 more is 100 a second over at least a second's worth (a failure);
    a replay counted while watched fails, however few."""
    lib = nvml("hgx_8gpu")
    lib.gpus[2].nvlinks[5].errors = fakenvml.nvlink_errors(crc_data=fakenvml.Rising(40, per_read=1))
    link = checks()["fabric.nvlink"]
    assert link["status"] == "warn"
    assert re.fullmatch(
        r"GPU 2 \(00000000:1A:00.0\): link 5 CRC errors \(data\) \+1 \(41 in all\) in [0-9.e-]+ s "
        r"\(fewer than the 100 a second NVIDIA counts as a fault\)",
        link["summary"],
    ), link["summary"]
    assert "100 a second" in link["fix"]["text"] and "Drain" not in link["fix"]["text"]
    lib = nvml("hgx_8gpu")
    lib.gpus[2].nvlinks[5].errors = fakenvml.nvlink_errors(crc_data=fakenvml.Rising(40, per_read=150))
    assert checks()["fabric.nvlink"]["status"] == "fail"
    lib = nvml("hgx_8gpu")
    lib.gpus[2].nvlinks[5].errors = fakenvml.nvlink_errors(replay=fakenvml.Rising(40, per_read=1))
    assert checks()["fabric.nvlink"]["status"] == "fail"


def test_bridged_nvl_cards_count_unbridged_links_as_inactive_and_name_a_missing_bridge(nvml):
    """H100 NVL pairs use 12 of their 18 link indices (three bridges): the other six are not down. GPUs 2 and 3
    have one bridge where their twins have three."""
    nvml("nvl_partially_bridged")
    found = checks()
    link = found["fabric.nvlink"]
    assert link["status"] == "warn" and "down" not in link["summary"].split(":")[1]
    assert link["summary"] == (
        "GPU 2 (00000000:1A:00.0): 4 NVLinks active, 12 on another NVIDIA H100 NVL: a bridge missing or loose, or "
        "a link down; GPU 3 (00000000:1B:00.0): 4 NVLinks active, 12 on another NVIDIA H100 NVL: a bridge missing "
        "or loose, or a link down"
    )
    assert "every bridge is fitted and seated" in link["fix"]["text"]
    assert found["fabric.topology"]["status"] == "warn" and "GPUs 2↔3 (NV4)" in found["fabric.topology"]["summary"]
    lib = nvml("nvl_partially_bridged")
    lib.gpus[2:] = [fakenvml.nvl_card(2, 3, 3), fakenvml.nvl_card(3, 2, 3)]  # the two bridges refitted
    link = checks()["fabric.nvlink"]
    assert link["status"] == "ok"
    assert link["summary"] == (
        "48 links up on 4 GPU(s) (NVLink 4.0), no errors; bridged cards: links without a bridge are inactive"
    )


def test_an_hgx_link_down_still_fails(nvml):
    """The bridged-card rule keys on links that end at GPUs without an NVSwitch fabric: an HGX link is down."""
    nvml("hgx_nvlink_down")
    link = checks()["fabric.nvlink"]
    assert link["status"] == "fail" and "GPU 3 (00000000:1B:00.0): link 7 down (17 of 18 NVLinks up)" in link["summary"]


def test_pcie_cards_with_nvlink_but_no_bridge_are_fine(nvml):
    lib = nvml("healthy_multi_gpu")
    for gpu in lib.gpus:
        gpu.nvlinks = [fakenvml.FakeLink(active=False) for _ in range(12)]
    link = checks()["fabric.nvlink"]
    assert link["status"] == "ok"
    assert link["summary"] == "NVLink on 4 GPU(s), no link active (no NVLink bridge fitted): GPUs talk over PCIe"


def test_nvlinks_the_driver_refuses_to_read_are_a_warning(nvml):
    lib = nvml("hgx_8gpu")
    lib.gpus[2].errors = {"nvmlDeviceGetNvLinkState": fakenvml.NO_PERMISSION}
    link = checks()["fabric.nvlink"]
    assert link["status"] == "warn"
    assert link["summary"] == "GPU 2 (00000000:1A:00.0): the driver refused to read its NVLinks (no permission)"
    assert "Insufficient Permissions" in link["fix"]["text"]


# -- fabric.manager ------------------------------------------------------------------------------------------


def test_fabric_manager_not_running_fails_with_the_service_and_error_802(nvml):
    nvml("fabric_manager_not_running")
    code, doc = doctor()
    found = {c["id"]: c for c in doc["checks"]}
    assert code == 1
    fm = found["fabric.manager"]
    assert fm["status"] == "fail"
    assert fm["summary"] == (
        "fabric not started on all 8 GPUs: the fabric manager is not running (CUDA fails: error 802)"
    )
    text = fm["fix"]["text"]
    assert '"system not yet initialized" (cudaErrorSystemNotReady, error 802)' in text
    assert "`systemctl status nvidia-fabricmanager`" in text
    assert "`sudo systemctl enable --now nvidia-fabricmanager`" in text
    assert "must match the driver's exactly (driver 550.90.07 here)" in text
    assert fm["fix"]["command"] == "systemctl status nvidia-fabricmanager"
    assert fm["details"]["gpus"]["4"] == {"pci_bus_id": "00000000:1C:00.0", "state": "not_started", "status": None}
    # Its NVLinks are down because the fabric is not set up: one cause, said once, by fabric.manager.
    assert found["fabric.nvlink"]["status"] == "skip"
    assert "see fabric.manager" in found["fabric.nvlink"]["summary"]
    assert doc["fabric"]["fabric_manager"]["0"]["state"] == "not_started"


def test_fabric_still_being_set_up_is_a_warning(nvml, monkeypatch):
    import envcheck.probes.host

    monkeypatch.setattr(envcheck.probes.host, "seconds_since_boot", lambda: 60.0)  # the minute after boot
    nvml("fabric_manager_in_progress")
    fm = checks()["fabric.manager"]
    assert fm["status"] == "warn"
    assert fm["summary"].startswith("fabric still being set up on all 8 GPUs")
    assert "Run the doctor again in a minute" in fm["fix"]["text"]


def test_a_fabric_still_in_progress_long_after_boot_fails_naming_the_fabric_manager(nvml, monkeypatch):
    """A dead fabric manager leaves the state at In Progress for good: three hours after boot that is not
    "run again in a minute" but a failure naming the service and the version match with the driver."""
    import envcheck.probes.host

    monkeypatch.setattr(envcheck.probes.host, "seconds_since_boot", lambda: 3 * 3600.0)
    nvml("fabric_manager_dead")
    fm = checks()["fabric.manager"]
    assert fm["status"] == "fail"
    assert fm["summary"] == (
        "fabric still not set up on all 8 GPUs 3.0 h after boot: the fabric manager is not running or does not "
        "match the driver (CUDA fails: error 802)"
    )
    assert "`systemctl status nvidia-fabricmanager`" in fm["fix"]["text"]
    assert "must match the driver's exactly (driver 550.90.07 here)" in fm["fix"]["text"]
    assert "Run the doctor again in a minute" not in fm["fix"]["text"]


def test_a_gpu_the_fabric_manager_could_not_register_fails_by_name(nvml):
    nvml("fabric_manager_failed")
    fm = checks()["fabric.manager"]
    assert fm["status"] == "fail"
    assert fm["summary"] == (
        "GPU 2 (00000000:1A:00.0): the fabric manager could not register it (NVML: fake NVML error 999)"
    )
    assert "`journalctl -u nvidia-fabricmanager`" in fm["fix"]["text"]
    assert "`sudo systemctl restart nvidia-fabricmanager`" in fm["fix"]["text"]


def test_degraded_fabric_bandwidth_warns(nvml):
    lib = nvml("hgx_8gpu")
    lib.gpus[6].fabric = fakenvml.FakeFabric(health_mask=fakenvml.HEALTH_DEGRADED_BW_TRUE)
    fm = checks()["fabric.manager"]
    assert fm["status"] == "warn" and fm["summary"] == "fabric bandwidth degraded on GPU 6 (00000000:1E:00.0)"


# -- fabric.p2p and fabric.topology on a PCIe node -----------------------------------------------------------


def test_pcie_node_without_p2p_between_switches_warns_with_iommu_and_acs(nvml):
    nvml("pcie_only_p2p_off")
    code, doc = doctor()
    found = {c["id"]: c for c in doc["checks"]}
    assert code == 0
    p2p = found["fabric.p2p"]
    assert p2p["status"] == "warn"
    assert p2p["summary"] == (
        "P2P off between GPUs 0↔2, 0↔3, 1↔2, 1↔3, 4↔6, 4↔7, 5↔6, 5↔7 (chipset not supported: CNS); "
        "off across the CPU sockets (SYS) for 16 pair(s) (topology not supported: TNS)"
    )
    text = p2p["fix"]["text"]
    assert "`iommu=pt`" in text and "ACS" in text and "`NCCL_P2P_DISABLE=1`" in text
    assert p2p["fix"]["command"] == "nvidia-smi topo -p2p r"
    assert p2p["details"]["gpus"]["2"] == "00000000:1A:00.0"
    assert found["fabric.topology"]["summary"] == (
        "8 GPUs over PCIe, no NVLink; GPUs 0-3 and 4-7 across the CPU socket (SYS); "
        "on one PCIe switch (PIX/PXB): 0-1, 2-3, 4-5, 6-7"
    )
    assert found["fabric.nvlink"]["summary"] == "no NVLink on these GPUs"
    assert found["fabric.manager"]["status"] == "skip"
    fabric = doc["fabric"]
    assert fabric["topology"][0] == ["X", "PIX", "NODE", "NODE", "SYS", "SYS", "SYS", "SYS"]
    assert fabric["p2p"]["read"][5] == ["TNS", "TNS", "TNS", "TNS", "OK", "X", "CNS", "CNS"]
    assert fabric["nvlink"]["0"] is None and fabric["interval_s"] is None


def test_geforce_cards_without_p2p_are_told_the_driver_disables_it_not_to_change_the_bios(nvml):
    """The status is the one an IOMMU or ACS problem gives (CNS); the cards tell the causes apart."""
    nvml("geforce_p2p_disabled")
    p2p = checks()["fabric.p2p"]
    assert p2p["status"] == "warn"
    assert p2p["summary"] == (
        "P2P off between GPUs 0↔1 (chipset not supported: CNS): GeForce cards, on which the driver disables P2P"
    )
    assert p2p["fix"]["text"].startswith("NVIDIA's driver does not enable P2P between GeForce cards")
    assert "iommu" not in p2p["fix"]["text"].lower().replace("whatever the iommu", "")
    lib = nvml("geforce_p2p_disabled")
    for gpu in lib.gpus:
        gpu.name = "NVIDIA RTX 6000 Ada Generation"  # a workstation card refused P2P: the platform is the cause
    p2p = checks()["fabric.p2p"]
    assert p2p["status"] == "warn" and "GeForce" not in p2p["summary"] and "iommu=pt" in p2p["fix"]["text"]


def test_p2p_off_only_across_sockets_is_noted_not_warned(nvml):
    lib = nvml("pcie_only_p2p_off")
    lib.p2p = lambda a, b, caps: fakenvml.P2P_IOH_TOPOLOGY_NOT_SUPPORTED if a.socket != b.socket else fakenvml.P2P_OK
    p2p = checks()["fabric.p2p"]
    assert p2p["status"] == "ok"
    assert p2p["summary"] == (
        "P2P between GPUs on one CPU socket; off across the CPU sockets (SYS) for 16 pair(s) "
        "(topology not supported: TNS): NCCL goes through host memory there"
    )


def test_p2p_disabled_by_a_registry_key_warns_even_across_sockets(nvml):
    lib = nvml("pcie_only_p2p_off")
    lib.p2p = lambda a, b, caps: fakenvml.P2P_DISABLED_BY_REGKEY if {a.socket, b.socket} == {0, 1} else 0
    p2p = checks()["fabric.p2p"]
    assert p2p["status"] == "warn" and "(disabled by a driver registry key: DIS)" in p2p["summary"]
    assert "NVreg_RegistryDwords" in p2p["fix"]["text"]


def test_p2p_refused_over_an_nvlink_that_joins_the_pair_warns(nvml):
    lib = nvml("hgx_8gpu")
    off = {(0, 1), (1, 0)}
    lib.p2p = lambda a, b, caps: (
        fakenvml.P2P_NOT_SUPPORTED
        if caps == fakenvml.P2P_CAPS_NVLINK and (lib.gpus.index(a), lib.gpus.index(b)) in off
        else fakenvml.P2P_OK
    )
    p2p = checks()["fabric.p2p"]
    assert p2p["status"] == "warn"
    assert p2p["summary"] == "P2P over NVLink unavailable between GPUs 0↔1, though NVLink joins them"


def test_one_pair_with_fewer_direct_nvlinks_is_named(nvml):
    # Four PCIe cards bridged in pairs, 0-1 with four links and 2-3 with only two (a bridge missing).
    lib = nvml("healthy_multi_gpu")
    bus = [g.pci_bus_id for g in lib.gpus]

    def bridge(peer: int, up: int) -> list[fakenvml.FakeLink]:
        remote = {"remote_type": fakenvml.NVLINK_REMOTE_GPU, "remote_bus_id": bus[peer]}
        return [fakenvml.FakeLink(active=n < up, **remote) for n in range(4)]

    for i, (peer, up) in enumerate([(1, 4), (0, 4), (3, 2), (2, 2)]):
        lib.gpus[i].nvlinks = bridge(peer, up)
        lib.gpus[i].name = "NVIDIA RTX A6000"  # a workstation card: four NVLinks over its bridge
    found = checks()
    topology = found["fabric.topology"]
    assert topology["status"] == "warn"
    assert topology["summary"] == "fewer NVLinks between GPUs 2↔3 (NV2) than between the other NVLink pairs (NV4)"
    assert topology["details"]["matrix"][0] == ["X", "NV4", "NODE", "NODE"]
    # Bridged cards: the two inactive indices of GPUs 2 and 3 have no bridge; nothing says they are down.
    assert found["fabric.nvlink"]["status"] == "warn"
    assert found["fabric.nvlink"]["summary"] == (
        "GPU 2 (00000000:1A:00.0): 2 NVLinks active, 4 on another NVIDIA RTX A6000: a bridge missing or "
        "loose, or a link down; GPU 3 (00000000:1B:00.0): 2 NVLinks active, 4 on another NVIDIA RTX A6000: "
        "a bridge missing or loose, or a link down"
    )


# -- fabric.pcie_replay --------------------------------------------------------------------------------------


def test_pcie_replays_rising_fail_and_a_steady_count_warns_only_above_nvidias_rate(nvml, monkeypatch):
    import envcheck.probes.host

    lib = nvml("pcie_replay_rising")
    replay = checks()["fabric.pcie_replay"]
    assert replay["status"] == "fail"
    assert re.fullmatch(
        r"GPU 1 \(00000000:19:00.0\): PCIe replays \+45 \(355 in all\) in [0-9.e-]+ s", replay["summary"]
    )
    assert "reseat the GPU" in replay["fix"]["text"] and "riser" in replay["fix"]["text"]
    assert replay["fix"]["command"] == "nvidia-smi -q -i 1 | grep -i -A1 replay"
    # 12 replays in a day of uptime: history. 12 000 in an hour: 200 a minute, far above DCGM's 8.
    monkeypatch.setattr(envcheck.probes.host, "seconds_since_boot", lambda: 86400.0)
    lib = nvml("pcie_replay_rising")
    lib.gpus[1].pcie_replay = 12
    replay = checks()["fabric.pcie_replay"]
    assert replay["status"] == "ok"
    assert replay["summary"] == (
        "no PCIe replays while watched on 2 GPU(s); since the driver loaded: 12 on GPU 1 (history, not judged: "
        "under NVIDIA's 8 a minute since boot)"
    )
    monkeypatch.setattr(envcheck.probes.host, "seconds_since_boot", lambda: 1800.0)  # half an hour up
    lib = nvml("pcie_replay_rising")
    lib.gpus[1].pcie_replay = 12_000
    replay = checks()["fabric.pcie_replay"]
    assert replay["status"] == "ok" and replay["summary"].endswith(
        "(history, not judged: within an hour of boot, when the links' training counts some)"
    )
    monkeypatch.setattr(envcheck.probes.host, "seconds_since_boot", lambda: 3600.0)
    lib = nvml("pcie_replay_rising")
    lib.gpus[1].pcie_replay = 12_000
    replay = checks()["fabric.pcie_replay"]
    assert replay["status"] == "warn"
    assert replay["summary"] == (
        "GPU 1 (00000000:19:00.0): 12000 PCIe replays since the driver loaded, none while watched: 200 a minute "
        "on average since boot (NVIDIA: at most 8)"
    )
    assert "envcheck burn" in replay["fix"]["text"]


# -- nothing to judge ----------------------------------------------------------------------------------------


def test_one_gpu_has_no_pairs_and_pays_no_wait(nvml):
    nvml("geforce_no_ecc")
    code, doc = doctor()
    found = {c["id"]: c for c in doc["checks"]}
    assert code == 0
    assert found["fabric.p2p"]["summary"] == found["fabric.topology"]["summary"] == "one GPU: no fabric to check"
    assert found["fabric.nvlink"]["summary"] == "no NVLink on this GPU"
    assert found["fabric.pcie_replay"]["summary"] == "no PCIe replays on 1 GPU(s)"
    assert doc["fabric"]["interval_s"] is None and doc["fabric"]["topology"] == [["X"]]


@pytest.mark.parametrize(
    "scenario, summary",
    [
        ("no_gpus", "no GPUs: no fabric to check"),
        ("driver_not_loaded", "NVML unavailable (driver not loaded); see driver.nvml"),
    ],
)
def test_no_gpus_or_no_driver_skip_every_fabric_check(nvml, scenario, summary):
    nvml(scenario)
    code, doc = doctor()
    assert code == 0 and {c["summary"] for c in doc["checks"]} == {summary}
    assert (doc["fabric"] is None) == (scenario == "driver_not_loaded")


def test_the_healthcheck_leaves_the_fabric_out():
    # --quick is the Docker healthcheck: it must not wait on counter readings.
    assert not [c.id for c in select_checks([], quick=True) if c.area == "fabric"]


def test_text_report_shows_the_area_the_finding_and_its_command(nvml):
    nvml("hgx_nvlink_down")
    result = CliRunner().invoke(main, ["doctor", "fabric"], env={**FAST, "COLUMNS": "200"})
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "GPU fabric (NVLink, P2P, topology)" in lines
    assert any(
        line.strip().startswith("[FAIL]  NVLinks up, error counters not rising: GPU 3 (00000000:1B:00.0): link 7 down")
        for line in lines
    )
    assert "      run: nvidia-smi nvlink -s -i 3" in lines


# -- through the installed command ---------------------------------------------------------------------------


def test_installed_doctor_fails_on_the_hgx_link_down(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    env.update({"PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "hgx_nvlink_down", **FAST})
    proc = subprocess.run(
        [ENVCHECK, "doctor", "driver", "fabric", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    found = {c["id"]: c for c in doc["checks"]}
    assert found["driver.nvml"]["status"] == "ok"
    assert found["fabric.nvlink"]["summary"].startswith("GPU 3 (00000000:1B:00.0): link 7 down (17 of 18 NVLinks up)")
    assert doc["fabric"]["nvlink"]["3"]["links_up"] == 17


def test_a_few_pcie_replays_while_watched_warn_and_send_for_a_longer_watch(nvml):
    """Eight replays in half a second may be a burst: more than 8 is over NVIDIA's 8 a minute for sure (the
    watch is under a minute), 8 or fewer cannot say, so the doctor warns and names the longer watch."""
    lib = nvml("pcie_replay_rising")
    lib.gpus[1].pcie_replay = fakenvml.Rising(310, per_read=8)
    replay = checks()["fabric.pcie_replay"]
    assert replay["status"] == "warn" and "PCIe replays +8 (318 in all)" in replay["summary"]
    assert "too short a watch" in replay["summary"] and "envcheck burn" in replay["fix"]["text"]
    lib = nvml("pcie_replay_rising")
    lib.gpus[1].pcie_replay = fakenvml.Rising(310, per_read=9)
    assert checks()["fabric.pcie_replay"]["status"] == "fail"


def test_sxm_gpus_linked_to_each_other_without_nvswitch_still_fail_a_link_down(nvml):
    """An HGX board of four SXM GPUs wired to each other (no NVSwitch) is not a set of bridged PCIe cards: a
    link down there fails, as on an NVSwitch board."""
    lib = nvml("healthy_multi_gpu")
    bus = [g.pci_bus_id for g in lib.gpus]
    for i, gpu in enumerate(lib.gpus):
        peers = [bus[j] for j in range(4) if j != i]
        gpu.nvlinks = [
            fakenvml.FakeLink(remote_type=fakenvml.NVLINK_REMOTE_GPU, remote_bus_id=peers[n % 3]) for n in range(6)
        ]
    lib.gpus[1].nvlinks[2].active = False
    link = checks()["fabric.nvlink"]
    assert link["status"] == "fail" and "GPU 1 (00000000:19:00.0): link 2 down (5 of 6 NVLinks up)" in link["summary"]


# -- the pieces every fabric verdict is made of (each value below worked out by hand) ---------------------------


def test_gpu_indices_are_written_as_runs():
    from envcheck.doctor.checks.fabric import span

    assert span([7, 0, 1, 2, 5, 8, 2]) == "0-2,5,7-8"
    assert span([3]) == "3" and span([4, 5]) == "4-5"


def test_a_verdict_of_several_problems_says_failures_first_and_each_fix_once():
    from envcheck.doctor.checks.fabric import _judged

    problems = [("warn", "w1", "fix A.", None), ("fail", "f1", "fix B.", None), ("warn", "w2", "fix A.", None)]
    verdict = _judged(problems, {}, command="nvidia-smi topo -m")
    assert verdict.status.value == "fail" and verdict.summary == "f1; w1; w2"
    assert verdict.fix.text == "fix B. fix A." and verdict.fix.command == "nvidia-smi topo -m"
    assert _judged(problems[:1], {}, command=None).status.value == "warn"


def test_counts_since_the_driver_loaded_are_listed_with_their_names():
    from envcheck.core.model import NA
    from envcheck.doctor.checks.fabric import _history

    counts = [("recoveries", 2), ("replays", 5), ("CRC errors (flit)", 0), ("x", NA("not supported")), ("ECC", 1)]
    assert _history(counts) == "2 recoveries, 5 replays, 1 ECC"


@pytest.mark.parametrize(
    ("rise", "watched_s", "fault"),
    [(100, 0.5, True), (99, 0.5, False), (100, 1.0, True), (199, 2.0, False), (200, 2.0, True)],
)
def test_crc_errors_are_a_fault_from_100_a_second_over_at_least_a_second(rise, watched_s, fault):
    from envcheck.doctor.checks.fabric import COUNTER_WORDS, _nvlink_over

    assert _nvlink_over(COUNTER_WORDS["crc_data"], rise, watched_s) is fault
    assert _nvlink_over(COUNTER_WORDS["replay"], 1, watched_s) is True  # any replay counted while watched


def test_a_rise_read_without_a_measured_watch_says_zero_seconds_and_why_it_is_only_a_warning():
    from envcheck.doctor.checks.fabric import _counted, _nvlink_over
    from envcheck.probes.nvml.fabric import Counter

    found = _counted({"CRC errors (data)": Counter(3, 4)}, None, _nvlink_over, "under the rate")
    assert found == ("warn", "CRC errors (data) +1 (4 in all) in 0 s (under the rate)")
    assert _counted({"replays": Counter(3, 3)}, 0.5, _nvlink_over) is None


@pytest.mark.parametrize(
    ("name", "state", "remote", "bridged"),
    [
        ("NVIDIA H100 NVL", "not_supported", "gpu", True),
        ("NVIDIA A100-PCIE-40GB", "not_supported", "gpu", True),
        ("NVIDIA H100 NVL", "completed", "gpu", False),  # on an NVSwitch fabric
        ("NVIDIA H100 NVL", "in_progress", "gpu", False),
        ("NVIDIA H100 NVL", "not_started", "gpu", False),
        ("NVIDIA H100 NVL", "not_supported", "switch", False),
        ("NVIDIA H100 80GB HBM3", "not_supported", "gpu", False),  # an SXM module: wired, not bridged
    ],
)
def test_which_gpus_count_as_bridged_pcie_cards(name, state, remote, bridged):
    from envcheck.doctor.checks.fabric import _bridged
    from envcheck.probes.nvml.fabric import FabricManagerState, GpuFabric, NvLink

    links = [NvLink(0, True, remote_type=remote), NvLink(1, False)]
    gpu = GpuFabric(0, name=name, nvlinks=links, fabric=FabricManagerState(state=state))
    assert _bridged(gpu) is bridged
    assert (
        _bridged(GpuFabric(0, name=name, nvlinks=[NvLink(0, False)], fabric=FabricManagerState(state=state))) is False
    )


def test_the_nvlink_details_give_each_gpu_its_links_and_errors(nvml):
    nvml("hgx_nvlink_down")
    gpus = checks()["fabric.nvlink"]["details"]["gpus"]
    assert (gpus["3"]["links_up"], gpus["3"]["links_total"], gpus["3"]["down"]) == (17, 18, [7])
    assert gpus["3"]["pci_bus_id"] == "00000000:1B:00.0"
    assert gpus["5"]["errors"]["2"]["replay"] > 120 and gpus["0"]["errors"] == {}


def test_the_fabric_manager_fix_names_the_driver_it_must_match(nvml):
    nvml("fabric_manager_not_running")
    assert "(driver 550.90.07 here)" in checks()["fabric.manager"]["fix"]["text"]


def test_two_gpus_short_of_links_are_each_named_and_short_pairs_are_listed():
    from envcheck.doctor.checks.fabric import _fewer_links
    from envcheck.probes.nvml.fabric import GpuFabric, GpuPair

    gpus = [GpuFabric(i, pci_bus_id=f"00000000:{0x18 + i:02X}:00.0") for i in range(6)]
    # Three GPUs: GPU 2 is short to both its peers, GPUs 0 and 1 only to it.
    three = [GpuPair(0, 1, nvlinks=18), GpuPair(0, 2, nvlinks=17), GpuPair(1, 2, nvlinks=17)]
    assert _fewer_links(gpus[:3], three, three[1:], 18) == (
        "GPU 2 (00000000:1A:00.0) NV17 to every peer, the others NV18 (a link is down: see fabric.nvlink)"
    )
    # Four GPUs: 2 and 3 are short to every peer, each named.
    four = [GpuPair(a, b, nvlinks=18 if (a, b) == (0, 1) else 17) for a in range(4) for b in range(a + 1, 4)]
    assert _fewer_links(gpus[:4], four, [p for p in four if p.nvlinks == 17], 18) == (
        "GPU 2 (00000000:1A:00.0) NV17 to every peer, GPU 3 (00000000:1B:00.0) NV17 to every peer, the others "
        "NV18 (a link is down: see fabric.nvlink)"
    )
    # Bridged pairs (one peer each): no GPU is named, the short pairs are.
    bridged = [GpuPair(0, 1, nvlinks=4), GpuPair(2, 3, nvlinks=2), GpuPair(4, 5, nvlinks=2)]
    assert _fewer_links(gpus, bridged, bridged[1:], 4) == (
        "fewer NVLinks between GPUs 2↔3 (NV2), 4↔5 (NV2) than between the other NVLink pairs (NV4)"
    )

"""The kernel area through the installed ``envcheck doctor kernel`` over captured kernel logs (``kernel_logs/``:
journalctl short-iso over three boots of an HGX node, plain dmesg over two boots, ``dmesg -T``, ``dmesg --time-format
iso``), with the fake NVML's HGX bus ids (GPU i at ``00000000:{0x18+i}:00.0``) so that events map to GPUs; and the
log read live through fake ``journalctl``/``dmesg`` commands on PATH that refuse, or answer, as the real ones do."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcheck.probes.kernel import KernelLogInfo, parse, pci_key
from tests.doctor.test_nvml import ENVCHECK, NVML_SITE

LOGS = Path(__file__).parent / "kernel_logs"


def doctor(log: Path | None, *, scenario: str = "hgx_8gpu", path: Path | None = None) -> dict[str, dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": scenario}
    env.pop("ENVCHECK_KERNEL_LOG", None)
    if log is not None:
        env["ENVCHECK_KERNEL_LOG"] = str(log)
    if path is not None:
        env["PATH"] = f"{path}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [ENVCHECK, "doctor", "kernel", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode in (0, 1), proc.stderr
    return {c["id"]: c for c in json.loads(proc.stdout)["checks"]}


@pytest.fixture(scope="module")
def hgx() -> dict[str, dict[str, Any]]:
    return doctor(LOGS / "hgx_journal.log")


# -- kernel.xid ------------------------------------------------------------------------------------------------


def test_a_hardware_xid_back_after_two_reboots_needs_inspection_and_maps_to_its_gpu(hgx):
    found = hgx["kernel.xid"]
    assert found["status"] == "fail"
    assert found["summary"].startswith("Xid 79 (GPU has fallen off the bus) on GPU 3: hardware inspection; ")
    assert found["fix"]["command"] == "sudo nvidia-bug-report.sh" and "2 or more reboots" in found["fix"]["text"]
    (row,) = [r for r in found["details"]["xids"] if r["xid"] == 79 and r["gpu"]["index"] == 3]
    assert row["gpu"] == {"index": 3, "uuid": "GPU-00000003-aaaa-bbbb-cccc-000000000000", "bus_id": "00000000:1B:00.0"}
    assert (row["count"], row["boots"], row["last"]) == (2, [-2, 0], "2026-03-08T10:33:58+0000")
    assert row["action"] == "hardware inspection" and "docs.nvidia.com/deploy/xid-errors" in row["source"]
    assert found["details"]["boots"] == 3


def test_fallen_off_the_bus_without_an_xid_is_xid_79_and_a_reboot(hgx):
    summary = hgx["kernel.xid"]["summary"]
    assert "Xid 79 (GPU has fallen off the bus, no Xid line logged) on GPU 7: reboot" in summary
    # The line beside an Xid 79 is not a second event.
    assert "no Xid line logged) on GPU 3" not in summary


def test_application_xids_are_information_and_history_only_warns(hgx):
    summary = hgx["kernel.xid"]["summary"]
    assert "Xid 94 (Contained memory error) on GPU 6: restart the application" in summary
    assert "SXid 20034 (LTSSM Fault Up) on NVSwitch 0000:06:00.0 in an earlier boot" in summary
    assert summary.endswith(
        "information: Xid 13 (Graphics Engine Exception) on GPU 0, GPU 2; "
        "Xid 45 (Preemptive cleanup, due to previous errors) on GPU 0"
    )
    no_times = hgx["kernel.xid"]["summary"]
    assert "2026" not in no_times and "×" not in no_times  # the fleet merges summaries: no times, no counts


def test_only_application_xids_are_ok():
    found = doctor(LOGS / "dmesg_ctime_application.log")["kernel.xid"]
    assert found["status"] == "ok", found
    assert found["summary"] == (
        "no Xid that needs action; information: Xid 13 (Graphics Engine Exception) on GPU 0; "
        "Xid 31 (GPU memory page fault) on GPU 1; Xid 43 (GPU stopped processing) on GPU 1"
    )
    assert found["details"]["xids"][0]["last"] == "2026-08-30T11:43:09"


def test_a_double_bit_ecc_error_in_this_boot_resets_that_gpu_and_an_older_79_warns():
    found = doctor(LOGS / "dmesg_two_boots.log")
    xid = found["kernel.xid"]
    assert xid["status"] == "fail"
    assert xid["summary"].startswith(
        "Xid 48 (Double Bit ECC Error) on GPU 5: reset the GPU; "
        "Xid 79 (GPU has fallen off the bus) on GPU 2 in an earlier boot"
    )
    assert xid["fix"]["command"] == "sudo nvidia-smi -r -i 5" and "never resets" in xid["fix"]["text"]
    assert xid["details"]["boots"] == 2
    aer = found["kernel.pcie_aer"]
    assert aer["status"] == "warn" and aer["summary"] == "GPU 1 (0000:19:00): corrected PCIe errors (AER)"


def test_off_the_bus_alone_without_nvml_names_the_gpu_by_address_and_its_logged_uuid():
    found = doctor(LOGS / "off_bus_only.log", scenario="no_library")["kernel.xid"]
    assert found["status"] == "fail" and found["fix"]["command"] == "sudo reboot"
    assert found["summary"] == "Xid 79 (GPU has fallen off the bus, no Xid line logged) on GPU 0000:1f:00: reboot"
    assert found["details"]["xids"][0]["gpu"]["uuid"] == "GPU-00000007-aaaa-bbbb-cccc-000000000000"


# -- kernel.pcie_aer and kernel.events --------------------------------------------------------------------------


def test_aer_corrected_warns_per_gpu_and_nic_and_an_old_fatal_one_is_history(hgx):
    found = hgx["kernel.pcie_aer"]
    assert found["status"] == "warn"
    assert found["summary"] == (
        "GPU 1 (0000:19:00): corrected PCIe errors (AER); "
        "GPU 3 (0000:1b:00): uncorrected (fatal) PCIe errors (AER) in an earlier boot; "
        "NIC 0000:3b:00: corrected PCIe errors (AER)"
    )
    gpu1 = found["details"]["devices"]["0000:19:00"]
    assert (gpu1["corrected"], gpu1["last"], gpu1["boots"]) == (2, "2026-03-08T02:12:03+0000", [0])


def test_crashes_of_gpu_jobs_in_this_boot_warn(hgx):
    found = hgx["kernel.events"]
    assert found["status"] == "warn"
    assert found["summary"] == (
        'segfault in libnccl; nvidia-peermem: "invalid context"; OOM killer killed a training process (python)'
    )


def test_an_api_mismatch_fails():
    found = doctor(LOGS / "api_mismatch.log")["kernel.events"]
    assert found["status"] == "fail" and "API mismatch" in found["summary"]
    assert "rmmod" in found["fix"]["text"]


# -- reading the log live -----------------------------------------------------------------------------------


def fake_tools(tmp_path: Path, journalctl: str, dmesg: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("journalctl", journalctl), ("dmesg", dmesg)):
        script = bin_dir / name
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_a_log_the_user_may_not_read_is_a_skip_that_says_how_to_allow_it(tmp_path):
    refused = fake_tools(
        tmp_path,
        'echo "No journal files were opened due to insufficient permissions." >&2; exit 1\n',
        'echo "dmesg: read kernel buffer failed: Operation not permitted" >&2; exit 1\n',
    )
    found = doctor(None, path=refused)
    for check in ("kernel.xid", "kernel.pcie_aer", "kernel.events"):
        assert found[check]["status"] == "skip", found[check]
    xid = found["kernel.xid"]
    assert xid["summary"] == (
        "kernel log not readable (journalctl: No journal files were opened due to insufficient permissions.; "
        "dmesg: read kernel buffer failed: Operation not permitted)"
    )
    assert "systemd-journal" in xid["fix"]["text"] and "kernel.dmesg_restrict=0" in xid["fix"]["text"]
    assert xid["fix"]["command"] == "sudo usermod -aG systemd-journal $USER"


def test_the_journal_is_read_over_recent_boots_oldest_first(tmp_path):
    """journalctl answers boot by boot; the boots are joined as journalctl marks them, the newest last."""
    boots = {"-1": LOGS / "hgx_journal.log", "0": LOGS / "api_mismatch.log"}
    journal = fake_tools(
        tmp_path,
        'case "$*" in\n'
        "  *--list-boots*) echo ' -1 7a0c3b9e1f2d4e5a8b6c9d0e1f2a3b4c Thu 2026-03-05 01:02:44 UTC Sat 2026-03-07'\n"
        "                  echo '  0 9f8e7d6c5b4a49388776655443322110 Sat 2026-03-07 09:30:01 UTC Sun 2026-03-08' ;;\n"
        f"  *'-b -1'*) grep -v '^-- ' {boots['-1']} | tail -n 5 ;;\n"
        f"  *'-b 0'*) cat {boots['0']} ;;\n"
        "esac\n",
        "exit 1\n",
    )
    found = doctor(None, path=journal)
    assert found["kernel.events"]["status"] == "fail"  # the API mismatch, in this boot
    xid = found["kernel.xid"]
    assert xid["details"]["source"] == "journalctl -k" and xid["details"]["boots"] == 2
    assert xid["summary"] == (
        "Xid 79 (GPU has fallen off the bus) on GPU 3 in an earlier boot; "
        "Xid 79 (GPU has fallen off the bus, no Xid line logged) on GPU 7 in an earlier boot"
    )


# -- the parser ------------------------------------------------------------------------------------------------


def test_every_shape_gives_the_same_event():
    lines = {
        "2026-03-08T10:33:58+0000 hgx-a07 kernel: ": "2026-03-08T10:33:58+0000",
        "2026-03-08T10:33:58,123456+00:00 ": "2026-03-08T10:33:58+00:00",
        "[Sun Mar  8 10:33:58 2026] ": "2026-03-08T10:33:58",
        "[86412.550117] ": "86412 s after boot",
        "Mar  8 10:33:58 hgx-a07 kernel: [86412.550117] ": "Mar 8 10:33:58",
    }
    for prefix, when in lines.items():
        info = KernelLogInfo(True, "test")
        parse(prefix + "NVRM: Xid (PCI:0000:1b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off.", info)
        (event,) = info.events
        assert (event.kind, event.code, event.device, event.time, event.boot) == ("xid", 79, "0000:1b:00", when, 0)


def test_bus_ids_agree_whoever_writes_them():
    assert pci_key("00000000:1B:00.0") == pci_key("PCI:0000:1b:00") == pci_key("0000:1b:00.1") == "0000:1b:00"


def test_explain_over_a_saved_kernel_log_names_the_kernel_checks():
    env = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "hgx_8gpu"}
    proc = subprocess.run(
        [ENVCHECK, "explain", "-f", str(LOGS / "hgx_journal.log"), "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    named = {m["id"]: m["checks"] for m in json.loads(proc.stdout)["matches"]}
    assert "kernel.xid" in named["gpu.lost"] and "kernel.xid" in named["nvswitch.sxid"]
    assert "kernel.pcie_aer" in named["pcie.aer"]
    for signature in ("rdma.peermem_invalid_context", "nccl.segfault", "host.oom_kill"):
        assert "kernel.events" in named[signature], signature


def test_an_empty_log_is_read_but_says_nothing_so_every_check_skips(tmp_path: Path) -> None:
    """A container's empty dmesg, an empty saved file: no Xid seen is not "no Xid happened"."""
    empty = tmp_path / "kern.log"
    empty.write_text("")
    for found in doctor(empty).values():
        assert found["status"] == "skip" and "holds no message to judge by" in found["summary"], found


# -- the healthcheck: this boot since the last run ------------------------------------------------------------


def quick(log: Path, state: Path, scenario: str = "hgx_8gpu") -> dict[str, Any]:
    """``doctor --quick`` (the healthcheck's doctor) over a saved log, its state kept in ``state``."""
    env = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": scenario}
    env.update(ENVCHECK_KERNEL_LOG=str(log), ENVCHECK_STATE_DIR=str(state))
    proc = subprocess.run([ENVCHECK, "doctor", "--quick", "--json"], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    return {c["id"]: c for c in json.loads(proc.stdout)["checks"]}["kernel.xid"]


REINIT_19 = (
    "2026-04-02T10:02:11+0000 gpu-12 kernel: NVRM: GPU at PCI:0000:19:00: GPU-00000001-aaaa-bbbb-cccc-000000000000\n"
)


def test_the_healthcheck_keeps_failing_an_xid_of_this_boot_until_the_gpu_is_set_up_again(tmp_path: Path) -> None:
    log, state = tmp_path / "kern.log", tmp_path / "state"
    log.write_text((LOGS / "reset_then_reinit.log").read_text())
    first = quick(log, state)
    assert first["status"] == "fail" and "Xid 48 (Double Bit ECC Error) on GPU 1: reset the GPU" in first["summary"]
    assert first["details"]["read"] == "this boot" and (state / "kernel-log.json").is_file()
    with log.open("a") as f:
        f.write("2026-04-02T09:50:00+0000 gpu-12 kernel: usb 1-1: new high-speed USB device number 3\n")
    again = quick(log, state)
    assert again["status"] == "fail" and "Xid 48 (Double Bit ECC Error) on GPU 1" in again["summary"]
    assert again["details"]["read"] == "since 2026-04-02T09:40:02+0000, 1 new line(s)"  # where the last read stopped
    with log.open("a") as f:
        f.write(REINIT_19)
    reset = quick(log, state)
    assert "Xid 48 on GPU 1 before its reset at 2026-04-02T10:02:11+0000" in reset["summary"]
    assert "Xid 48 (Double Bit ECC Error) on GPU 1: reset the GPU" not in reset["summary"]
    assert "Xid 79 (GPU has fallen off the bus) on GPU 2: reboot" in reset["summary"]  # a reboot is not cleared
    with log.open("a") as f:
        f.write(
            "-- Boot 0a1b2c3d4e5f46778899aabbccddeeff --\n2026-04-03T07:00:01+0000 gpu-12 kernel: Linux version 6.8\n"
        )
    rebooted = quick(log, state)
    assert rebooted["status"] == "ok" and rebooted["details"]["read"] == "this boot", rebooted


def test_a_reinit_line_printed_with_an_off_the_bus_event_does_not_clear_it(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    uuid = "GPU-00000002-aaaa-bbbb-cccc-000000000000"
    same_second = f"2026-04-02T09:14:21+0000 gpu-12 kernel: NVRM: GPU at PCI:0000:1a:00: {uuid}\n"
    log.write_text((LOGS / "reset_then_reinit.log").read_text() + same_second + REINIT_19)
    found = doctor(log)["kernel.xid"]
    assert found["status"] == "fail" and "Xid 79 (GPU has fallen off the bus) on GPU 2: reboot" in found["summary"]
    (row,) = [r for r in found["details"]["xids"] if r["xid"] == 48]
    assert row["reset_at"] == "2026-04-02T10:02:11+0000"


def test_a_damaged_state_is_replaced_and_an_unwritable_one_reads_the_whole_boot(tmp_path: Path) -> None:
    log, state = tmp_path / "kern.log", tmp_path / "state"
    log.write_text((LOGS / "reset_then_reinit.log").read_text())
    state.mkdir()
    (state / "kernel-log.json").write_text('{"schema": "envcheck.kernel_log_state/1", "events": [1, 2]')
    found = quick(log, state)
    assert found["status"] == "fail" and found["details"]["read"] == "this boot"
    assert json.loads((state / "kernel-log.json").read_text())["schema"] == "envcheck.kernel_log_state/1"
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    unwritable = quick(log, blocked / "state")
    assert "no state could be written" in unwritable["details"]["state"]
    assert unwritable["summary"].endswith("read this boot's whole log)") and unwritable["status"] == "fail"


def test_the_healthcheck_runs_kernel_xid_and_no_other_kernel_check(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "hgx_8gpu",
           "ENVCHECK_KERNEL_LOG": str(LOGS / "hgx_journal.log"), "ENVCHECK_STATE_DIR": str(tmp_path)}  # fmt: skip
    proc = subprocess.run([ENVCHECK, "healthcheck"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and proc.stdout.startswith("unhealthy: kernel.xid: Xid 79"), proc.stdout
    listed = subprocess.run([ENVCHECK, "doctor", "--quick", "--json"], capture_output=True, text=True, env=env,
                            timeout=120)  # fmt: skip
    ids = {c["id"] for c in json.loads(listed.stdout)["checks"]}
    assert "kernel.xid" in ids and not ids & {"kernel.pcie_aer", "kernel.events"}


# -- whose GPUs -------------------------------------------------------------------------------------------------


def journal_of(tmp_path: Path, log: Path) -> Path:
    """A journalctl that answers this boot with ``log`` (this machine's log, not a saved one)."""
    return fake_tools(tmp_path, f'case "$*" in\n  *--list-boots*) ;;\n  *) cat {log} ;;\nesac\n', "exit 1\n")


def test_a_containers_kernel_log_shows_other_gpus_xids_as_information(tmp_path: Path) -> None:
    """Four GPUs given (NVML's and /dev's), the host's log with Xids on GPUs 6 and 7: not this container's."""
    devices = tmp_path / "dev"
    devices.mkdir()
    for n in range(4):
        (devices / f"nvidia{n}").write_text("")
    env = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "healthy_multi_gpu",
           "ENVCHECK_DEVFS": str(devices), "container": "docker",
           "PATH": f"{journal_of(tmp_path, LOGS / 'hgx_journal.log')}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    env.pop("ENVCHECK_KERNEL_LOG", None)

    def run() -> dict[str, dict[str, Any]]:
        proc = subprocess.run([ENVCHECK, "doctor", "kernel", "--json"], capture_output=True, text=True, env=env,
                              timeout=120)  # fmt: skip
        return {c["id"]: c for c in json.loads(proc.stdout)["checks"]}

    found = run()["kernel.xid"]
    assert "GPU 0000:1f:00 is not one of this container's GPUs (Xid 79)" in found["summary"]
    assert "GPU 0000:1e:00 is not one of this container's GPUs (Xid 94)" in found["summary"]
    assert "Xid 79 (GPU has fallen off the bus) on GPU 3: hardware inspection" in found["summary"]  # ours: GPU 3
    # Eight device nodes but four GPUs in NVML: one we were given is missing, so nothing is hidden.
    for n in range(4, 8):
        (devices / f"nvidia{n}").write_text("")
    lost = run()["kernel.xid"]
    assert "Xid 79 (GPU has fallen off the bus, no Xid line logged) on GPU 0000:1f:00: reboot" in lost["summary"]


def test_the_journal_read_has_one_deadline_and_says_which_boots_it_read(tmp_path: Path) -> None:
    journal = fake_tools(
        tmp_path,
        'case "$*" in\n'
        "  *--list-boots*) echo ' -1 7a0c3b9e1f2d4e5a8b6c9d0e1f2a3b4c Thu 2026-03-05 01:02:44 UTC Sat 2026-03-07'\n"
        "                  echo '  0 9f8e7d6c5b4a49388776655443322110 Sat 2026-03-07 09:30:01 UTC Sun 2026-03-08' ;;\n"
        "  *'-b -1'*) sleep 30 ;;\n"
        f"  *'-b 0'*) cat {LOGS / 'api_mismatch.log'} ;;\n"
        "esac\n",
        "exit 1\n",
    )
    env = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "hgx_8gpu",
           "PATH": f"{journal}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    env.pop("ENVCHECK_KERNEL_LOG", None)
    proc = subprocess.run([ENVCHECK, "doctor", "kernel", "--deadline", "8", "--json"], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    found = {c["id"]: c for c in json.loads(proc.stdout)["checks"]}["kernel.xid"]
    assert found["summary"].endswith("(the journal's read ran out of time: boots 0 read)"), found
    assert found["details"]["boots_read"] == [0] and found["details"]["ran_out"] is True


# -- AER -------------------------------------------------------------------------------------------------------


def test_aer_of_a_gpus_audio_function_is_the_gpus_and_named(tmp_path: Path) -> None:
    found = doctor(LOGS / "reset_then_reinit.log")["kernel.pcie_aer"]
    assert found["summary"] == "GPU 3 (0000:1b:00), function 1: corrected PCIe errors (AER)"
    assert list(found["details"]["devices"]) == ["0000:1b:00"]


def test_corrected_aer_of_an_earlier_boot_is_information() -> None:
    found = doctor(LOGS / "corrected_aer_earlier_boot.log")["kernel.pcie_aer"]
    assert found["status"] == "warn"
    assert found["summary"] == (
        "GPU 2 (0000:1a:00): uncorrected PCIe errors (AER) in an earlier boot; "
        "information: GPU 1 (0000:19:00): corrected PCIe errors (AER) in an earlier boot"
    )


def test_uncorrected_aer_of_an_earlier_boot_is_fixed_as_a_pcie_link_not_an_xid() -> None:
    fix = doctor(LOGS / "corrected_aer_earlier_boot.log")["kernel.pcie_aer"]["fix"]
    assert "Xid" not in fix["text"] and "reseat the card" in fix["text"], fix
    assert fix["command"] == "sudo lspci -vvv -s 0000:1a:00"


# -- the healthcheck over the journal: its cursor ----------------------------------------------------------------

#: A journalctl that answers ``-k -b 0`` from a journal kept in files beside it: ``entries`` (one message a line,
#: the i-th line's cursor ``s=<seqnum id>;i=<i>``) and ``seqnum_id`` (a new id is a journal rotated away under the
#: cursor). As systemd's does, it prints ``-- cursor: ...`` after the entries with ``--show-cursor`` (where there is
#: an entry to be at), shows only the entries after ``--after-cursor``, and refuses a cursor it cannot seek to
#: ("Failed to seek to cursor: Invalid argument", exit status 1). Every call's arguments are appended to ``calls``.
#: With nothing after the cursor it prints that cursor again, or, as systemd 247 does where a file ``quiet`` says
#: ``247``, ``-- No entries --`` without a cursor and exit status 1, or, as later versions (``252``), nothing.
#: Where a file ``broken`` is there, it fails as a damaged journal does.
FAKE_JOURNALCTL = """\
import sys
from pathlib import Path

here = Path(__file__).parent
args = sys.argv[1:]
with open(here / "calls", "a") as f:
    f.write(" ".join(args) + "\\n")
if "--list-boots" in args:
    sys.exit(0)
if (here / "broken").exists():
    print("Failed to open journal: Input/output error", file=sys.stderr)
    sys.exit(1)
entries = (here / "entries").read_text().splitlines()
seqnum = (here / "seqnum_id").read_text().strip()
first = 0
after = [a.split("=", 1)[1] for a in args if a.startswith("--after-cursor=")]
if after:
    known = [f"s={seqnum};i={i}" for i in range(len(entries))]
    if after[0] not in known:
        print("Failed to seek to cursor: Invalid argument", file=sys.stderr)
        sys.exit(1)
    first = known.index(after[0]) + 1
shown = entries[first:]
if "-n" in args and not after:
    shown = shown[-int(args[args.index("-n") + 1]):]
quiet = (here / "quiet").read_text().strip() if (here / "quiet").exists() else ""
if after and not shown and quiet == "247":  # systemd 247: a note, no cursor, exit status 1
    print("-- No entries --")
    sys.exit(1)
if after and not shown and quiet == "252":  # later versions: nothing at all
    sys.exit(0)
print("\\n".join(shown) if shown else "-- No entries --")
if "--show-cursor" in args and entries:
    print(f"-- cursor: s={seqnum};i={len(entries) - 1 if shown or after else 0}")
"""


class Journal:
    """The fake journal of this boot, its ``journalctl`` first on PATH, and ``doctor --quick`` run over it."""

    def __init__(self, tmp_path: Path, text: str) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        script = self.bin / "journalctl"
        script.write_text(f"#!{sys.executable}\n{FAKE_JOURNALCTL}")
        script.chmod(0o755)
        dmesg = self.bin / "dmesg"
        dmesg.write_text("#!/bin/sh\necho 'dmesg: read kernel buffer failed: Operation not permitted' >&2; exit 1\n")
        dmesg.chmod(0o755)
        (self.bin / "seqnum_id").write_text("a1\n")
        (self.bin / "entries").write_text("")
        self.append(text)
        procfs = tmp_path / "proc" / "sys" / "kernel" / "random"
        procfs.mkdir(parents=True)
        (procfs / "boot_id").write_text("3c2b1a0f-9e8d-4c7b-6a5f-4e3d2c1b0a99\n")
        self.state = tmp_path / "state"
        self.env = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "hgx_8gpu",
                    "ENVCHECK_PROCFS": str(tmp_path / "proc"), "ENVCHECK_STATE_DIR": str(self.state),
                    "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
        self.env.pop("ENVCHECK_KERNEL_LOG", None)

    def append(self, text: str) -> None:
        lines = [line for line in text.splitlines() if line and not line.startswith("-- ")]
        with open(self.bin / "entries", "a") as f:
            f.writelines(line + "\n" for line in lines)

    def rotate(self) -> None:
        """The journal file that held the cursor is gone: the entries up to now with it."""
        (self.bin / "seqnum_id").write_text("b2\n")
        (self.bin / "entries").write_text("")

    def calls(self) -> list[str]:
        return (self.bin / "calls").read_text().splitlines()

    def quick(self) -> dict[str, Any]:
        return self._xid("--quick")

    def full(self) -> dict[str, Any]:
        """kernel.xid as the full doctor runs it (over recent boots; this journal lists none but this one)."""
        return self._xid("kernel.xid")

    def _xid(self, how: str) -> dict[str, Any]:
        (self.bin / "calls").write_text("")
        proc = subprocess.run([ENVCHECK, "doctor", how, "--json"], capture_output=True, text=True,
                              env=self.env, timeout=120)  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr
        return {c["id"]: c for c in json.loads(proc.stdout)["checks"]}["kernel.xid"]

    def cursor(self) -> str | None:
        return json.loads((self.state / "kernel-log.json").read_text())["cursor"]


USB = "2026-04-02T10:20:00+0000 gpu-12 kernel: usb 1-1: new high-speed USB device number 3\n"


def test_the_healthcheck_goes_on_from_the_journals_cursor(tmp_path: Path) -> None:
    journal = Journal(tmp_path, (LOGS / "reset_then_reinit.log").read_text())
    first = journal.quick()
    (call,) = journal.calls()
    assert "--show-cursor" in call and "--after-cursor" not in call and "-b 0" in call
    assert first["status"] == "fail" and "Xid 48 (Double Bit ECC Error) on GPU 1: reset the GPU" in first["summary"]
    assert first["details"]["read"] == "this boot" and first["details"]["state"].startswith("kept in ")
    cursor = journal.cursor()
    assert cursor is not None and cursor.startswith("s=a1;i=")

    journal.append(USB)
    again = journal.quick()
    assert f"--after-cursor={cursor}" in journal.calls()[0]
    assert again["details"]["read"] == "since 2026-04-02T09:40:02+0000, 1 new line(s)", again
    assert again["status"] == "fail" and "Xid 48 (Double Bit ECC Error) on GPU 1" in again["summary"]

    nothing_new = journal.quick()
    assert nothing_new["details"]["read"] == "since 2026-04-02T10:20:00+0000, 0 new line(s)", nothing_new
    assert nothing_new["status"] == "fail" and "Xid 48 (Double Bit ECC Error) on GPU 1" in nothing_new["summary"]
    assert journal.cursor() is not None

    journal.append(REINIT_19)
    reset = journal.quick()
    assert "Xid 48 on GPU 1 before its reset at 2026-04-02T10:02:11+0000" in reset["summary"], reset


@pytest.mark.parametrize("systemd", ["247", "252"])
def test_a_quiet_journal_keeps_its_cursor(tmp_path: Path, systemd: str) -> None:
    """Nothing new since the last run: journalctl prints no cursor (and systemd 247 exits 1 with "-- No entries
    --"). The place is where it was, not lost: the next run goes on from it rather than reading the boot again."""
    journal = Journal(tmp_path, (LOGS / "reset_then_reinit.log").read_text())
    journal.quick()
    cursor = journal.cursor()
    (journal.bin / "quiet").write_text(systemd)
    quiet = journal.quick()
    assert quiet["details"]["read"] == "since 2026-04-02T09:40:02+0000, 0 new line(s)", quiet
    assert quiet["status"] == "fail" and "Xid 48 (Double Bit ECC Error) on GPU 1" in quiet["summary"]
    assert journal.cursor() == cursor and len(journal.calls()) == 1
    journal.append(USB)
    again = journal.quick()
    assert f"--after-cursor={cursor}" in journal.calls()[0] and len(journal.calls()) == 1
    assert again["details"]["read"] == "since 2026-04-02T09:40:02+0000, 1 new line(s)", again


def test_a_read_by_dmesg_once_the_journal_fails_keeps_this_boots_xids(tmp_path: Path) -> None:
    """journalctl fails once and dmesg reads this boot, whose ring buffer no longer holds the Xids: they were
    found by the journal's read, and go on failing; when the journal is back, each is still counted once."""
    journal = Journal(tmp_path, (LOGS / "reset_then_reinit.log").read_text())
    assert journal.quick()["status"] == "fail"
    (journal.bin / "broken").write_text("")
    (journal.bin / "dmesg").write_text(
        "#!/bin/sh\necho '2026-04-02T10:20:00,000000+00:00 usb 1-1: new high-speed USB device number 3'\n"
    )
    by_dmesg = journal.quick()
    assert by_dmesg["details"]["source"] == "dmesg", by_dmesg
    assert by_dmesg["status"] == "fail" and "Xid 48 (Double Bit ECC Error) on GPU 1" in by_dmesg["summary"]
    assert "Xid 79 (GPU has fallen off the bus) on GPU 2: reboot" in by_dmesg["summary"]
    assert by_dmesg["details"]["read"] == "this boot again (read by dmesg; the last run read journalctl -k)"
    (journal.bin / "broken").unlink()
    back = journal.quick()
    assert back["details"]["source"] == "journalctl -k" and "--after-cursor" not in journal.calls()[0]
    (row,) = [r for r in back["details"]["xids"] if r["xid"] == 48]
    assert back["status"] == "fail" and row["count"] == 1, row


def test_a_clock_set_back_hides_no_xid_read_by_dmesg(tmp_path: Path) -> None:
    """dmesg prints each line's time from the wall clock: set back an hour, every line prints an hour earlier, and
    the new ones before where the last run stopped. The boot is read again, the new Xid found, the old one counted
    once."""
    journal = Journal(tmp_path, "")
    (journal.bin / "broken").write_text("")
    ring = tmp_path / "ring"
    (journal.bin / "dmesg").write_text(f"#!/bin/sh\ncat {ring}\n")

    def dmesg(hour: int, *messages: str) -> None:
        ring.write_text("".join(f"2026-04-02T{hour:02}:{m:02}:00,000000+00:00 {text}\n" for m, text in enumerate(
            ["Linux version 6.8.0-45-generic", "NVRM: Xid (PCI:0000:19:00): 48, pid=90211, name=python, DBE.",
             *messages])))  # fmt: skip

    dmesg(10)
    assert "Xid 48 (Double Bit ECC Error) on GPU 1" in journal.quick()["summary"]
    dmesg(9, USB.split("kernel: ")[1].strip(), "NVRM: Xid (PCI:0000:1a:00): 79, pid=1, name=x, fallen off the bus.")
    stepped = journal.quick()
    assert stepped["details"]["read"].startswith("this boot again (the wall clock was set"), stepped
    assert "Xid 79 (GPU has fallen off the bus) on GPU 2: reboot" in stepped["summary"], stepped
    (row,) = [r for r in stepped["details"]["xids"] if r["xid"] == 48]
    assert row["count"] == 1, row
    dmesg(9, USB.split("kernel: ")[1].strip(), "NVRM: Xid (PCI:0000:1a:00): 79, pid=1, name=x, fallen off the bus.",
          "usb 1-1: USB disconnect, device number 3")  # fmt: skip
    after = journal.quick()
    assert after["details"]["read"].endswith(", 1 new line(s)"), after
    assert {r["xid"]: r["count"] for r in after["details"]["xids"]} == {48: 1, 79: 1}


def test_a_clock_set_forward_counts_no_xid_twice(tmp_path: Path) -> None:
    """Set an hour forward, dmesg prints every line an hour later, the old ones too: all after where the last
    run stopped. The boot's wall-clock start (/proc/stat's btime) moved by as much, so the boot is read again
    and the Xid already read counted once; a new one is found."""
    journal = Journal(tmp_path, "")
    (journal.bin / "broken").write_text("")
    ring = tmp_path / "ring"
    (journal.bin / "dmesg").write_text(f"#!/bin/sh\ncat {ring}\n")
    booted = 1_775_116_800

    def dmesg(shift_h: int, *messages: str) -> None:
        (tmp_path / "proc" / "stat").write_text(f"cpu  1 2 3 4\nbtime {booted + 3600 * shift_h}\nprocesses 9\n")
        lines = ["Linux version 6.8.0-45-generic", "NVRM: Xid (PCI:0000:19:00): 48, pid=90211, name=python, DBE.",
                 *messages]  # fmt: skip
        ring.write_text(
            "".join(f"2026-04-02T{10 + shift_h:02}:{m:02}:00,000000+00:00 {t}\n" for m, t in enumerate(lines))
        )

    dmesg(0)
    assert "Xid 48 (Double Bit ECC Error) on GPU 1" in journal.quick()["summary"]
    dmesg(1, "NVRM: Xid (PCI:0000:1a:00): 79, pid=1, name=x, fallen off the bus.")
    moved = journal.quick()
    assert moved["details"]["read"].startswith("this boot again (the wall clock was set"), moved
    assert {r["xid"]: r["count"] for r in moved["details"]["xids"]} == {48: 1, 79: 1}, moved
    dmesg(1, "NVRM: Xid (PCI:0000:1a:00): 79, pid=1, name=x, fallen off the bus.", USB.split("kernel: ")[1].strip())
    after = journal.quick()
    assert after["details"]["read"].endswith(", 1 new line(s)"), after
    assert {r["xid"]: r["count"] for r in after["details"]["xids"]} == {48: 1, 79: 1}


def _ring(tmp_path: Path) -> tuple[Journal, Path]:
    """A Journal whose journalctl is broken, so dmesg (a script printing the file ``ring``) reads the log."""
    journal = Journal(tmp_path, "")
    (journal.bin / "broken").write_text("")
    ring = tmp_path / "ring"
    (journal.bin / "dmesg").write_text(f"#!/bin/sh\ncat {ring}\n")
    return journal, ring


def test_a_clock_set_while_dmesg_runs_counts_no_xid_twice(tmp_path: Path) -> None:
    """The boot's start read before the log is the last run's; the clock is set while dmesg prints (every line an
    hour later): read after the log, the boot's start has moved, and the boot is read again."""
    journal, ring = _ring(tmp_path)
    stat = tmp_path / "proc" / "stat"
    stat.write_text("btime 1775116800\n")
    lines = ["Linux version 6.8.0-45-generic", "NVRM: Xid (PCI:0000:19:00): 48, pid=90211, name=python, DBE."]
    ring.write_text("".join(f"2026-04-02T10:{m:02}:00,000000+00:00 {t}\n" for m, t in enumerate(lines)))
    assert "Xid 48 (Double Bit ECC Error) on GPU 1" in journal.quick()["summary"]
    shifted = "".join(f"2026-04-02T11:{m:02}:00,000000+00:00 {t}\n" for m, t in enumerate(lines))
    (journal.bin / "dmesg").write_text(f"#!/bin/sh\necho 'btime 1775120400' > {stat}\ncat <<'EOF'\n{shifted}EOF\n")
    moved = journal.quick()
    assert moved["details"]["read"].startswith("this boot again (the wall clock was set"), moved
    assert {r["xid"]: r["count"] for r in moved["details"]["xids"]} == {48: 1}, moved


def test_seconds_after_boot_are_not_moved_by_a_clock_set(tmp_path: Path) -> None:
    """busybox's dmesg prints seconds after boot, which setting the clock does not move: the run goes on from
    where the last one stopped, whatever the boot's wall-clock start did."""
    journal, ring = _ring(tmp_path)
    stat = tmp_path / "proc" / "stat"
    lines = ["Linux version 6.8.0-45-generic", "NVRM: Xid (PCI:0000:19:00): 48, pid=90211, name=python, DBE."]
    stat.write_text("btime 1775116800\n")
    ring.write_text("".join(f"[  {10 + m}.000000] {t}\n" for m, t in enumerate(lines)))
    journal.quick()
    stat.write_text("btime 1775120400\n")
    ring.write_text("".join(f"[  {10 + m}.000000] {t}\n" for m, t in enumerate([*lines, USB.split("kernel: ")[1]])))
    after = journal.quick()
    assert after["details"]["read"].endswith(", 1 new line(s)"), after
    assert {r["xid"]: r["count"] for r in after["details"]["xids"]} == {48: 1}


def test_another_nodes_state_in_a_shared_directory_is_neither_resumed_nor_history(tmp_path: Path) -> None:
    """A home directory shared by nodes (NFS) holds one state file: another node's boot is not this node's
    earlier boot, and its place is not this node's place."""
    journal = Journal(tmp_path, xid_79_on_gpu_3(1))
    journal.quick()
    reboot(journal, tmp_path, "0a1b2c3d-4e5f-4677-8899-aabbccddeeff", 2)
    reboot(journal, tmp_path, "5d6e7f80-9a1b-4c2d-8e3f-405162738495", 3)
    own = journal.full()
    assert own["summary"].startswith("Xid 79 (GPU has fallen off the bus) on GPU 3: reboot"), own  # one boot kept
    state = journal.state / "kernel-log.json"
    kept = json.loads(state.read_text())
    kept.update(host="another-node", history=[{"boot": "b1", "xids": [{"kind": "off_bus", "device": "0000:1b:00",
                                                                       "code": None}]}])  # fmt: skip
    state.write_text(json.dumps(kept))
    full = journal.full()
    assert "earlier_boots" not in full["details"], full
    quick = journal.quick()
    assert quick["details"]["read"] == "this boot" and quick["details"]["earlier_boots"] == 0, quick


def test_no_home_directory_keeps_no_state_and_breaks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """An arbitrary user id in a container: no HOME, no passwd entry, no variable naming a state directory."""
    from envcheck.probes import kernel

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert kernel.state_dir({}) is None
    info = kernel.KernelLogInfo(True, "dmesg", boots=1)
    kernel._earlier_from_state({}, info, "dmesg")
    assert info.history == [] and info.history_boots == 0


def test_a_cursor_the_journal_rotated_away_reads_the_boot_again_and_keeps_its_xids(tmp_path: Path) -> None:
    """The journal no longer knows the cursor (journalctl refuses it): this boot is read again from what the
    journal still holds, and the GPU events the earlier runs of this boot found are still judged."""
    journal = Journal(tmp_path, (LOGS / "reset_then_reinit.log").read_text())
    assert journal.quick()["status"] == "fail"
    journal.rotate()
    journal.append(USB)
    rotated = journal.quick()
    resumed, whole = journal.calls()
    assert "--after-cursor=s=a1;" in resumed and "--after-cursor" not in whole and "-n " in whole
    assert rotated["status"] == "fail" and "Xid 48 (Double Bit ECC Error) on GPU 1" in rotated["summary"], rotated
    assert "Xid 79 (GPU has fallen off the bus) on GPU 2: reboot" in rotated["summary"]
    assert rotated["details"]["read"] == "this boot again (the journal no longer holds where the last run stopped)"
    assert journal.cursor() == "s=b2;i=0"
    after = journal.quick()
    assert "--after-cursor=s=b2;i=0" in journal.calls()[0] and after["status"] == "fail"


def test_the_journal_of_another_boot_is_not_resumed(tmp_path: Path) -> None:
    journal = Journal(tmp_path, (LOGS / "reset_then_reinit.log").read_text())
    assert journal.quick()["status"] == "fail"
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text("0a1b2c3d-4e5f-4677-8899-aabbccddeeff\n")
    journal.rotate()
    journal.append("2026-04-03T07:00:01+0000 gpu-12 kernel: Linux version 6.8\n" + USB)
    rebooted = journal.quick()
    assert "--after-cursor" not in journal.calls()[0]
    assert rebooted["status"] == "ok" and rebooted["details"]["read"] == "this boot", rebooted


def test_a_boot_read_again_after_a_lost_cursor_counts_each_xid_once(tmp_path: Path) -> None:
    """The journal's ids changed but its lines of this boot are still there: read again, each Xid is one event."""
    journal = Journal(tmp_path, (LOGS / "reset_then_reinit.log").read_text())
    journal.quick()
    (journal.bin / "seqnum_id").write_text("c3\n")
    again = journal.quick()
    assert again["details"]["read"].startswith("this boot again")
    (row,) = [r for r in again["details"]["xids"] if r["xid"] == 48]
    assert row["count"] == 1, row


def xid_79_on_gpu_3(day: int) -> str:
    return (f"2026-04-0{day}T10:00:00+0000 gpu-12 kernel: NVRM: Xid (PCI:0000:1b:00): 79, pid='<unknown>', "
            "name=<unknown>, GPU has fallen off the bus.\n")  # fmt: skip


def reboot(journal: Journal, tmp_path: Path, boot: str, day: int) -> None:
    """A new boot (a new boot id, a journal that holds none of the old boot's lines), with Xid 79 on GPU 3 again."""
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text(boot + "\n")
    journal.rotate()
    journal.append(f"2026-04-0{day}T07:00:01+0000 gpu-12 kernel: Linux version 6.8\n" + xid_79_on_gpu_3(day))


def test_the_healthcheck_escalates_an_xid_back_after_two_reboots_from_its_state_as_the_doctor_does(
    tmp_path: Path,
) -> None:
    """The healthcheck reads this boot alone; the Xids its state file kept from the boots before judge a recurring
    one by gpud's rule, as the full doctor judges it from the journal's earlier boots."""
    journal = Journal(tmp_path, xid_79_on_gpu_3(1))
    assert "Xid 79 (GPU has fallen off the bus) on GPU 3: reboot" in journal.quick()["summary"]
    reboot(journal, tmp_path, "0a1b2c3d-4e5f-4677-8899-aabbccddeeff", 2)
    once = journal.quick()  # one reboot since: a reboot may still clear it
    assert "Xid 79 (GPU has fallen off the bus) on GPU 3: reboot" in once["summary"], once
    assert once["details"]["read"] == "this boot" and once["details"]["earlier_boots"] == 1
    reboot(journal, tmp_path, "5d6e7f80-9a1b-4c2d-8e3f-405162738495", 3)
    twice = journal.quick()
    assert twice["status"] == "fail", twice
    assert twice["summary"].startswith("Xid 79 (GPU has fallen off the bus) on GPU 3: hardware inspection")
    assert twice["fix"]["command"] == "sudo nvidia-bug-report.sh"
    (row,) = [r for r in twice["details"]["xids"] if r["xid"] == 79]
    assert (row["boots"], row["kept_boots"], row["action"]) == ([0], [-2, -1], "hardware inspection")
    # The full doctor over the same journal, which holds this boot alone, reads the healthcheck's record of
    # the boots before and says the same; it leaves the healthcheck's place where it was.
    before = (journal.state / "kernel-log.json").read_bytes()
    full = journal.full()
    assert full["summary"].startswith("Xid 79 (GPU has fallen off the bus) on GPU 3: hardware inspection"), full
    assert full["details"]["earlier_boots"] == 2 and "read" not in full["details"]
    assert (journal.state / "kernel-log.json").read_bytes() == before
    kept = json.loads((journal.state / "kernel-log.json").read_text())
    assert [len(boot["xids"]) for boot in kept["history"]] == [1, 1]
    # The same boot's state without that history (as a state file written before it was kept): a reboot.
    kept.pop("history")
    (journal.state / "kernel-log.json").write_text(json.dumps(kept))
    without = journal.quick()
    assert "Xid 79 (GPU has fallen off the bus) on GPU 3: reboot" in without["summary"], without
    assert without["details"]["earlier_boots"] == 0


def test_the_state_keeps_a_few_xids_of_the_last_five_boots(tmp_path: Path) -> None:
    """Every boot hands its Xids on, and the history stays bounded: five boots, eight codes per GPU."""
    from envcheck.probes.kernel import HISTORY_BOOTS, STATE_FILE, XIDS_PER_DEVICE, since_last_run

    log, state = tmp_path / "kern.log", tmp_path / "state"
    env = {"ENVCHECK_KERNEL_LOG": str(log), "ENVCHECK_STATE_DIR": str(state)}
    text = ""
    for boot in range(HISTORY_BOOTS + 2):
        text += f"-- Boot {boot:032x} --\n2026-04-01T0{boot}:00:00+0000 gpu-12 kernel: Linux version 6.8\n"
        for code in range(100, 100 + XIDS_PER_DEVICE + 3):
            text += f"2026-04-01T0{boot}:00:01+0000 gpu-12 kernel: NVRM: Xid (PCI:0000:1b:00): {code}, pid=1\n"
        log.write_text(text)
        info = since_last_run(env, 2.0)
    history = json.loads((state / STATE_FILE).read_text())["history"]
    assert [row["boot"] for row in history] == [f"-- Boot {b:032x} --" for b in range(HISTORY_BOOTS, 0, -1)]
    assert all(len(row["xids"]) == XIDS_PER_DEVICE for row in history)
    assert history[0]["xids"][-1] == {"kind": "xid", "device": "0000:1b:00", "code": 100 + XIDS_PER_DEVICE + 2}
    assert info.history_boots == HISTORY_BOOTS and {e.boot for e in info.history} == set(range(-HISTORY_BOOTS, 0))


def explain_here(log: Path, *text: str) -> dict[str, dict[str, Any]]:
    """``envcheck explain TEXT`` on a machine whose kernel log is ``log``: each match by its signature's id."""
    env = {**os.environ, "PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "hgx_8gpu"}
    env["ENVCHECK_KERNEL_LOG"] = str(log)
    proc = subprocess.run([ENVCHECK, "explain", *text, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return {m["id"]: m for m in json.loads(proc.stdout)["matches"]}


PEERMEM = "nvidia-peermem nv_get_p2p_free_callback:127 ERROR detected invalid context, skipping further processing"


def test_explain_counts_only_the_kernel_event_of_the_signatures_kind(tmp_path: Path) -> None:
    """kernel.events warns for several kinds of event: an OOM kill in this machine's log is not the cause of a
    peermem error or of a segfault in NCCL; the peermem line in the log is."""
    lines = (LOGS / "hgx_journal.log").read_text().splitlines()
    oom_only = tmp_path / "oom.log"
    oom_only.write_text("\n".join(line for line in lines if "oom" in line.lower() or "Killed process" in line) + "\n")
    segfault = "python[81002]: segfault at 0 ip 00007f sp 00007ffd error 4 in libnccl.so.2[7f12+1a000]"
    matches = explain_here(oom_only, PEERMEM, segfault)
    for signature in ("rdma.peermem_invalid_context", "nccl.segfault"):
        assert matches[signature]["verdict"] == "not_seen", matches[signature]
        assert matches[signature]["shown_by"] == []
    peermem_log = tmp_path / "peermem.log"
    peermem_log.write_text("\n".join(line for line in lines if "peermem" in line) + "\n")
    shown = explain_here(peermem_log, PEERMEM)["rdma.peermem_invalid_context"]
    assert shown["verdict"] == "shown" and shown["shown_by"] == ["kernel.events"]


def test_explain_shows_an_xid_signature_only_by_the_xids_that_decide_it(tmp_path: Path) -> None:
    """kernel.xid warns for any Xid: an Xid 94 in this machine's log is not the cause of a GPU off the bus nor of
    an NVLink error; it is of a memory error. An Xid 79 in the log is the GPU off the bus."""
    lines = (LOGS / "hgx_journal.log").read_text().splitlines()
    only_94 = tmp_path / "xid94.log"
    only_94.write_text("\n".join(line for line in lines if "): 94," in line) + "\n")
    off_bus = "NVRM: GPU 0000:3b:00.0: GPU has fallen off the bus."
    nvlink = "NVRM: Xid (PCI:0000:b3:00): 74, pid=991, name=python, NVLink: fatal error detected on link 3"
    ecc = "NVRM: Xid (PCI:0000:b3:00): 94, pid=991, name=python, Contained: SM (0x1)."
    matches = explain_here(only_94, off_bus, nvlink, ecc)
    for signature in ("gpu.lost", "fabric.nvlink_error"):
        assert "kernel.xid" not in matches[signature]["shown_by"], matches[signature]
    assert "kernel.xid" in matches["gpu.memory_errors"]["shown_by"]
    with_79 = tmp_path / "xid79.log"
    with_79.write_text("\n".join(line for line in lines if "): 79," in line) + "\n")
    lost = explain_here(with_79, off_bus)["gpu.lost"]
    assert lost["verdict"] == "shown" and "kernel.xid" in lost["shown_by"], lost


# -- the healthcheck's state file, damaged -----------------------------------------------------------------------

#: Two boots of a saved log: GPU 3's Xid 79 in the first; the second is ``reset_then_reinit.log`` (Xid 48 on GPU 1,
#: Xid 79 on GPU 2), then a new Xid 64 on GPU 4 that arrives after the healthcheck's last run.
EARLIER_BOOT = "-- Boot 0a1b2c3d4e5f46778899aabbccddeeff --\n" + xid_79_on_gpu_3(1)
XID_64_ON_GPU_4 = (
    "2026-04-02T11:00:00+0000 gpu-12 kernel: NVRM: Xid (PCI:0000:1c:00): 64, pid=90211, name=python, "
    "ECC page retirement or row remapping recording event.\n"
)
THIS_BOOTS_XIDS = {("0000:19:00", 48), ("0000:1a:00", 79), ("0000:1c:00", 64)}


class _Probes:
    """What kernel.xid asks for, in this process: the healthcheck's read of the log, and no NVML."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def probe(self, name: str) -> Any:
        from envcheck.core.probing import ProbeFailed
        from envcheck.probes.kernel import since_last_run

        if name == "kernel_log":
            return since_last_run(self.env, 2.0)
        raise ProbeFailed(name, name, RuntimeError("not in this test"))


@pytest.fixture(scope="module")
def kept_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A saved log of two boots read by the healthcheck once per boot, and the state file it left: this boot's
    events, its place in the log and the earlier boot's Xids; then the Xid 64 written after that run."""
    from envcheck.probes.kernel import STATE_FILE, since_last_run

    here = tmp_path_factory.mktemp("kept")
    log, state = here / "kern.log", here / "state"
    env = {"ENVCHECK_KERNEL_LOG": str(log), "ENVCHECK_STATE_DIR": str(state)}
    log.write_text(EARLIER_BOOT)
    since_last_run(env, 2.0)
    log.write_text(EARLIER_BOOT + (LOGS / "reset_then_reinit.log").read_text())
    since_last_run(env, 2.0)
    log.write_text(log.read_text() + XID_64_ON_GPU_4)
    kept = json.loads((state / STATE_FILE).read_text())
    assert kept["position"] and kept["events"] and kept["history"]
    return log, kept


def this_boots_xids(info: KernelLogInfo) -> set[tuple[str | None, int | None]]:
    return {(e.device, e.code) for e in info.events if e.kind == "xid" and e.boot == 0}


DAMAGED = {
    "a place that is a number": lambda s: s.update(position=5),
    "a place whose time is text": lambda s: s.update(position={"at": "x", "same": 1}),
    "a place without a time": lambda s: s.update(position={"at": None, "same": 1}),
    "a place whose time is NaN": lambda s: s["position"].update(at=float("nan")),
    "a place counted by a boolean": lambda s: s["position"].update(same=True),
    "an event whose device is a list": lambda s: s["events"][0].update(device=[1]),
    "an event whose code is a list": lambda s: s["events"][0].update(code=[1]),
    "an event of an earlier boot": lambda s: s["events"][0].update(boot=-1),
    "an earlier boot's Xid whose device is a list": lambda s: s["history"][0]["xids"][0].update(device=[1]),
    "an earlier boot that is a number": lambda s: s["history"][0].update(boot=7),
}


@pytest.mark.parametrize("damage", DAMAGED, ids=list(DAMAGED))
def test_a_state_file_with_a_field_of_the_wrong_type_is_replaced_never_a_crash(
    kept_state: tuple[Path, dict[str, Any]], tmp_path: Path, damage: str
) -> None:
    """A wrong value in one field is a damaged file: ignored (this boot read whole) and replaced, not a crash at
    every run, nor a place that skips every new line."""
    from envcheck.probes.kernel import STATE_FILE, _load_state

    log, kept = kept_state
    state = json.loads(json.dumps(kept))
    DAMAGED[damage](state)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / STATE_FILE).write_text(json.dumps(state))
    ctx = _Probes({"ENVCHECK_KERNEL_LOG": str(log), "ENVCHECK_STATE_DIR": str(tmp_path / "state")})
    from envcheck.doctor.checks.kernel import xid

    verdict = xid(ctx)
    assert "Xid 64 (" in verdict.summary and "on GPU 0000:1c:00" in verdict.summary, verdict
    assert verdict.details["read"] == "this boot", verdict.details
    assert _load_state(tmp_path / "state" / STATE_FILE) is not None  # replaced by a sound one


def _places(value: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field and element of a JSON value, as the keys that lead to it."""
    inner = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [where] + [p for key, item in inner for p in _places(item, (*where, key))]


#: Any JSON value (json.loads reads NaN and Infinity too).
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
DELETED = object()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_damage_to_the_state_file_crashes_the_healthcheck_or_loses_an_xid(
    kept_state: tuple[Path, dict[str, Any]], tmp_path: Path, data: st.DataObject
) -> None:
    """A real state file with one field (or one element) replaced by any JSON value, or taken out: the healthcheck
    never crashes, the Xid that came after its last run is found, and where the file is damaged (ignored) every
    Xid of this boot is found again. (A change that leaves a sound file, an Xid's code that is another number, is
    what the file says, and is believed.)"""
    from envcheck.doctor.checks.kernel import xid
    from envcheck.probes.kernel import STATE_FILE, _load_state

    log, kept = kept_state
    state = json.loads(json.dumps(kept))
    where = data.draw(st.sampled_from(_places(state)[1:]), label="where")
    value = data.draw(JSON_VALUES | st.just(DELETED), label="value")
    parent = state
    for key in where[:-1]:
        parent = parent[key]
    if value is DELETED:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    directory = tmp_path / "state"
    directory.mkdir(exist_ok=True)
    (directory / STATE_FILE).write_text(json.dumps(state))
    damaged = _load_state(directory / STATE_FILE) is None
    ctx = _Probes({"ENVCHECK_KERNEL_LOG": str(log), "ENVCHECK_STATE_DIR": str(directory)})
    info = ctx.probe("kernel_log")
    assert ("0000:1c:00", 64) in this_boots_xids(info), info.events
    if damaged:
        assert this_boots_xids(info) >= THIS_BOOTS_XIDS and info.since == "this boot", info.events
    assert _load_state(directory / STATE_FILE) is not None
    (directory / STATE_FILE).write_text(json.dumps(state))
    assert "on GPU 0000:1c:00" in xid(ctx).summary

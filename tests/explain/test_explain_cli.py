"""``envcheck explain`` through the installed command: the pasted text, files, stdin and a wrapped command;
the checks each match names run on this machine (over the fake NVML where a check must really fail here);
exit codes; redaction; the JSON document and its envelope."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.explain.test_symbols import fake_site

ROOT = Path(__file__).resolve().parents[2]
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
NVML_SITE = ROOT / "tests" / "nvml_site"
NO_KERNEL = "RuntimeError: CUDA error: no kernel image is available for execution on the device"


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    env.update(extra)
    return env


def envcheck(*args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENVCHECK, "explain", *args],
        capture_output=True,
        text=True,
        env=env_with(**extra),
        input=stdin,
        timeout=180,
        cwd=ROOT,
    )


def document(*args: str, **kw: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    proc = envcheck(*args, "--json", **kw)
    return proc, json.loads(proc.stdout)


def test_no_kernel_image_names_torch_arch() -> None:
    proc, doc = document(NO_KERNEL)
    [match] = doc["matches"]
    checks = ["torch.arch", "packages.extension_arch"]  # torch's kernels, then an extension's
    assert match["id"] == "cuda.no_kernel_image" and match["checks"] == checks
    assert [r["id"] for r in match["results"]] == checks
    # this machine's torch is the CPU build: nothing to judge here, so the cause is not seen here
    assert match["verdict"] == "not_seen" and proc.returncode == 0
    assert match["lines"] == [{"source": "arguments", "line": 1, "text": NO_KERNEL}]
    text = envcheck(NO_KERNEL).stdout
    assert "torch.arch" in text and "Not seen here" in text and "pytorch/pytorch#150733" in text


def test_a_cause_this_machine_shows_exits_1_with_the_checks_verdict_and_fix() -> None:
    """Over a fake NVML whose library is newer than the kernel module, driver.nvml really fails here."""
    nvml = {"PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "driver_library_mismatch"}
    proc, doc = document("Failed to initialize NVML: Driver/library version mismatch", **nvml)
    assert proc.returncode == 1 and doc["status"] == "fail" and doc["exit_code"] == 1
    [match] = doc["matches"]
    assert match["verdict"] == "shown"
    [result] = match["results"]
    assert result["id"] == "driver.nvml" and result["status"] == "fail" and result["fix"]["text"]
    assert doc["summary"]["verdict"] == "cause_shown" and "driver.nvml" in doc["summary"]["text"]
    text = envcheck("-", stdin="Failed to initialize NVML: Driver/library version mismatch\n", **nvml)
    assert text.returncode == 1 and "This machine shows the cause" in text.stdout


def test_an_undefined_torch_symbol_names_the_distribution_that_owns_the_library(tmp_path) -> None:
    site, module = fake_site(tmp_path)
    proc, doc = document(f"ImportError: {site}/{module}: undefined symbol: _ZN3c104cuda9SetDeviceEi")
    [match] = doc["matches"]
    facts = match["facts"]
    assert match["id"] == "extension.undefined_symbol"
    assert facts["distribution"]["name"] == "flash_attn" and facts["distribution"]["version"] == "2.5.8"
    assert facts["namespace"] == "c10" and facts["wrong_side"] == "torch"
    assert facts["demangled"].startswith("c10::cuda::SetDevice")
    assert "--force-reinstall" in match["fix"]["text"] and "flash_attn" in match["fix"]["text"]
    assert "flash_attn 2.5.8" in envcheck(f"{site}/{module}: undefined symbol: _ZN3c104cuda9SetDeviceEi").stdout


def test_a_wrapped_command_keeps_its_output_and_its_exit_code(tmp_path) -> None:
    script = f"import sys; print('step 1 ok', flush=True); print({NO_KERNEL!r}, file=sys.stderr); sys.exit(3)"
    proc = envcheck("--", sys.executable, "-c", script)
    assert proc.returncode == 3
    assert proc.stdout == "step 1 ok\n"  # the job's stdout is the job's alone
    assert proc.stderr.startswith(NO_KERNEL + "\n")  # its stderr first, unchanged
    assert "cuda.no_kernel_image" in proc.stderr and "torch.arch" in proc.stderr
    ok = envcheck("--", sys.executable, "-c", "print('fine')")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "fine\n", "")


def test_ctrl_c_reaches_the_wrapped_command(tmp_path) -> None:
    marker = tmp_path / "got"
    script = (
        "import signal, sys, time\n"
        "def stop(n, f):\n"
        f"    open({str(marker)!r}, 'w').write(str(n)); sys.exit(7)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [ENVCHECK, "explain", "--", sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_with(),
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert marker.read_text() == str(int(signal.SIGINT)) and proc.returncode == 7


def test_the_wrapped_command_dies_with_envcheck(tmp_path) -> None:
    pid_file = tmp_path / "pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [ENVCHECK, "explain", "--", sys.executable, "-c", script], stdout=subprocess.PIPE, env=env_with(), text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    child = int(pid_file.read_text())
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_nothing_matched_is_one_plain_line_and_exit_0() -> None:
    proc = envcheck("Segmentation fault in my own code")
    assert proc.returncode == 0
    assert proc.stdout.strip().splitlines() == [
        "envcheck explain: no known error in what was read; next: run `envcheck doctor` on the machine where it "
        "happened"
    ]
    _, doc = document("nothing here")
    assert doc["matches"] == [] and doc["next_step"] == "envcheck doctor"


def test_a_file_given_as_the_text_says_to_read_it_with_f(tmp_path) -> None:
    """``envcheck explain job.log`` reads the words "job.log" (nothing known, exit 0 as for any such text), and
    says that job.log is a file and the command that reads it."""
    log = tmp_path / "job.log"
    log.write_text(NO_KERNEL + "\n")
    proc = envcheck(str(log))
    assert proc.returncode == 0
    instead = f"envcheck explain -f {log}"
    assert f"{log} is a file" in proc.stderr and instead in proc.stderr
    assert instead in proc.stdout and "envcheck doctor" not in proc.stdout
    _, doc = document(str(log))
    assert doc["next_step"] == instead and doc["summary"]["verdict"] == "nothing_matched"
    assert document(str(log), "more words")[1]["next_step"] == "envcheck doctor"  # text, not one path
    assert "no kernel image" in envcheck("-f", str(log)).stdout


def test_secrets_in_the_pasted_text_never_echo(tmp_path) -> None:
    token = "hf_" + "a1B2c3D4e5F6g7H8i9J0kLmNoPq"
    log = tmp_path / "job.log"
    log.write_text(
        f"export HF_TOKEN={token}\n"
        f"{NO_KERNEL} while fetching https://alice:s3cretPassw0rd@example.com/x HF_TOKEN={token}\n"
    )
    for args in (("-f", str(log)), ("-f", str(log), "--json"), ("-f", str(log), "--format", "markdown")):
        proc = envcheck(*args, "-o", str(tmp_path / "out.json"))
        written = (tmp_path / "out.json").read_text()
        for shown in (proc.stdout, proc.stderr, written):
            assert token not in shown and "s3cretPassw0rd" not in shown
        assert "no kernel image" in proc.stdout and "<redacted>" in proc.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path) -> None:
    for args in (("-f", str(tmp_path / "missing.log")), ("-f", str(tmp_path)), (), ("--",), ("text", "--", "ls")):
        proc = envcheck(*args)
        assert proc.returncode == 2, args
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == "", (args, proc.stderr)
    assert "missing.log" in envcheck("-f", str(tmp_path / "missing.log")).stderr


def test_the_json_document_carries_the_envelope() -> None:
    proc, doc = document(NO_KERNEL, "-v")
    assert doc["schema"] == "envcheck.explain/1"
    for key in ("envcheck_version", "generated_at", "duration_s", "host", "status", "exit_code", "summary"):
        assert key in doc, key
    assert doc["input"] == {"sources": ["arguments"], "bytes": len(NO_KERNEL), "lines": 1}
    for fmt in ("html", "markdown"):
        out = envcheck(NO_KERNEL, "--format", fmt).stdout
        assert "cuda.no_kernel_image" in out and "torch.arch" in out


def _on_a_controlling_terminal(
    args: list[str], after: str, typed: bytes, within_s: float = 60.0
) -> tuple[int | None, str]:
    """Run ``args`` as a shell runs a job on a terminal: a session of its own whose controlling terminal is a
    pseudo-terminal, in its foreground; once the terminal shows ``after``, type ``typed``; return the exit
    code (None: still running when the time was up, then killed) and what the terminal showed."""
    import fcntl
    import pty
    import select
    import termios

    leader, follower = pty.openpty()

    def take_the_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        args, stdin=follower, stdout=follower, stderr=follower, env=env_with(), preexec_fn=take_the_terminal
    )
    os.close(follower)
    shown, sent, deadline = b"", False, time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not sent and after.encode() in shown:
            os.write(leader, typed)
            sent = True
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # every process let go of the terminal
                break
            if not data:
                break
            shown += data
        elif proc.poll() is not None:
            break
    try:
        code: int | None = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        code = None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    os.close(leader)
    return code, shown.decode("utf-8", "replace")


def test_a_wrapped_job_on_a_terminal_can_read_it() -> None:
    """A job that asks the user something (a login prompt, pdb) reads the terminal. In a process group of its
    own it would be in the terminal's background, and the kernel stops a background reader (SIGTTIN): the
    job would hang, stopped, under envcheck. On a terminal it stays in the foreground group."""
    job = [sys.executable, "-c", "print('got', input('name? '))"]
    code, shown = _on_a_controlling_terminal([ENVCHECK, "explain", "--", *job], "name? ", b"hello\n")
    assert code == 0 and "got hello" in shown, (code, shown)


def test_ctrl_c_on_a_terminal_reaches_the_wrapped_job_once() -> None:
    """The terminal's Ctrl-C goes to its whole foreground group, the job and envcheck: envcheck does not send
    it again. The job counts the SIGINTs it gets for a second after the first, and exits 130."""
    script = (
        "import signal, sys, time\n"
        "got = []\n"
        "signal.signal(signal.SIGINT, lambda *a: got.append(1))\n"
        "print('ready', flush=True)\n"
        "end = time.monotonic() + 30\n"
        "while not got and time.monotonic() < end: time.sleep(0.05)\n"
        "time.sleep(1)\n"
        "print('sigints', len(got), flush=True)\n"
        "sys.exit(130)\n"
    )
    job = [ENVCHECK, "explain", "--", sys.executable, "-c", script]
    code, shown = _on_a_controlling_terminal(job, "ready", b"\x03")
    assert code == 130 and "sigints 1" in shown, (code, shown)


def test_saved_nccl_logs_name_the_net_checks_and_comms_transport() -> None:
    """A saved NCCL_DEBUG=INFO log of a fallback to sockets, and one with GPUDirect RDMA disabled."""
    logs = ROOT / "tests" / "probes" / "nccl_logs"
    _, doc = document("-f", str(logs / "socket_fallback.log"))
    [match] = [m for m in doc["matches"] if m["id"] == "nccl.socket_fallback"]
    assert "net.ports" in match["fix"]["text"] and "envcheck comm" in match["there"]
    assert any("via NET/Socket/0" in line["text"] for line in match["lines"])
    _, doc = document("-f", str(logs / "ib_no_gdr.log"))
    [match] = [m for m in doc["matches"] if m["id"] == "nccl.gdr_disabled"]
    assert (
        "net.gpudirect" in match["fix"]["text"]
        and "GPU Direct RDMA Disabled for HCA 0 'mlx5_0'" in match["lines"][0]["text"]
    )
    _, doc = document("-f", str(logs / "ib_gdr.log"))
    assert not {m["id"] for m in doc["matches"]} & {"nccl.socket_fallback", "nccl.gdr_disabled"}

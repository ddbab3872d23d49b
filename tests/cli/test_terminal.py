"""What can go wrong on the way out, through the installed ``envcheck`` command: encodings that cannot
hold the report's characters, a full disk, a reader that goes away, a narrow terminal; and the report
formats and --output file, with the fake NVML loaded into the real process (tests/nvml_site)."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NVML_SITE = Path(__file__).parent.parent / "nvml_site"
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))


def env_with(**extra: str) -> dict[str, str]:
    # COLUMNS and LINES override a terminal's own size (pytest-xdist's workers set them to 80 and 24): a
    # command on a pseudo-terminal here is sized by the terminal, as a user's is.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_") and k not in ("COLUMNS", "LINES")}
    env.update({"PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "healthy_multi_gpu", **extra})
    return env


def run(*args: str, cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENVCHECK, *args], capture_output=True, text=True, env=env_with(**extra), timeout=120, cwd=cwd or "/"
    )


@pytest.mark.parametrize(
    "encoding_env",
    [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}],
    ids=["PYTHONIOENCODING=ascii", "LC_ALL=C"],
)
def test_an_ascii_only_output_encoding_gets_the_report_not_a_traceback(encoding_env):
    # ecc_uncorrected_row_remap fails a check, so the report has a fix line and the ✗/× characters.
    text = run("doctor", "--quick", ENVCHECK_FAKE_NVML="ecc_uncorrected_row_remap", **encoding_env)
    assert text.returncode == 1, text.stderr
    assert "Traceback" not in text.stderr
    assert "[FAIL]" in text.stdout and "gpu.ecc" in text.stdout
    as_json = run("doctor", "--quick", "--json", ENVCHECK_FAKE_NVML="ecc_uncorrected_row_remap", **encoding_env)
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    # ≤ in "supports CUDA ≤ 12.4" survives as a JSON escape, not as a replacement character.
    assert "≤" in next(c["summary"] for c in doc["checks"] if c["id"] == "driver.version")


def test_stdout_on_dev_full_is_one_line_and_exit_74():
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [ENVCHECK, "doctor", "--quick"], stdout=full, stderr=subprocess.PIPE, text=True, env=env_with(), timeout=120
        )
    assert proc.returncode == 74
    assert proc.stderr.count("\n") == 1 and "No space left on device" in proc.stderr, proc.stderr


def test_a_closed_pipe_is_sigpipes_exit_code_not_a_failed_check():
    # `envcheck doctor | head -1`: the reader takes one line and goes away.
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f'set -o pipefail; "{ENVCHECK}" doctor --quick -v | head -1 >/dev/null; echo "${{PIPESTATUS[0]}}"',
        ],
        capture_output=True,
        text=True,
        env=env_with(),
        timeout=120,
    )
    assert proc.stdout.strip() == "141", proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


@pytest.mark.parametrize(
    "fmt",
    [["--json"], ["-v"], ["--format", "markdown"]],
    ids=["json written as bytes", "text through rich", "markdown"],
)
def test_a_pipe_whose_reader_is_gone_before_the_write_is_exit_141_in_every_format(fmt):
    # A check fails in this scenario, so the run's own code would be 1: 141 must not read as "a check failed"
    # (click's main answers EPIPE with 1 unless the command's error is handed past it).
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now meets EPIPE, however small the report
    try:
        proc = subprocess.run(
            [ENVCHECK, "doctor", "--quick", *fmt],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env_with(ENVCHECK_FAKE_NVML="ecc_uncorrected_row_remap"),
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == "", proc.stderr  # silent, as a process killed by SIGPIPE would be


@pytest.mark.parametrize("fmt", [["--format", "markdown"], ["-v"], ["--json"]], ids=["markdown", "text", "json"])
def test_a_reader_gone_part_way_through_a_report_is_exit_141(fmt):
    """The reader takes a little and goes away while the report is still being written (``| head -c``,
    a pager quit early). Python's buffered stream returns what the pipe took and drops the rest without an
    error; the command must write the rest, meet the closed pipe and exit 141, not 1 ("a check failed")
    as if the whole report had been read. The pipe is one page, so the report is always larger than it."""
    import fcntl

    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    try:
        proc = subprocess.Popen(
            [ENVCHECK, "doctor", *fmt],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env_with(ENVCHECK_FAKE_NVML="ecc_uncorrected_row_remap"),
        )
    finally:
        os.close(write_end)
    try:
        assert len(os.read(read_end, 100)) > 0  # the report has started: the writer fills the page and waits
    finally:
        os.close(read_end)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 141, stderr
    assert stderr == ""


def test_output_file_gets_the_format_its_suffix_names(tmp_path):
    report = tmp_path / "report.md"
    proc = run("doctor", "--quick", "--output", str(report))
    assert proc.returncode == 0, proc.stderr
    assert "ready: no problems found" in proc.stdout and not proc.stdout.startswith("#")
    markdown = report.read_text()
    assert markdown.startswith("## envcheck doctor: ready: no problems found")
    assert "| ✅ ok | GPUs present | 4 × NVIDIA H100 80GB HBM3 (cc 9.0, 80.0 GiB) | `gpu.inventory` |" in markdown
    assert "NVIDIA driver: 550.54.15" in markdown
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temp file left behind
    as_json = tmp_path / "report.out"
    with_format = run("doctor", "--quick", "--format", "json", "--output", str(as_json))
    assert with_format.returncode == 0
    # a suffix that names no format: --format names the file's format, and stdout's too
    assert json.loads(as_json.read_text())["schema"] == "envcheck.doctor/1"
    assert json.loads(with_format.stdout)["schema"] == "envcheck.doctor/1"


@pytest.mark.parametrize(
    ("args", "stdout_starts", "file_starts"),
    [
        (["--json", "-o", "r.md"], "{", "## envcheck doctor"),  # --json decides stdout, the suffix the file
        (["--json", "-o", "r.json"], "{", "{"),
        (["--format", "markdown", "-o", "r.json"], "## envcheck doctor", "{"),
        (["-o", "r.json"], "Host", "{"),  # neither: the text report on stdout
    ],
)
def test_format_decides_stdout_and_the_suffix_decides_the_file(tmp_path, args, stdout_starts, file_starts):
    argv = [ENVCHECK, "doctor", "--quick", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env_with(), timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.lstrip().startswith(stdout_starts), proc.stdout[:200]
    assert (tmp_path / args[-1]).read_text().lstrip().startswith(file_starts)
    if stdout_starts == "{":
        json.loads(proc.stdout)  # stdout under --json is exactly one JSON object


def test_output_into_a_missing_directory_is_one_line(tmp_path):
    proc = run("doctor", "--quick", "--output", str(tmp_path / "nowhere" / "r.json"))
    assert proc.returncode == 74
    assert proc.stderr.count("\n") == 1 and "cannot write" in proc.stderr


def test_json_and_another_format_disagree_is_a_usage_error():
    proc = run("doctor", "--quick", "--json", "--format", "markdown")
    assert proc.returncode == 2 and "disagree" in proc.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_deadline_that_is_not_a_number_is_a_usage_error(value):
    proc = run("doctor", "--quick", "--deadline", value)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_no_gpu_is_ready_for_cpu_work_in_words_and_require_gpu_fails():
    plain = run("doctor", "--quick", "--json", ENVCHECK_FAKE_NVML="no_library")
    doc = json.loads(plain.stdout)
    assert plain.returncode == 0
    assert doc["summary"] == {"verdict": "ready_cpu", "text": "ready for CPU work: no NVIDIA GPU found"}
    required = run("doctor", "--quick", "--require-gpu", ENVCHECK_FAKE_NVML="no_library")
    assert required.returncode == 1
    assert "no NVIDIA GPU answers, and --require-gpu asks for one" in required.stdout
    assert "not ready: 1 problem" in required.stdout
    with_gpus = run("doctor", "--quick", "--require-gpu", "--json")
    assert with_gpus.returncode == 0
    assert {c["id"]: c["status"] for c in json.loads(with_gpus.stdout)["checks"]}["gpu.required"] == "ok"


def test_every_check_skipped_does_not_claim_ready():
    proc = run("doctor", "gpu", "driver", ENVCHECK_FAKE_NVML="no_library")
    assert proc.returncode == 0
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("nothing checked: all 15 selected checks skipped"), last
    assert "ready" not in last


def test_the_footer_is_the_real_wall_time():
    doc = json.loads(run("doctor", "--quick", "--json").stdout)
    # The wall time includes starting Python and importing envcheck, so it exceeds the checks' own time.
    assert doc["duration_s"] > doc["checks_duration_s"] > 0


def test_list_checks_as_json():
    proc = run("doctor", "--list-checks", "--json")
    listing = json.loads(proc.stdout)
    assert proc.returncode == 0
    ids = [c["id"] for c in listing]
    assert ids[0] == "host.python" and "gpu.required" in ids and "torch.arch" in ids
    assert {"id", "area", "area_title", "title", "doc"} <= set(listing[0])


def read_pty(args: list[str], env: dict[str, str], columns: int) -> str:
    """Run the command on a pseudo-terminal of ``columns`` columns and return what it showed."""
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


def test_a_narrow_terminal_never_splits_a_word():
    env = env_with(ENVCHECK_FAKE_NVML="ecc_uncorrected_row_remap", TERM="xterm")
    shown = read_pty([ENVCHECK, "doctor", "--quick"], env, 50)
    import re

    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown).replace("\r", "")
    lines = [line for line in plain.split("\n") if line.strip()]
    assert any("fix:" in line for line in lines)
    words = set(re.findall(r"[A-Za-z]{4,}", plain.replace("\n", " ")))
    # A fix's command is the one line written whole (the terminal folds it, and copies it as one line:
    # tests/render/test_commands_whole.py); everything else is wrapped here, between words.
    commands = [line for line in lines if line.lstrip().startswith("run: ")]
    assert commands and all(len(line.split("run: ", 1)[1].split()) > 1 for line in commands)
    for line in lines:
        if line in commands:
            continue
        assert len(line) <= 50, line
        # A word cut at the end of a line would leave a fragment that is no word of the report.
        tail = re.findall(r"[A-Za-z]{4,}$", line)
        assert not tail or tail[0] in words, line
    # Every word of the fix survives whole: the text, re-joined, contains the original sentence's words.
    assert "Uncorrected" in words and "drain" in words


def test_a_terminal_shows_which_probes_are_still_running_and_a_pipe_does_not():
    # The torch child imports the real torch: long enough for the live status to draw at least once.
    env = env_with(TERM="xterm")
    shown = read_pty([ENVCHECK, "doctor", "torch"], env, 120)
    assert "waiting for the torch child process" in shown
    piped = run("doctor", "torch")
    assert "waiting for" not in piped.stdout + piped.stderr


@pytest.mark.parametrize("columns", [120, 80])
def test_a_folded_skip_line_fits_the_terminal(columns):
    import re

    shown = read_pty([ENVCHECK, "doctor", "--quick"], env_with(ENVCHECK_FAKE_NVML="no_library", TERM="xterm"), columns)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown).replace("\r", "")
    lines = plain.split("\n")
    folded = next(i for i, line in enumerate(lines) if "13 checks skipped" in line)
    assert len(lines[folded].rstrip()) <= columns
    assert lines[folded + 1].strip() == ""  # nothing of it spilled onto a second line
    assert "gpu." in lines[folded]


def test_snapshot_fraction_that_is_not_a_number_is_a_usage_error():
    proc = run("snapshot", "--with-bench", "--fraction", "nan")
    assert proc.returncode == 2 and "not a finite number" in proc.stderr and "Traceback" not in proc.stderr


def test_snapshot_into_a_missing_directory_is_exit_74_and_leaves_nothing(tmp_path):
    proc = run("snapshot", "-o", str(tmp_path / "nowhere" / "lab.toml"))
    assert proc.returncode == 74 and proc.stderr.count("\n") == 1 and "cannot write" in proc.stderr
    written = tmp_path / "lab.toml"
    assert run("snapshot", "-o", str(written)).returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["lab.toml"]  # the temporary file was renamed, not left


def test_stderr_scrubs_every_way_of_writing_to_it():
    """The scrubbed stderr stands between every command and the terminal: write and writelines alike."""
    import io

    from envcheck.cli.terminal import ScrubbedStream

    secret = "hf_" + "x" * 30
    raw = io.StringIO()
    stream = ScrubbedStream(raw)
    stream.write(f"token {secret}\n")
    stream.writelines([f"again {secret}\n", "plain\n"])
    assert secret not in raw.getvalue() and raw.getvalue().endswith("plain\n")


@pytest.mark.parametrize(("free", "status"), [(str(5 << 30), "warn"), (str(512 << 20), "fail")])
def test_the_disk_check_judges_the_free_space_the_command_reads(free, status):
    # The fake node's disk (tests/nvml_site) answers through shutil.disk_usage, the call the probe makes.
    proc = run("doctor", "--quick", "--json", "host.disk", ENVCHECK_FAKE_NVML="healthy_multi_gpu",
               ENVCHECK_FAKE_DISK_FREE=free)  # fmt: skip
    doc = json.loads(proc.stdout)
    disk = next(c for c in doc["checks"] if c["id"] == "host.disk")
    assert disk["status"] == status and proc.returncode == (1 if status == "fail" else 0)
    assert {p["free_bytes"] for p in disk["details"]["places"]} == {int(free)}
    assert disk["fix"] and "Free space on the filesystem" in disk["fix"]["text"]


def test_an_epipe_is_stdouts_only_where_stdouts_reader_is_gone(monkeypatch):
    """A closed pipe that is not stdout (a child's stdin a command forgot to guard) must not pass for
    ``| head``'s 141: stdout's write end is asked whether its reader went away."""
    from envcheck.cli.terminal import stdout_reader_gone

    class Stdout:
        def __init__(self, fd: int) -> None:
            self.fd = fd

        def fileno(self) -> int:
            return self.fd

    read_end, write_end = os.pipe()
    try:
        monkeypatch.setattr(sys, "stdout", Stdout(write_end))
        assert stdout_reader_gone() is False  # its reader is there
        os.close(read_end)
        assert stdout_reader_gone() is True
    finally:
        os.close(write_end)


def test_an_output_suffix_that_names_no_format_is_said_once(tmp_path):
    """``-o report.pdf`` writes the text report (the default) and says so on stderr; a known suffix or
    --format says nothing."""
    proc = run("doctor", "--quick", "-o", str(tmp_path / "report.pdf"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("\n") == 1 and ".pdf names no format envcheck writes" in proc.stderr
    assert (tmp_path / "report.pdf").read_text().startswith("Host")
    # a known suffix, --format, or a suffix that is part of a name and no format's (a host, a log, a date)
    for args in (
        ["-o", str(tmp_path / "r.md")],
        ["--format", "json", "-o", str(tmp_path / "r.pdf")],
        ["-o", str(tmp_path / "gpu01.cluster")],
        ["-o", str(tmp_path / "doctor.log")],
    ):
        quiet = run("doctor", "--quick", *args)
        assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert (tmp_path / "gpu01.cluster").read_text().startswith("Host")
    # a directory is refused as one, in one line: no word on its suffix before it
    (tmp_path / "out.csv").mkdir()
    refused = run("doctor", "--quick", "-o", str(tmp_path / "out.csv"))
    assert refused.returncode == 74 and "names no format" not in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1 and "directory" in refused.stderr


def test_a_socket_whose_peer_closed_is_exit_141_not_an_internal_error():
    """stdout a socket (a supervisor's, ssh's) whose peer went away: the same as a pipe's reader gone."""
    import socket

    ours, theirs = socket.socketpair()
    theirs.close()  # the peer is gone before the report is written
    try:
        proc = subprocess.run(
            [ENVCHECK, "doctor", "--quick", "--json"],
            stdout=ours.fileno(),
            stderr=subprocess.PIPE,
            text=True,
            env=env_with(),
            timeout=120,
        )
    finally:
        ours.close()
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""


def test_stdout_on_a_pipe_is_closed_at_exit_without_a_resource_warning():
    """stdout on a pipe is written through a stream of envcheck's own (whole_writes); it is closed at exit,
    after the report is flushed, so that ``python -X dev`` (how a developer runs a tool to see its
    warnings) has nothing to say about an unclosed file."""
    proc = run("--version", PYTHONDEVMODE="1")
    assert proc.returncode == 0 and "envcheck, version" in proc.stdout
    assert "ResourceWarning" not in proc.stderr, proc.stderr
    report = run("doctor", "host", "--json", PYTHONDEVMODE="1")
    assert json.loads(report.stdout)["schema"] == "envcheck.doctor/1" and "ResourceWarning" not in report.stderr

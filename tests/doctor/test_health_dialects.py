"""Each healthcheck dialect's words and exit code, exactly, from hand-built judgements: a failure, a crashed
check, a warning, envcheck's own crash, and a mix of them. The installed command is tested in test_docker.py,
test_kubernetes.py and test_slurm_health.py; these pin every branch of envcheck.doctor.health in-process."""

from __future__ import annotations

from typing import Any

import pytest

from envcheck.doctor.health import (
    DRAIN_REASON_MAX,
    NPD_MAX_OUTPUT,
    NPD_OK,
    NPD_PROBLEM,
    NPD_UNKNOWN,
    Health,
    docker_line,
    drain_node,
    drain_reason,
    fit_bytes,
    node_shown,
    npd_verdict,
    slurm_node_name,
    slurm_verdict,
)
from tests.doctor.test_slurm_health import scontrol  # noqa: F401 - a fixture


def check(check_id: str, status: str, summary: str = "") -> dict[str, Any]:
    return {"id": check_id, "status": status, "summary": summary or f"{check_id} is {status}"}


def health(*checks: dict[str, Any], gpus: int = 2, spec: str | None = None, took: float = 1.25) -> Health:
    gpu_list = [{"index": i} for i in range(gpus)]
    return Health({"checks": list(checks), "gpus": gpu_list, "duration_s": took, "checks_duration_s": 0.01}, spec)


HEALTHY = health(check("gpu.ecc", "ok"), check("host.cpu", "skip"))
WARNED = health(check("gpu.ecc", "ok"), check("gpu.pcie", "warn"), check("host.shm", "warn"))
FAILED = health(
    check("gpu.ecc", "fail", "GPU 1: 3 uncorrected ECC errors"), check("gpu.pcie", "warn"), check("gpu.x", "fail")
)
CRASHED = health(check("gpu.ecc", "ok"), check("gpu.nvlink", "crash", "KeyError: 'x'"), check("gpu.y", "crash"))
FAILED_AND_CRASHED = health(check("gpu.nvlink", "crash"), check("gpu.ecc", "fail", "GPU 0: ECC"))


def broken() -> Health:
    """envcheck's own crash, built while the test runs (through the code under test, not at import)."""
    return Health.crashed(ValueError("bad spec\nsecond line"))


def test_docker_words_for_each_judgement():
    assert docker_line(HEALTHY) == (True, "healthy: 2 GPU(s) answer (1.2 s)")
    assert docker_line(WARNED) == (True, "healthy: 2 GPU(s) answer, 2 warning(s): gpu.pcie, host.shm (1.2 s)")
    assert docker_line(FAILED) == (
        False,
        "unhealthy: gpu.ecc: GPU 1: 3 uncorrected ECC errors; 1 more problem(s): gpu.x (1.2 s)",
    )
    # A crashed check is a problem for Docker, as it is for the doctor.
    assert docker_line(CRASHED) == (
        False,
        "unhealthy: gpu.nvlink: KeyError: 'x'; 1 more problem(s): gpu.y (1.2 s)",
    )
    assert docker_line(broken()) == (False, "unhealthy: envcheck crashed: ValueError: bad spec")


def test_docker_counts_only_gpus_that_answer_and_names_the_spec():
    doc = {"checks": [], "gpus": [{"index": 0}, {"index": 1, "lost": True}, {"index": 2, "refused": True}]}
    assert docker_line(Health(doc, "lab.toml")) == (True, "healthy: 1 GPU(s) answer, lab spec lab.toml met (0.0 s)")
    assert docker_line(Health({"checks": []})) == (True, "healthy: no NVIDIA GPUs (0.0 s)")


def test_npd_codes_and_words_for_each_judgement():
    assert npd_verdict(HEALTHY) == (NPD_OK, "healthy: 2 GPU(s) answer")
    assert npd_verdict(WARNED) == (NPD_OK, "healthy: 2 GPU(s) answer, 2 warning(s): gpu.pcie, host.shm")
    assert npd_verdict(FAILED) == (NPD_PROBLEM, "gpu.ecc: GPU 1: 3 uncorrected ECC errors (+1 more)")
    assert npd_verdict(CRASHED) == (NPD_UNKNOWN, "unknown: check(s) crashed (envcheck bug): gpu.nvlink, gpu.y")
    # A judged failure outranks a crashed check: the node has a problem whatever else went wrong.
    assert npd_verdict(FAILED_AND_CRASHED) == (NPD_PROBLEM, "gpu.ecc: GPU 0: ECC")
    assert npd_verdict(broken()) == (NPD_UNKNOWN, "unknown: envcheck crashed: ValueError: bad spec")


def test_npd_keeps_the_id_and_the_count_when_the_summary_is_cut():
    long = health(check("gpu.ecc", "fail", "é" * 100), check("gpu.x", "fail"), check("gpu.z", "fail"))
    code, message = npd_verdict(long)
    assert code == NPD_PROBLEM
    assert message.startswith("gpu.ecc: é") and message.endswith("... (+2 more)")
    assert len(message.encode()) <= NPD_MAX_OUTPUT
    # The room left is filled: 80 bytes less the head, the count and the dots, in two-byte characters.
    room = NPD_MAX_OUTPUT - len(b"gpu.ecc: ") - len(b" (+2 more)") - 3
    assert message.count("é") == room // 2


def test_slurm_exit_line_and_drain_reason_for_each_judgement():
    assert slurm_verdict(HEALTHY).exit_code == 0 and slurm_verdict(HEALTHY).drain_reason is None
    assert slurm_verdict(HEALTHY).line == "healthy: 2 GPU(s) answer (1.2 s)"
    failed = slurm_verdict(FAILED)
    assert failed.exit_code == 1
    assert failed.line == "unhealthy: gpu.ecc: GPU 1: 3 uncorrected ECC errors; 1 more problem(s): gpu.x (1.2 s)"
    assert failed.drain_reason == "envcheck: gpu.ecc: GPU 1: 3 uncorrected ECC errors"
    # A crashed check never drains: it is envcheck's trouble, not the node's.
    crashed = slurm_verdict(CRASHED)
    assert (crashed.exit_code, crashed.drain_reason) == (0, None)
    assert crashed.line == (
        "envcheck could not judge this node: check(s) crashed (envcheck bug): gpu.nvlink, gpu.y (1.2 s)"
    )
    both = slurm_verdict(FAILED_AND_CRASHED)
    assert (both.exit_code, both.drain_reason) == (1, "envcheck: gpu.ecc: GPU 0: ECC")
    # Only failures are listed in the Slurm line: a crashed check is no failure of the node.
    assert both.line == "unhealthy: gpu.ecc: GPU 0: ECC (1.2 s)"
    crash = slurm_verdict(broken())
    assert (crash.exit_code, crash.drain_reason) == (0, None)
    assert crash.line == "envcheck could not judge this node: envcheck crashed: ValueError: bad spec"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abcdef", 6, "abcdef"),  # exactly the limit: untouched
        ("abcdefg", 6, "abc..."),  # one over: cut to limit - 3, then the dots
        ("ab  cdefg", 7, "ab..."),  # the cut's trailing space goes
        ("€€€", 7, "€..."),  # a character is never split: 7 - 3 = 4 bytes hold one "€" (3 bytes) and not a third of one
        ("abc", 0, "..."),
    ],
)
def test_fit_bytes(text, limit, expected):
    assert fit_bytes(text, limit) == expected


def test_drain_reason_is_one_argv_word_sinfo_shows_whole():
    assert drain_reason('a\tb\x00c\x7fd "quoted"\nnext') == "a b c d 'quoted' next"
    long = drain_reason("x" * 500)
    assert len(long) == DRAIN_REASON_MAX and long.endswith("...")


def test_slurm_node_name_and_how_an_odd_one_is_shown(monkeypatch):
    assert slurm_node_name({"SLURMD_NODENAME": "gpu-07"}) == "gpu-07"
    monkeypatch.setattr("socket.gethostname", lambda: "gpu-08.cluster.example")
    assert slurm_node_name({}) == "gpu-08"
    assert slurm_node_name({"SLURMD_NODENAME": ""}) == "gpu-08"
    assert node_shown("gpu-07.a_b") == "gpu-07.a_b"
    assert node_shown("gpu[01-02]") == "'gpu[01-02]'"


def test_redacted_takes_secrets_out_of_every_part():
    secret = "q7Zp2mXv9LkR"
    env = {"HF_TOKEN": secret}
    judged = Health({"checks": [check("gpu.ecc", "fail", f"bad {secret}")]}, f"/s/{secret}.toml", f"e {secret}")
    clean = judged.redacted(env)
    assert clean.document == {"checks": [check("gpu.ecc", "fail", "bad <redacted>")]}
    assert (clean.spec_path, clean.error) == ("/s/<redacted>.toml", "e <redacted>")
    assert Health(None).redacted(env) == Health(None)


def test_drain_node_in_process_argv_and_each_answer(scontrol):  # noqa: F811 - the fixture
    import os

    env, calls = scontrol
    base = {**os.environ, **env, "SLURMD_NODENAME": "gpu-07"}
    assert drain_node("envcheck: gpu.ecc: bad", base) == (True, "drained gpu-07")
    assert calls() == [["update", "nodename=gpu-07", "state=drain", "reason=envcheck: gpu.ecc: bad"]]
    said = drain_node("r", {**base, "SCONTROL_MODE": "fail"})
    assert said == (False, "could not drain gpu-07: scontrol exited 1: slurm_update error: Invalid node name specified")
    # A name scontrol could read as several nodes is never passed to it.
    assert drain_node("r", {**base, "SLURMD_NODENAME": "gpu[01-02]"}) == (
        False,
        "could not drain 'gpu[01-02]': not one node's name (scontrol could read it as several)",
    )
    assert len(calls()) == 2


def test_nothing_judged_is_never_healthy_in_any_dialect():
    # No document and no error (a judgement that never ran): unhealthy for Docker, unknown for NPD, and never a
    # drain for Slurm.
    assert docker_line(Health(None))[0] is False
    assert npd_verdict(Health(None))[0] == NPD_UNKNOWN
    assert (slurm_verdict(Health(None)).exit_code, slurm_verdict(Health(None)).drain_reason) == (0, None)
    # An error beside a document still says the error.
    doc = {"checks": [check("gpu.ecc", "ok")]}
    assert docker_line(Health(doc, error="envcheck crashed: X")) == (False, "unhealthy: envcheck crashed: X")
    assert npd_verdict(Health(doc, error="e")) == (NPD_UNKNOWN, "unknown: e")
    assert slurm_verdict(Health(doc, error="e")).line == "envcheck could not judge this node: e"
    # A document without checks (a hand-edited one) is read, not a crash.
    assert docker_line(Health({})) == (True, "healthy: no NVIDIA GPUs (0.0 s)")


def test_three_problems_name_the_two_after_the_first():
    three = health(check("a.one", "fail", "s"), check("b.two", "fail"), check("c.three", "crash"))
    assert docker_line(three)[1] == "unhealthy: a.one: s; 2 more problem(s): b.two, c.three (1.2 s)"


def test_drain_node_when_scontrol_is_missing_hangs_or_says_too_much(tmp_path, monkeypatch):
    from envcheck.doctor import health as module

    said = drain_node("r", {"PATH": "/nonexistent", "SLURMD_NODENAME": "n1"})
    assert said == (False, "could not drain n1: cannot run scontrol: No such file or directory")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "scontrol"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURMD_NODENAME": "n1"}
    fake.write_text("#!/bin/sh\nprintf '%0300d' 0 | tr 0 x >&2\nexit 3\n")
    fake.chmod(0o755)
    assert drain_node("r", env) == (False, "could not drain n1: scontrol exited 3: " + "x" * 200)
    fake.write_text("#!/bin/sh\nexit 4\n")
    assert drain_node("r", env) == (False, "could not drain n1: scontrol exited 4")
    fake.write_text("#!/bin/sh\nsleep 30\n")
    monkeypatch.setattr(module, "SCONTROL_TIMEOUT_S", 0.5)
    assert drain_node("r", env) == (False, "could not drain n1: scontrol did not answer within 0.5 s")


def test_assess_runs_the_quick_doctor_and_a_crash_is_a_judgement(nvml, monkeypatch):
    import time

    from envcheck.doctor import health as module

    nvml("gpu_lost")
    started = time.monotonic() - 5.0  # the process started 5 s ago: that wait is the watcher's
    judged = module.assess(20.0, require_gpu=True, spec_path="lab.toml", started=started, env={})
    assert judged.error is None and judged.spec_path == "lab.toml"
    doc = judged.document
    assert doc["schema"] == "envcheck.doctor/1" and doc["duration_s"] >= 5.0
    assert doc["require_gpu"] is True and "gpu.required" in {c["id"] for c in doc["checks"]}
    assert not [c for c in doc["checks"] if c["id"].startswith("torch.")]  # the quick doctor: never torch
    assert judged.failed and docker_line(judged)[0] is False
    assert doc["deadline_s"] == 20.0
    # Unasked, the run's own clock starts now, and a GPU is not required.
    plain = module.assess(12.0, env={}).document
    assert plain["duration_s"] < 5.0 and plain["deadline_s"] == 12.0
    assert plain["require_gpu"] is False and "gpu.required" not in {c["id"] for c in plain["checks"]}

    def explode(request):
        raise RuntimeError("probe table broken\nsecond line")

    monkeypatch.setattr(module, "run_doctor", explode)
    assert module.assess(20.0) == Health(None, error="envcheck crashed: RuntimeError: probe table broken")

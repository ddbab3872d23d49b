"""The ground floor every command shares: the exit policy, the registry, the result helpers — and the
healthcheck's own exit codes, tested on the command itself rather than behind the Dockerfile's
``|| exit 1`` (which would hide a 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from envcheck.core.exit import ExitCode, exit_code_for
from envcheck.core.model import Status, first_line, to_jsonable
from envcheck.core.registry import Registry, UnknownSelection

NVML_SITE = Path(__file__).resolve().parents[1] / "nvml_site"
ENVCHECK = str(Path(sys.executable).with_name("envcheck"))


@pytest.mark.parametrize(
    ("statuses", "strict", "interrupted", "code"),
    [
        ([Status.OK, Status.SKIP], False, False, 0),
        ([Status.OK, Status.WARN], False, False, 0),
        ([Status.OK, Status.WARN], True, False, 1),
        ([Status.FAIL], False, False, 1),
        ([Status.CRASH, Status.OK], False, False, 1),
        ([Status.OK], False, True, 130),
        ([Status.FAIL], False, True, 130),
        ([], False, False, 0),
    ],
)
def test_the_exit_policy(statuses, strict, interrupted, code):
    assert int(exit_code_for(statuses, strict=strict, interrupted=interrupted)) == code


def test_the_codes_a_shell_sees():
    assert [int(c) for c in ExitCode] == [0, 1, 2, 74, 130, 141, 143, 129]
    # Docker reads 0 healthy, 1 unhealthy and reserves 2: every other code must come out as 1.
    assert [c.for_docker() for c in ExitCode] == [0, 1, 1, 1, 1, 1, 1, 1]


def test_first_line_is_the_first_line_cut_to_its_limit():
    assert first_line(RuntimeError("CUDA error: an illegal memory access\nCompile with TORCH_USE_CUDA_DSA")) == (
        "CUDA error: an illegal memory access"
    )
    assert first_line(RuntimeError()) == "RuntimeError"
    assert first_line(None) == ""
    assert first_line("x" * 10, limit=5) == "xxxx…"


def test_to_jsonable_turns_non_finite_numbers_into_null():
    assert to_jsonable({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], 3: (1, 2)}) == {
        "a": None,
        "b": [None, None, 1.5],
        "3": [1, 2],
    }


@dataclass(frozen=True)
class Item:
    id: str


def registry() -> Registry[Item]:
    reg: Registry[Item] = Registry("thing", {"b": "Bees", "a": "Ants"}, group_word="kinds")
    for item_id in ("a.one", "b.one", "a.two", "b.two"):
        reg.add(Item(item_id))
    return reg


def test_the_registry_orders_by_group_then_registration():
    assert [i.id for i in registry().ordered()] == ["b.one", "b.two", "a.one", "a.two"]


def test_a_duplicate_id_or_an_unknown_group_is_refused():
    reg = registry()
    with pytest.raises(ValueError, match="duplicate thing id a.one"):
        reg.add(Item("a.one"))
    with pytest.raises(ValueError, match="no known group"):
        reg.add(Item("c.one"))


def test_selection_by_id_and_group():
    reg = registry()
    assert [i.id for i in reg.select(["a", "b.two"])] == ["b.two", "a.one", "a.two"]
    assert [i.id for i in reg.select([], within=[Item("a.two")])] == ["a.two"]
    with pytest.raises(UnknownSelection, match="unknown thing 'z.one'; kinds: b, a"):
        reg.select(["z.one"])
    with pytest.raises(UnknownSelection, match="not available in this mode: b.one"):
        reg.select(["b.one"], within=[Item("a.one")])
    assert [i.id for i in reg.select(["a"], exclude=("a.two",))] == ["a.one"]


def healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    env.update({"PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "healthy_multi_gpu"})
    return subprocess.run(
        [ENVCHECK, "healthcheck", *args], capture_output=True, text=True, env=env, timeout=60, cwd="/"
    )


@pytest.mark.parametrize("args", [["--no-such-flag"], ["--deadline", "nan"], ["--deadline", "0"], ["extra"]])
def test_the_healthcheck_itself_exits_1_for_a_usage_error_never_2(args):
    proc = healthcheck(*args)
    assert proc.returncode == 1, proc
    assert proc.stdout.startswith("unhealthy: envcheck healthcheck was called wrongly")
    assert proc.stdout.count("\n") == 1


def test_the_healthcheck_itself_exits_0_when_healthy():
    proc = healthcheck()
    assert proc.returncode == 0 and proc.stdout.startswith("healthy: 4 GPU(s) answer")


def test_a_warning_keeps_the_healthcheck_healthy():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    env.update({"PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "other_process_memory"})
    proc = subprocess.run([ENVCHECK, "healthcheck"], capture_output=True, text=True, env=env, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.startswith("healthy: ") and "warning(s): gpu.memory" in proc.stdout

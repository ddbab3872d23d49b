"""``compile.mlp``: torch.compile proven on the CPU through the installed command, for real (Inductor compiles
C++ with this machine's g++), and a compile that cannot find a compiler is that case's failure, quoted, with
the doctor check that decides it named, while the rest of the bench still reports. One real compile per
test (about 15 s on two cores): the successful run is shared."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from envcheck.bench import case, plan
from envcheck.bench.benchmarks import compile as compile_bench
from envcheck.bench.harness import Budget
from envcheck.bench.model import BENCHMARKS, Check, Options, Plan, Workload
from envcheck.core.model import Status
from tests.bench.test_isolation import ENVCHECK


def bench(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed command; a compile that hangs fails the test instead of stalling it."""
    return subprocess.run([ENVCHECK, "bench", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path, Path]:
    """One real --quick compile on the CPU, with a temp dir and a home of its own (so that anything left in
    them is seen) and the user's own TORCHINDUCTOR_CACHE_DIR (TRITON_CACHE_DIR left unset): the document,
    the temp dir, the home and the user's Inductor cache."""
    root = tmp_path_factory.mktemp("compile")
    tmp, home, users = root / "tmp", root / "home", root / "inductor-cache"
    tmp.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in compile_bench.CACHE_VARIABLES}
    env.update(TMPDIR=str(tmp), HOME=str(home), TORCHINDUCTOR_CACHE_DIR=str(users))
    proc = bench(["--device", "cpu", "--quick", "--only", "compile", "--json"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), tmp, home, users


def test_a_compile_on_the_cpu_reports_its_compile_time_and_speed_up_and_matches_eager(compiled):
    doc, _, _, _ = compiled
    [result] = doc["results"]
    assert (result["id"], result["case"], result["status"], result["verified"]) == (
        "compile.mlp",
        "fp32 mlp b32 d128 h512",
        "ok",
        True,
    )
    params = result["params"]
    assert params["compile_s"] > 0 and params["backend"] == "inductor" and params["baseline"] == "eager"
    # the speed-up is eager's median time over the compiled one's, each from its own raw samples
    eager_s, compiled_s = params["baseline_stats"]["median_s"], result["stats"]["median_s"]
    assert params["speedup"] == pytest.approx(eager_s / compiled_s, rel=1e-9) and params["speedup"] > 0
    check = result["check"]
    assert check["passed"] and check["tolerance"] == 1e-4 and check["reference"].startswith("eager fp32 on cpu")
    assert 0 <= check["error"] <= 1e-4 and result["value"] > 0 and result["unit"] == "GFLOP/s"


def test_the_compile_writes_to_the_users_cache_dir_where_set_and_leaves_nothing_behind_otherwise(compiled):
    doc, tmp, home, users = compiled
    cache = doc["results"][0]["params"]["cache"]
    assert cache == {"TORCHINDUCTOR_CACHE_DIR": str(users), "TRITON_CACHE_DIR": "temporary", "cold": False}
    assert any(users.iterdir())  # the user's directory took the compiled code: it is part of what is proven
    # the run's scratch directory is gone, and nothing went to the default places (temp dir, home)
    assert list(tmp.iterdir()) == [] and list(home.iterdir()) == []


def test_without_a_compiler_the_compile_fails_naming_the_doctor_check_and_the_rest_still_reports(tmp_path):
    no_compiler = tmp_path / "bin"  # a PATH with nothing on it, and neither CC nor CXX
    no_compiler.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX")}
    env.update(PATH=str(no_compiler), TMPDIR=str(tmp_path))
    proc = bench(["--device", "cpu", "--quick", "--only", "compile,memory.d2d", "--json"], env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    by_id = {r["id"]: r for r in json.loads(proc.stdout)["results"]}
    copy, compiled = by_id["memory.d2d"], by_id["compile.mlp"]
    assert copy["status"] == "ok" and copy["value"] > 0
    assert compiled["status"] == "crash" and compiled["value"] is None
    reason = compiled["reason"]
    assert reason.startswith("CompileFailed: torch.compile failed: ")
    assert "No working C++ compiler" in reason  # Inductor's own words, quoted
    assert reason.endswith("No working C++ compiler for Inductor (`envcheck doctor compile.compiler`)")
    assert [p.name for p in tmp_path.iterdir()] == ["bin"]  # the run's scratch directory is gone


@pytest.mark.parametrize(
    ("message", "quoted", "check_id"),
    [
        # Triton's, wrapped by Dynamo as torch wraps it (pytorch/pytorch#103417 and the like): the cause is quoted
        ("backend='inductor' raised:\nRuntimeError: Failed to find C compiler. Please specify via CC environment "
         "variable.\n\nSet TORCHDYNAMO_VERBOSE=1 for the internal stack trace",
         "RuntimeError: Failed to find C compiler. Please specify via CC environment variable", "compile.compiler"),
        ("InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx: (None, 'g++')",
         "InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx: (None, 'g++')",
         "compile.compiler"),
        ("CppCompileError: C++ compile error\n/tmp/x.cpp:1:10: fatal error: Python.h: No such file or directory",
         "/tmp/x.cpp:1:10: fatal error: Python.h: No such file or directory", "compile.python_headers"),
        ("/usr/bin/ld: cannot find -lcuda: No such file or directory",
         "/usr/bin/ld: cannot find -lcuda: No such file or directory", "compile.libcuda"),
        ("ImportError: /tmp/torchinductor_u/ab/x.so: failed to map segment from shared object",
         "ImportError: /tmp/torchinductor_u/ab/x.so: failed to map segment from shared object", "compile.cache_dirs"),
        ("[Errno 30] Read-only file system: '/home/u/.triton/cache'",
         "[Errno 30] Read-only file system: '/home/u/.triton/cache'", "compile.cache_dirs"),
    ],
)  # fmt: skip
def test_a_failed_compile_names_the_doctor_check_that_decides_its_cause(message, quoted, check_id):
    said = compile_bench.explain(RuntimeError(message))
    assert said.startswith(f"torch.compile failed: RuntimeError: {quoted}. ")
    assert said.endswith(f"(`envcheck doctor {check_id}`)") and len(said) < 300 - len("CompileFailed: ")


def test_a_long_error_is_cut_so_that_the_fix_still_fits_the_one_line_reason():
    said = compile_bench.explain(OSError(30, "Read-only file system", "/home/u/.triton/cache/" + "x" * 500))
    assert said.endswith("(`envcheck doctor compile.cache_dirs`)") and "…" in said
    assert len(said) < 300 - len("CompileFailed: ")


def test_a_failed_compile_of_unknown_cause_points_at_the_doctors_compile_area():
    said = compile_bench.explain(ValueError("something no one has seen"))
    assert said == (
        "torch.compile failed: ValueError: something no one has seen. "
        "See what Inductor and Triton need here (`envcheck doctor compile`)"
    )


def test_a_compile_case_gets_its_own_time_before_its_worker_is_judged_hung():
    BENCHMARKS.load()
    budget = Budget(measure_s=0.02, warmup_s=0.0, min_samples=3, min_warmup=1)
    specs = [BENCHMARKS["memory.d2d"], BENCHMARKS["compile.mlp"]]
    from envcheck.devices import resolve

    [job] = plan.schedule(specs, [resolve.cpu_here()], Options(quick=True), env={}, budgets={("cpu", True): budget})
    assert job.case_limit("memory.d2d") == job.case_s == plan.case_deadline(budget)
    assert job.case_limit("compile.mlp") == round(job.case_s + compile_bench.COMPILE_SETUP_S, 1)
    assert plan.Job.from_json(job.to_json()) == job


def test_a_baseline_is_timed_like_the_step_and_its_speed_up_reported(cpu, fake_clock, make_timer):
    """The harness times a workload's baseline after its step, under the same budget and timer: with a step
    of 1 ms and a baseline of 3 ms the speed-up is exactly 3, and the baseline's raw samples are kept."""
    running = ["step"]

    def workload(scale: float) -> Workload:
        def call(which: str) -> None:
            running[0] = which

        return Workload(
            "fake", {}, lambda: call("step"), lambda: Check(True, 0.0, 1e-5, "none"), 1e9, "flop", None,
            baseline=lambda: call("baseline"),
        )  # fmt: skip

    timer = make_timer(lambda i: 3e-3 if running[0] == "baseline" else 1e-3)
    budget = Budget(measure_s=0.05, warmup_s=0.0, min_samples=3, min_warmup=1)
    spec = BENCHMARKS["compile.mlp"]
    result = case.run_plan(spec, Plan("fake", "fp32", workload), cpu, budget, timer=timer, clock=fake_clock)
    assert result.status is Status.OK and result.params["speedup"] == pytest.approx(3.0)
    assert result.params["baseline_stats"]["median_s"] == pytest.approx(3e-3)
    assert result.measurement is not None and result.measurement.median_s == pytest.approx(1e-3)

"""Pathological lab specs and bench baselines: each class is exit 2 and one stderr line naming the file
and the key (or line), through the installed command and at the function level.

Scenarios are named after what a user (or a hostile tester) hands envcheck: a FIFO that would block the
doctor forever, /dev/zero, a sparse terabyte, bytes that are not UTF-8, 5000 nesting levels, a number
of 5000 digits, NaN and infinity (TOML has ``nan`` and ``inf``), values out of range.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from envcheck.bench.compare import SCHEMA, BaselineError, load_baseline
from envcheck.spec.find import load_spec
from envcheck.spec.parse import SpecError

SCRIPT = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
needs_script = pytest.mark.skipif(not Path(SCRIPT).is_file(), reason="the envcheck console script is not installed")


def envcheck(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command, in ``cwd``, with no lab spec from the environment unless given."""
    environ = {k: v for k, v in os.environ.items() if k != "ENVCHECK_SPEC"}
    environ.update(env)
    return subprocess.run([SCRIPT, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """What a user sees on a usage error: exit 2, nothing on stdout, exactly one line on stderr."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def text(content: str | bytes) -> Callable[[Path], str]:
    def make(where: Path) -> str:
        data = content.encode() if isinstance(content, str) else content
        (where / "lab.toml").write_bytes(data)
        return "lab.toml"

    return make


def fifo(where: Path) -> str:
    os.mkfifo(where / "lab.toml")
    return "lab.toml"


def sparse(size: int, name: str = "lab.toml") -> Callable[[Path], str]:
    def make(where: Path) -> str:
        with open(where / name, "wb") as f:
            f.truncate(size)
        return name

    return make


def dev_zero(where: Path) -> str:
    return "/dev/zero"


FIFO = "is a FIFO or pipe (save what it carries to a file first), not a regular file"
BENCH_ID = "'matmul.bf16'"
FRACTION = "must be a number in (0, 1], got"

SPECS = {
    "fifo_blocks_readers_forever": (fifo, f"lab.toml: {FIFO}"),
    "dev_zero_never_ends": (dev_zero, "/dev/zero: is a character device (like /dev/zero), not a regular file"),
    "megabytes": (text("# padding\n" * 300_000), "lab.toml: is bigger than 1 MiB"),
    "sparse_terabyte": (sparse(1024**4), "lab.toml: is bigger than 1 MiB"),
    "not_utf8": (text(b'[gpu]\nname = "H100 \xff"\n'), "lab.toml: is not UTF-8 text (line 2)"),
    "nested_5000_arrays": (
        text("[gpu]\nname = " + "[" * 5000 + "]" * 5000 + "\n"),
        "lab.toml: line 2: nested too deeply (a lab spec nests tables two levels deep)",
    ),
    "nested_3000_inline_tables": (
        text("[host]\nmin_ram = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n"),
        "lab.toml: line 2: nested too deeply (a lab spec nests tables two levels deep)",
    ),
    "integer_of_5000_digits": (
        text("[gpu]\ncount = " + "9" * 5000 + "\n"),
        "lab.toml: line 2: a number too long to read (more than 4300 digits)",
    ),
    "integer_of_100_digits": (
        text("[gpu]\ncount = 1" + "0" * 100 + "\n"),
        "lab.toml: [gpu] count must be a whole number from 1 to 65536, got 100000000000000000...0000000000000000000",
    ),
    "float_1e400_is_infinite": (
        text("[host]\nmin_ram = 1e400\n"),
        "lab.toml: [host] min_ram must be a size above 0 like '80GiB' or '24 GB', got inf",
    ),
    "size_of_400_digits": (
        text('[host]\nmin_shm = "1' + "0" * 400 + 'GiB"\n'),
        "lab.toml: [host] min_shm must be a size above 0 like '80GiB' or '24 GB', "
        "got '100000000000000000000000000...0000000000000000000000000GiB'",
    ),
    "size_beyond_8_eib": (
        text('[gpu]\nmin_memory = "9 EiB"\n[host]\nmin_ram = 9223372036854775808\n'),
        "lab.toml: [gpu] min_memory must be a size above 0 like '80GiB' or '24 GB', got '9 EiB'",
    ),
    "bench_minimum_nan": (
        text('[bench]\n"matmul.bf16" = { min = nan, unit = "TFLOP/s" }\n'),
        f"lab.toml: [bench] {BENCH_ID}.min must be a positive finite number, got nan",
    ),
    "bench_minimum_infinite": (
        text('[bench]\n"matmul.bf16" = { min = inf, unit = "TFLOP/s" }\n'),
        f"lab.toml: [bench] {BENCH_ID}.min must be a positive finite number, got inf",
    ),
    "bench_minimum_negative_infinite": (
        text('[bench]\n"matmul.bf16" = { min = -inf, unit = "TFLOP/s" }\n'),
        f"lab.toml: [bench] {BENCH_ID}.min must be a positive finite number, got -inf",
    ),
    "bench_minimum_bool": (
        text('[bench]\n"matmul.bf16" = { min = true, unit = "TFLOP/s" }\n'),
        f"lab.toml: [bench] {BENCH_ID}.min must be a positive finite number, got true",
    ),
    "bench_fraction_infinite": (text("[bench]\nfraction = inf\n"), f"lab.toml: [bench] fraction {FRACTION} inf"),
    "bench_fraction_nan": (text("[bench]\nfraction = nan\n"), f"lab.toml: [bench] fraction {FRACTION} nan"),
    "bench_fraction_above_one": (text("[bench]\nfraction = 1.5\n"), f"lab.toml: [bench] fraction {FRACTION} 1.5"),
    "size_nan": (
        text("[host]\nmin_ram = nan\n"),
        "lab.toml: [host] min_ram must be a size above 0 like '80GiB' or '24 GB', got nan",
    ),
    "size_negative": (
        text("[host]\nmin_shm = -1\n"),
        "lab.toml: [host] min_shm must be a size above 0 like '80GiB' or '24 GB', got -1",
    ),
    "size_negative_text": (
        text('[gpu]\nmin_memory = "-5GiB"\n'),
        "lab.toml: [gpu] min_memory must be a size above 0 like '80GiB' or '24 GB', got '-5GiB'",
    ),
    "size_zero": (
        text('[host]\nmin_free_disk = "0GiB"\n'),
        "lab.toml: [host] min_free_disk must be a size above 0 like '80GiB' or '24 GB', got '0GiB'",
    ),
    "count_zero": (text("[gpu]\ncount = 0\n"), "lab.toml: [gpu] count must be a whole number from 1 to 65536, got 0"),
    "count_negative": (
        text("[gpu]\nmin_count = -2\n"),
        "lab.toml: [gpu] min_count must be a whole number from 1 to 65536, got -2",
    ),
    "count_bool": (
        text("[host]\nmin_cpus = true\n"),
        "lab.toml: [host] min_cpus must be a whole number from 1 to 65536, got true",
    ),
    "count_float": (
        text("[host]\nmin_cpus = 8.0\n"),
        "lab.toml: [host] min_cpus must be a whole number from 1 to 65536, got 8.0",
    ),
    "key_with_a_newline": (
        text('[packages]\n"num\\npy" = ">=1.26"\n'),
        "lab.toml: [packages] 'num\\npy': not a distribution name (letters, digits, '.', '-', '_')",
    ),
    "same_distribution_twice": (
        text('[packages]\nnumpy = ">=1.26"\nNumPy = ">=2"\n'),
        "lab.toml: [packages] NumPy: names the same distribution as numpy",
    ),
    "unknown_section_with_a_newline": (
        text('["gpu\\nx"]\ncount = 1\n'),
        "lab.toml: unknown section ['gpu\\nx'] "
        "(known: python, torch, driver, gpu, host, net, packages, bench, comm, burn)",
    ),
    "text_with_a_newline": (
        text('[gpu]\nname = "H100\\nH200"\n'),
        "lab.toml: [gpu] name must be one line of printable text of at most 200 characters, got 'H100\\nH200'",
    ),
    "text_of_a_megabyte_minus_a_bit": (
        text('[gpu]\nname = "' + "x" * 1_000_000 + '"\n'),
        "lab.toml: [gpu] name must be one line of printable text of at most 200 characters, "
        "got 'xxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxxx'",
    ),
    "pyproject_named_but_without_the_table": (
        lambda where: (where / "pyproject.toml").write_text('[project]\nname = "x"\n') and "pyproject.toml",
        "pyproject.toml: no [tool.envcheck] table (a lab spec in pyproject.toml lives there)",
    ),
    "pyproject_table_that_is_not_a_table": (
        lambda where: (where / "pyproject.toml").write_text("[tool]\nenvcheck = 3\n") and "pyproject.toml",
        "pyproject.toml: 'tool.envcheck' must be a table ([tool.envcheck]), got 3",
    ),
}  # fmt: skip


@needs_script
@pytest.mark.parametrize("scenario", ["fifo_blocks_readers_forever", "bench_minimum_nan", "sparse_terabyte"])
def test_pathological_spec_through_envcheck_spec_and_the_bench(tmp_path, scenario):
    make, line = SPECS[scenario]
    path = make(tmp_path)
    proc = envcheck("doctor", "--quick", cwd=tmp_path, ENVCHECK_SPEC=path)
    assert one_error_line(proc) == f"envcheck: {line}"
    proc = envcheck("bench", "--device", "cpu", "--only", "memory.d2d", "--quick", "--spec", path, cwd=tmp_path)
    assert one_error_line(proc) == f"envcheck bench: error: {line}"


@needs_script
def test_a_directory_as_spec_through_the_environment_and_the_bench(tmp_path):
    (tmp_path / "lab.d").mkdir()
    line = "lab.d: is a directory, not a regular file"
    assert one_error_line(envcheck("doctor", "--quick", cwd=tmp_path, ENVCHECK_SPEC="lab.d")) == f"envcheck: {line}"
    proc = envcheck("bench", "--device", "cpu", "--only", "memory.d2d", "--quick", "--spec", "lab.d", cwd=tmp_path)
    assert one_error_line(proc) == f"envcheck bench: error: {line}"


@needs_script
def test_a_directory_as_spec_through_the_doctor_option(tmp_path):
    (tmp_path / "lab.d").mkdir()
    line = one_error_line(envcheck("doctor", "--quick", "--spec", "lab.d", cwd=tmp_path))
    assert line == "envcheck: lab.d: is a directory, not a regular file"


# -- bench baselines -------------------------------------------------------------------------------


def baseline(value: str) -> Callable[[Path], str]:
    """A saved run whose one figure's value is ``value``, written as raw JSON text."""
    figure = f'{{"id": "memory.d2d", "case": "copy 64 MiB", "device": "cpu", "unit": "GB/s", "value": {value}}}'
    return named_text("b.json", f'{{"schema": "{SCHEMA}", "results": [{figure}]}}')


def named_text(name: str, content: str | bytes) -> Callable[[Path], str]:
    def make(where: Path) -> str:
        (where / name).write_bytes(content.encode() if isinstance(content, str) else content)
        return name

    return make


def named_fifo(where: Path) -> str:
    os.mkfifo(where / "b.json")
    return "b.json"


def directory(where: Path) -> str:
    (where / "b.d").mkdir()
    return "b.d"


MALFORMED = "has a malformed results list: results[0].value must be a finite number ≥ 0 or null, got"
BASELINES = {
    "fifo_blocks_readers_forever": (named_fifo, f"baseline b.json {FIFO}"),
    "directory": (directory, "baseline b.d is a directory, not a regular file"),
    "dev_zero_never_ends": (dev_zero, "baseline /dev/zero is a character device (like /dev/zero), not a regular file"),
    "sparse_gigabyte": (sparse(1024**3, "b.json"), "baseline b.json is bigger than 32 MiB"),
    "not_utf8": (named_text("b.json", b'{"schema": "\xfe"}'), "baseline b.json is not UTF-8 text (line 1)"),
    "nested_100000_arrays": (
        named_text("b.json", "[" * 100_000 + "]" * 100_000),
        "baseline b.json is nested too deeply to be a saved run (line 1)",
    ),
    "integer_of_5000_digits": (
        baseline("9" * 5000),
        "baseline b.json holds a 5000-digit number at results[0].value: JSON numbers are finite "
        "(not written by --save)",
    ),
    "float_1e400_is_infinite": (baseline("1e400"), f"baseline b.json {MALFORMED} inf"),
    "nan": (
        baseline("NaN"),
        "baseline b.json holds NaN at results[0].value: JSON numbers are finite (not written by --save)",
    ),
    "infinity_outside_the_figures": (
        named_text("b.json", f'{{"schema": "{SCHEMA}", "wall_s": -Infinity, "results": []}}'),
        "baseline b.json holds -Infinity at wall_s: JSON numbers are finite (not written by --save)",
    ),
    "negative_figure": (baseline("-700.5"), f"baseline b.json {MALFORMED} -700.5"),
    "bool_figure": (baseline("true"), f"baseline b.json {MALFORMED} true"),
    "figure_as_text": (baseline('"700"'), f"baseline b.json {MALFORMED} '700'"),
}  # fmt: skip


#: kind -> (scenarios, the reader, its error, the installed command that reads it, how its error line starts)
READERS = {
    "spec": (SPECS, load_spec, SpecError, ("doctor", "--quick", "--spec"), "envcheck: "),
    "baseline": (
        BASELINES,
        load_baseline,
        BaselineError,
        ("bench", "--device", "cpu", "--only", "memory.d2d", "--quick", "--compare"),
        "envcheck bench: error: ",
    ),
}
EVERY_FILE = [pytest.param(kind, name, id=f"{kind}-{name}") for kind, entry in READERS.items() for name in entry[0]]


@pytest.mark.parametrize(("kind", "scenario"), EVERY_FILE)
def test_pathological_file_is_one_line_at_the_function_level(tmp_path, monkeypatch, kind, scenario):
    scenarios, read, error, _, _ = READERS[kind]
    make, line = scenarios[scenario]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error) as refused:
        read(make(tmp_path))
    assert str(refused.value) == line


@needs_script
@pytest.mark.parametrize(("kind", "scenario"), EVERY_FILE)
def test_pathological_file_through_the_installed_command(tmp_path, kind, scenario):
    scenarios, _, _, command, starts = READERS[kind]
    make, line = scenarios[scenario]
    assert one_error_line(envcheck(*command, make(tmp_path), cwd=tmp_path)) == f"{starts}{line}"


def test_a_big_honest_baseline_still_loads(tmp_path):
    """Eight GPUs, 100 cases each, 500 raw samples per case, indented as --save writes it: about 12 MB."""
    figure = {"id": "matmul.bf16", "case": "bf16 8192", "device": "cuda:0", "unit": "TFLOP/s", "value": 700.5,
              "stats": {"samples_s": [0.001234567890123] * 500}}  # fmt: skip
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"schema": SCHEMA, "results": [figure] * 800}, indent=2))
    assert 10 * 1024**2 < path.stat().st_size < 32 * 1024**2
    assert len(load_baseline(path)["results"]) == 800

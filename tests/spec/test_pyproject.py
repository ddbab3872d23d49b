"""A ``pyproject.toml`` in the working directory is a lab spec only if it holds ``[tool.envcheck]``.

Without the table it must have no effect at all, whatever it is: huge, not UTF-8, not TOML, a FIFO, a
directory, a project that merely depends on envcheck. With the table, in any of the spellings TOML
allows, it is a spec, and a broken one is exit 2 naming the file.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from envcheck.spec.find import find_spec
from envcheck.spec.parse import SpecError
from tests.spec.test_pathological import envcheck, needs_script, one_error_line

PADDING = b"# padding to make the file big\n" * 70_000  # 2.1 MB


def write(content: bytes | str) -> Callable[[Path], None]:
    def make(where: Path) -> None:
        (where / "pyproject.toml").write_bytes(content.encode() if isinstance(content, str) else content)

    return make


NOT_OURS: dict[str, Callable[[Path], None]] = {
    "random_bytes_3_mb": write(random.Random(7).randbytes(3_000_000)),
    "malformed_toml": write('[project\nname = "x"\n'),
    "latin1_description": write(b'[project]\nname = "x"\ndescription = "caf\xe9"\n'),
    "fifo": lambda where: os.mkfifo(where / "pyproject.toml"),
    "directory": lambda where: (where / "pyproject.toml").mkdir(),
    "depends_on_envcheck_and_is_huge": write(
        b'[project]\nname = "x"\ndependencies = [\n  "envcheck-gpu>=0.2",\n  "envcheck",\n]\n'
        b'[tool.uv.sources]\nenvcheck = { path = "../envcheck" }\n' + PADDING + b"\xff\n"
    ),
    "under_tool_for_two_megabytes": write(b"[tool]\nx = 1\n" + PADDING + b"[project]\nenvcheck.x = 1\n"),
    "other_tool_tables": write('[tool.envcheckx]\na = 1\n[tool.ruff]\nenvcheck = 1\n[tool."envcheck-old"]\nb = 2\n'),
    "table_in_a_multiline_string": write('[project]\nname = "x"\ndescription = """\n[tool.envcheck]\n"""\n'),
}
OURS: dict[str, Callable[[Path], None]] = {
    "table": write('[project]\nname = "x"\n[tool.envcheck.host]\nmin_cpus = 1\n'),
    "parent_table": write("[tool.envcheck]\nhost = { min_cpus = 1 }\n"),
    "dotted_key_at_the_top": write("tool.envcheck.host.min_cpus = 1\n"),
    "dotted_key_under_tool": write('[tool]\nruff = { line-length = 120 }\nenvcheck.host.min_cpus = 1\n'),
    "inline_table": write("tool = { envcheck = { host = { min_cpus = 1 } } }\n"),
    "quoted_and_spaced": write("[ \"tool\" . 'envcheck' . host ]\nmin_cpus = 1\n"),
}  # fmt: skip
BROKEN = {
    "value_out_of_range": (
        write("[tool.envcheck.host]\nmin_cpus = 0\n"),
        "pyproject.toml: [tool.envcheck.host] min_cpus must be a whole number from 1 to 65536, got 0",
    ),
    "malformed_after_the_table": (
        write("[tool.envcheck.host]\nmin_cpus = 1\n[project\n"),
        "pyproject.toml: not valid TOML: Expected ']' at the end of a table declaration (at line 3, column 9)",
    ),
    "not_utf8_after_the_table": (
        write(b"[tool.envcheck.host]\nmin_cpus = 1\n# \xff\n"),
        "pyproject.toml: is not UTF-8 text (line 3)",
    ),
    "too_big": (write(b"[tool.envcheck.host]\nmin_cpus = 1\n" + PADDING), "pyproject.toml: is bigger than 1 MiB"),
    "header_split_across_two_reads": (  # the scan reads 1 MiB at a time: the header starts 5 bytes before that
        write(b"#" * (1024 * 1024 - 6) + b"\n[tool.envcheck.host]\nmin_cpus = 1\n"),
        "pyproject.toml: is bigger than 1 MiB",
    ),
    "after_a_line_of_two_megabytes": (
        write(b"#" * 2_000_000 + b"\n[tool.envcheck.host]\nmin_cpus = 1\n"),
        "pyproject.toml: is bigger than 1 MiB",
    ),
    "key_of_a_line_of_two_megabytes": (
        write(b'tool.envcheck.gpu.name = "' + b"x" * 2_000_000 + b'"\n'),
        "pyproject.toml: is bigger than 1 MiB",
    ),
    "claimed_after_two_megabytes": (  # the scan reads past its first 1 MiB chunk, and knows the [tool] table
        write(b"[tool]\nx = 1\n" + PADDING + b"envcheck.host.min_cpus = 1\n"),
        "pyproject.toml: is bigger than 1 MiB",
    ),
}


def no_system_spec(where: Path) -> Path:
    return where / "no-system-spec" / "lab.toml"


@pytest.mark.parametrize("scenario", NOT_OURS)
def test_a_pyproject_without_the_table_is_not_a_spec(tmp_path, scenario):
    NOT_OURS[scenario](tmp_path)
    assert find_spec(None, {}, tmp_path, system=no_system_spec(tmp_path)) is None


@pytest.mark.parametrize("scenario", OURS)
def test_every_spelling_of_the_table_is_a_spec(tmp_path, scenario):
    OURS[scenario](tmp_path)
    spec = find_spec(None, {}, tmp_path, system=no_system_spec(tmp_path))
    assert spec is not None and spec.get("host", "min_cpus") == 1


@pytest.mark.parametrize("scenario", BROKEN)
def test_a_pyproject_with_a_broken_table_is_a_broken_spec(tmp_path, scenario):
    make, line = BROKEN[scenario]
    make(tmp_path)
    with pytest.raises(SpecError) as refused:
        find_spec(None, {}, tmp_path / ".", system=no_system_spec(tmp_path))
    assert str(refused.value) == str(tmp_path / line)


@pytest.fixture(scope="module")
def plain_doctor(tmp_path_factory) -> list[str]:
    """The check ids of the quick doctor in a directory with nothing in it."""
    proc = envcheck("doctor", "--quick", "--json", cwd=tmp_path_factory.mktemp("empty"))
    return [c["id"] for c in json.loads(proc.stdout)["checks"]]


@needs_script
@pytest.mark.parametrize("scenario", NOT_OURS)
def test_a_foreign_pyproject_has_no_effect_on_the_installed_doctor(tmp_path, plain_doctor, scenario):
    NOT_OURS[scenario](tmp_path)
    proc = envcheck("doctor", "--quick", "--json", cwd=tmp_path)
    assert proc.returncode in (0, 1) and proc.stderr == ""
    assert [c["id"] for c in json.loads(proc.stdout)["checks"]] == plain_doctor


@needs_script
@pytest.mark.parametrize("scenario", ["dotted_key_under_tool", "inline_table"])
def test_the_table_is_enforced_by_the_installed_doctor(tmp_path, plain_doctor, scenario):
    OURS[scenario](tmp_path)
    proc = envcheck("doctor", "--quick", "--json", cwd=tmp_path)
    checks = {c["id"]: c for c in json.loads(proc.stdout)["checks"]}
    assert list(checks) == [*plain_doctor, "spec.host_cpus"]
    assert checks["spec.host_cpus"]["status"] == "ok"


@needs_script
@pytest.mark.parametrize("scenario", ["value_out_of_range", "too_big"])
def test_a_broken_table_is_one_line_from_the_installed_doctor(tmp_path, scenario):
    make, line = BROKEN[scenario]
    make(tmp_path)
    assert one_error_line(envcheck("doctor", "--quick", cwd=tmp_path)) == f"envcheck: {line}"


@pytest.mark.parametrize(("before_the_hang", "ours"), [(b"[project]\n", False), (b"[tool.envcheck.host]\n", True)])
def test_a_pyproject_on_a_hung_mount(tmp_path, monkeypatch, before_the_hang, ours):
    """Someone else's file that cannot be read in time has no effect; ours is an error naming it."""
    from envcheck.core import files

    release = threading.Event()

    def hang_after_first_chunk(fd, first=files.CHUNK):
        yield before_the_hang
        release.wait(30)

    monkeypatch.setattr(files, "chunks", hang_after_first_chunk)
    monkeypatch.setattr(files, "READ_TIMEOUT_S", 0.2)
    write("")(tmp_path)
    try:
        if not ours:
            assert find_spec(None, {}, tmp_path, system=no_system_spec(tmp_path)) is None
            return
        with pytest.raises(SpecError) as refused:
            find_spec(None, {}, tmp_path, system=no_system_spec(tmp_path))
        assert (
            str(refused.value)
            == f"{tmp_path / 'pyproject.toml'}: could not be read within 0.2 s (a hung network filesystem?)"
        )
    finally:
        release.set()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda where: os.mkfifo(where / "envcheck.toml"), "is a FIFO or pipe (save what it carries to a file first)"),
        (lambda where: (where / "envcheck.toml").mkdir(), "is a directory"),
    ],
)
def test_an_envcheck_toml_that_is_no_file_is_an_error_not_ignored(tmp_path, make, words):
    """Unlike a pyproject, a file named for envcheck is meant as a spec: say what is wrong with it."""
    make(tmp_path)
    with pytest.raises(SpecError) as refused:
        find_spec(None, {}, tmp_path, system=no_system_spec(tmp_path))
    assert str(refused.value).startswith(f"{tmp_path / 'envcheck.toml'}: {words}")

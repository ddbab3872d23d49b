"""The import contract: envcheck's layers import downward only, and one command never reaches into
another's package. Every import statement counts, at module level or inside a function (a function-level
import is how an upward dependency hides), so an upward import fails the suite, not only a review.

    core  ←  probes  ←  devices, doctor  ←  bench, burn, comm, fleet, spec  ←  render  ←  cli

Only the doctor imports its checks (``envcheck.doctor.checks``: importing one module imports them all);
what others share with them lives below (``probes``) or beside them (``envcheck.doctor.reading``).

A command package is split across layers by module name: its ``render`` module is in the render layer
(a report kind brings its own renderers) and its ``cli`` module in the cli layer (a command is one package
plus one line in :data:`envcheck.cli.COMMANDS`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import envcheck

ROOT = Path(envcheck.__file__).parent
LAYERS = ["core", "probes", "devices/doctor", "commands", "render", "cli"]
#: The packages below the commands; every other top-level package is a command's (bench, burn, comm, fleet,
#: spec, and any new one, with no edit here).
BELOW_COMMANDS = {"core": "core", "probes": "probes", "devices": "devices/doctor", "doctor": "devices/doctor"}
#: Packages a command may use beside its own: the lab spec judges every command's figures.
SHARED_COMMANDS = {"spec"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def is_command_package(package: str | None) -> bool:
    return package is not None and package not in BELOW_COMMANDS and package not in ("cli", "render", "__main__")


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "core"
    leaf = parts[2] if len(parts) > 2 else ""
    if top in ("cli", "__main__") or leaf == "cli":
        return LAYERS.index("cli")
    if top == "render" or leaf == "render":
        return LAYERS.index("render")
    if top in BELOW_COMMANDS:
        return LAYERS.index(BELOW_COMMANDS[top])
    return LAYERS.index("commands" if len(parts) > 1 else "core")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every envcheck module ``path`` imports; ``from pkg import name`` counts as
    ``pkg.name`` when that is a module, else as ``pkg``. A module loaded by its name counts too: a string
    given to ``importlib.import_module`` or as a registry's ``package=`` (how a registry fills itself)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = module_name(path)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            named = [*node.args[:1]] if _called(node) == "import_module" else []
            named += [k.value for k in node.keywords if k.arg == "package"]
            found += [
                (node.lineno, n.value)
                for n in named
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("envcheck.")
            ]
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "envcheck"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = own.split(".") if path.name == "__init__.py" else own.split(".")[:-1]
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "envcheck":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    ROOT.parent / candidate.replace(".", "/") / "__init__.py"
                ).exists()
                found.append((node.lineno, candidate if is_module else base))
    return found


def _called(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def violations() -> list[str]:
    said = []
    for path in sorted(ROOT.rglob("*.py")):
        source = module_name(path)
        for line, target in imports(path):
            where = f"{path.relative_to(ROOT.parent)}:{line}: {source} imports {target}"
            if layer_of(target) > layer_of(source):
                said.append(f"{where} (up: {LAYERS[layer_of(source)]} → {LAYERS[layer_of(target)]})")
                continue
            mine, theirs = package_of(source), package_of(target)
            if (
                is_command_package(theirs)
                and mine != theirs
                and theirs not in SHARED_COMMANDS
                and layer_of(source) != LAYERS.index("cli")
            ):
                said.append(f"{where} (sideways: one command's package uses another's)")
            elif target.startswith("envcheck.doctor.checks") and mine != "doctor":
                said.append(f"{where} (only the doctor loads its checks: importing one imports them all)")
    return said


def test_layers_import_downward_only() -> None:
    found = violations()
    assert not found, "imports against the layers:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("envcheck.core.units", "core"),
        ("envcheck.probes.nvml.inventory", "probes"),
        ("envcheck.doctor.checks.gpu", "devices/doctor"),
        ("envcheck.bench.plan", "commands"),
        ("envcheck.bench.render", "render"),
        ("envcheck.render.svg", "render"),
        ("envcheck.fleet.cli", "cli"),
        ("envcheck.cli.terminal", "cli"),
        ("envcheck.storage.app", "commands"),
        ("envcheck", "core"),
    ],
)
def test_the_contract_places_modules_by_name(module: str, layer: str) -> None:
    assert LAYERS[layer_of(module)] == layer


def test_the_contract_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule is shown to fire: a core module that imports a renderer is named."""
    tree = tmp_path / "envcheck"
    (tree / "core").mkdir(parents=True)
    (tree / "render").mkdir()
    (tree / "__init__.py").write_text("")
    (tree / "core" / "__init__.py").write_text("")
    (tree / "render" / "__init__.py").write_text("")
    (tree / "core" / "bad.py").write_text("def f():\n    from envcheck.render import svg\n")
    (tree / "render" / "svg.py").write_text("")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tree)
    assert violations() == ["envcheck/core/bad.py:2: envcheck.core.bad imports envcheck.render.svg (up: core → render)"]

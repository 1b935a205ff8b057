"""The import rule (docs/architecture.md): each layer imports only the layers below it.

    isowatch (ground)  <-  firmware_bridge (sensors)  <-  edge
    isowatch (ground)  <-  gateway  <-  dashboard
    isowatch_app (CLI, demo, simulator) on top; bench, scripts and tests may import anything.

Names starting with an underscore are private to their package: no other package imports them.
Lazy imports inside functions count too: the rule is about what a package needs, not when it loads it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ALLOWED: dict[str, set[str]] = {
    "isowatch": set(),
    "firmware_bridge": {"isowatch"},
    "edge": {"isowatch", "firmware_bridge"},
    "gateway": {"isowatch"},
    "dashboard": {"isowatch", "gateway"},
    "isowatch_app": {"isowatch", "firmware_bridge", "edge", "gateway", "dashboard"},
}
OURS = set(ALLOWED) | {"bench", "scripts", "tests"}


def imports_of(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) for every absolute import in a file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def violations(package: str) -> list[str]:
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        where = path.relative_to(ROOT)
        for line, module, names in imports_of(path):
            target = module.split(".")[0]
            if target not in OURS or target == package:
                continue
            if target not in ALLOWED[package]:
                problems.append(f"{where}:{line} imports {module} ({package} may import {sorted(ALLOWED[package])})")
            private = [n for n in [*names, *module.split(".")] if n.startswith("_") and not n.startswith("__")]
            if private:
                problems.append(f"{where}:{line} imports private {module}:{','.join(private)} from another package")
    return problems


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package):
    assert violations(package) == []


def test_the_rule_catches_a_wrong_way_import(tmp_path, monkeypatch):
    # The checker itself: a gateway module importing the dashboard, and a private name across packages.
    fake = tmp_path / "gateway"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from dashboard.app import create_app\nfrom isowatch.contract import _PRIVATE\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    found = violations("gateway")
    assert any("imports dashboard.app" in p for p in found)
    assert any("private isowatch.contract:_PRIVATE" in p for p in found)


def test_every_package_of_ours_is_in_the_rule():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages <= OURS, f"a new top-level package needs its place in the import rule: {packages - OURS}"

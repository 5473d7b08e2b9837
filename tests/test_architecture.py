"""The shape of generator/: stage packages in data-flow order, no import cycles, small modules.

The import graph is read with ``ast`` (module level and inside functions, ``import x`` and
``from x import y``), so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "generator"
MAX_LINES = 600

#: the layers of generator/, earliest first: a module may import its own layer and earlier ones
#: (the shared modules first; then the stages of the data flow; the command layer last)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "types", "paths", "wire", "manifest"),
    ("boards",),
    ("frontend",),
    ("verify",),
    ("aot",),
    ("partition",),
    ("firmware",),
    ("mesh",),
    ("report",),
    ("project_api",),
    ("commands", "cli"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """generator modules that ``path`` imports anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    package = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()

    def add(mod: str, names: list[str] = ()) -> None:
        for n in names:                     # ``from pkg import module``
            if f"{mod}.{n}" in known:
                found.add(f"{mod}.{n}")
                break
        else:
            while mod and mod not in known:
                mod = mod.rpartition(".")[0]
            if mod:
                found.add(mod)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "generator":
                    add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "generator":
                add(mod, [a.name for a in node.names])
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module}: not in any layer of LAYERS; add its package there")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a closed path), or None."""
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in color:
                cyc = visit(m)
                if cyc:
                    return cyc
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(graph):
        if n not in color:
            cyc = visit(n)
            if cyc:
                return cyc
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_lazy_imports(tmp_path):
    src = tmp_path / "generator" / "x.py"
    src.parent.mkdir()
    src.write_text("def f():\n    from .y import z\n    import generator.w\n")
    found = imports_of(src, "generator.x", {"generator.y", "generator.w", "generator.x"})
    assert found == {"generator.y", "generator.w"}


def test_no_import_cycles():
    cyc = find_cycle(import_graph())
    assert cyc is None, "import cycle: " + " -> ".join(cyc)


def test_stages_import_only_earlier_stages():
    bad = []
    for mod, deps in sorted(import_graph().items()):
        for dep in sorted(deps):
            if layer_of(dep) > layer_of(mod):
                bad.append(f"{mod} imports {dep} (a later layer)")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_is_small(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES}): split it"

"""The layout of core (DESIGN.md "Layout of core"): every import, lazy ones inside functions
included, goes from a stage to the same or a lower one, and no modules import each other in a
circle."""
from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
SHARED = {"errors", "results", "metrics", "progress", "fileio", "options", "quantmath", "jit"}
TOP = {"session", "commands", "workspace", "__init__"}
# stage -> the stages it may import (itself and shared modules always allowed)
MAY_IMPORT = {
    "ops": set(),
    "graph": {"ops"},
    "calibration": {"graph", "ops"},
    "quant": {"graph", "ops", "calibration"},
    "search": {"graph", "ops", "calibration", "quant"},
    "vision": {"graph", "ops", "calibration", "quant"},
    "plots": {"graph", "ops", "calibration", "quant", "search", "vision"},
    "top": {"graph", "ops", "calibration", "quant", "search", "vision", "plots"},
    "shared": set(),
}
REGISTRIES = ("ops", "quant.rules")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def stage(module: str) -> str:
    head = module.split(".")[0] if module else "__init__"
    if head in SHARED:
        return "shared"
    if head in TOP:
        return "top"
    return head


def imports(path: Path) -> set[str]:
    """Core modules `path` imports (relative imports resolved; `from . import x` as module x)."""
    mod = module_name(path)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    if mod == "":
        package = []
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
            elif node.module and node.module.startswith("tpushell.core"):
                base, node_module = [], node.module[len("tpushell.core"):].lstrip(".")
                target = node_module.split(".") if node_module else []
                found.update(_expand(target, [a.name for a in node.names]))
                continue
            else:
                continue
            target = base + (node.module.split(".") if node.module else [])
            found.update(_expand(target, [a.name for a in node.names]))
    return {m for m in found if m != mod}


def _expand(target: list[str], names: list[str]) -> set[str]:
    out = set()
    for n in names:
        sub = target + [n]
        if (CORE.joinpath(*sub).with_suffix(".py")).is_file() or CORE.joinpath(*sub).is_dir():
            out.add(".".join(sub))
        else:
            out.add(".".join(target))
    return out


def graph_of_imports() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in CORE.rglob("*.py")}


def test_no_stage_imports_a_higher_one():
    bad = []
    for mod, deps in graph_of_imports().items():
        s = stage(mod)
        for d in deps:
            t = stage(d)
            if t != s and t != "shared" and t not in MAY_IMPORT[s]:
                bad.append(f"{mod} ({s}) imports {d} ({t})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_circles():
    deps = graph_of_imports()
    # A registry package's submodules register into it (`from . import op` in ops/conv.py while
    # ops/__init__.py imports conv): that back edge is the registry pattern, not a circle.
    edges = {m: {d for d in ds if not (d in REGISTRIES and m.startswith(d + "."))}
             for m, ds in deps.items()}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d in edges and d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)

"""The tree reads as the data flow: each stage is a package, and imports only point down the list
below (to later stages and to what they share), never back up; no module imports itself in a circle.
Checked on the source, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent / "harness"
# Top to bottom. Entry modules (CLI, one job) may import anything; config (schemas) imports nothing.
STAGES = ["benchmarks", "endpoints", "spend", "scoring", "claims", "records", "common", "sandbox", "config"]
ENTRIES = {"harness.__main__", "harness.run", "harness.data", "harness.compare", "harness.prices",
           "harness.claims.__main__"}  # CLIs


def module_name(path: Path) -> str:
    parts = path.relative_to(HARNESS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            if node.module == "harness":  # from harness import x
                found.update(f"harness.{a.name}" for a in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("harness"))
    return found


def stage_of(module: str) -> str:
    return module.split(".")[1]


MODULES = {module_name(p): imports_of(p) for p in HARNESS.rglob("*.py")}


def test_every_module_belongs_to_a_stage_or_is_an_entry():
    assert {m for m in MODULES if m not in ENTRIES and stage_of(m) not in STAGES} == set()


def test_imports_point_down_the_flow():
    upward = []
    for module, imported in MODULES.items():
        if module in ENTRIES:
            continue
        rank = STAGES.index(stage_of(module))
        for target in imported:
            target_rank = STAGES.index(stage_of(target)) if stage_of(target) in STAGES else -1
            if target_rank < rank:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_circles():
    graph = {m: {t for t in imported if t in MODULES and t != m} for m, imported in MODULES.items()}
    # a package's __init__ re-exporting its modules is not a circle of the modules themselves
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_module_is_over_about_400_lines():
    long = {m: n for m, n in ((module_name(p), len(p.read_text().splitlines())) for p in HARNESS.rglob("*.py"))
            if n > 440}
    assert long == {}

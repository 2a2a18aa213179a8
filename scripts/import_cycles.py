"""Find circles of imports between the modules of ghostpii's packages.

Rust crates (`src/core`, `src/keyhost`, `src/python`, `src/linalg`): a unit is a top-level module
of the crate (`answer_keys/` with its files is one unit), an edge is a `crate::x` path in one
unit's files naming another unit `x`; inside a directory module, its files are units too and
`super::y` paths are edges. Unit tests (a trailing `#[cfg(test)] mod`, `tests.rs`) are not edges.
Python (`python/ghostpii`): a unit is a module, an edge any import of another ghostpii module,
lazy imports inside functions included (they hide a circle, they do not remove it); imports
under `if TYPE_CHECKING:` are not edges.

Prints every circle as a path of files with the line that closes each step, and exits 1 if it
found one:

    python scripts/import_cycles.py            # every package
    python scripts/import_cycles.py src/core   # some of them
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUST_CRATES = ["src/core", "src/proto", "src/keyhost", "src/python", "src/linalg"]
PYTHON_PACKAGES = ["python/ghostpii"]

# unit -> {other unit: (file, line) of the first reference}
Graph = dict[str, dict[str, tuple[Path, int]]]

CRATE_PATH = re.compile(r"\bcrate::(?:\{\s*)?([a-z_][a-z0-9_]*)")
SUPER_PATH = re.compile(r"\bsuper::(?:\{\s*)?([a-z_][a-z0-9_]*)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^}]*)\}", re.S)


TEST_MODULE = re.compile(r"^#\[cfg\(test\)\]\s*\n\s*mod \w+\s*\{", re.M)


def _strip_comments(text: str) -> str:
    """The code of a Rust file without comments and without its trailing `#[cfg(test)] mod`."""
    m = TEST_MODULE.search(text)
    if m:
        text = text[: m.start()]
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _add(graph: Graph, src: str, dst: str, where: tuple[Path, int]) -> None:
    if src != dst:
        graph[src].setdefault(dst, where)


def rust_graph(crate: Path) -> Graph:
    """Edges between the top-level modules of a crate, and between the files of each directory module."""
    src = crate / "src"
    graph: Graph = defaultdict(dict)
    top = {p.stem for p in src.glob("*.rs") if p.stem not in ("lib", "main")}
    top |= {p.name for p in src.iterdir() if p.is_dir() and p.name != "bin"}
    for file in sorted(src.rglob("*.rs")):
        rel = file.relative_to(src)
        if rel.parts[0] == "bin" or rel.stem == "tests":
            continue
        unit = rel.parts[0].removesuffix(".rs") if len(rel.parts) > 0 else ""
        if unit in ("lib", "main"):
            continue
        text = _strip_comments(file.read_text())
        for m in CRATE_PATH.finditer(text):
            if m.group(1) in top:
                _add(graph, unit, m.group(1), (file, _line_of(text, m.start())))
        for m in USE_GROUP.finditer(text):
            for name in re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", m.group(1)):
                if name in top:
                    _add(graph, unit, name, (file, _line_of(text, m.start())))
        if len(rel.parts) >= 2:  # a file inside a directory module: its siblings via super::
            parent = "/".join(rel.parts[:-1])
            me = rel.stem
            if me == "mod":
                continue
            siblings = {p.stem for p in file.parent.glob("*.rs") if p.stem != "mod"}
            siblings |= {p.name for p in file.parent.iterdir() if p.is_dir()}
            for m in SUPER_PATH.finditer(text):
                if m.group(1) in siblings:
                    _add(graph, f"{parent}/{me}", f"{parent}/{m.group(1)}", (file, _line_of(text, m.start())))
    return graph


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for sub in ast.walk(child):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def python_graph(package: Path) -> Graph:
    """Edges between the modules of a Python package (``ghostpii.x`` → ``ghostpii.y``)."""
    name = package.name
    graph: Graph = defaultdict(dict)
    modules = {}
    for file in sorted(package.rglob("*.py")):
        rel = file.relative_to(package.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = file
    for mod, file in modules.items():
        tree = ast.parse(file.read_text())
        skip = _type_checking_lines(tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            for t in targets:
                if not t.startswith(name):
                    continue
                # the longest known module the import names (ghostpii.x.y -> ghostpii.x)
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t != mod:  # importing the package itself runs __init__ first
                    _add(graph, mod, t, (file, node.lineno))
                    break
    return graph


def cycles(graph: Graph) -> list[tuple[set[str], list[str]]]:
    """Strongly connected components of more than one unit (Tarjan), each as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[tuple[set[str], list[str]]] = []
    counter = [0]
    nodes = set(graph) | {d for e in graph.values() for d in e}

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append((set(comp), _closed_path(graph, set(comp))))

    sys.setrecursionlimit(10_000)
    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return out


def _closed_path(graph: Graph, comp: set[str]) -> list[str]:
    """A shortest circle through the component's first unit (breadth-first), for the report."""
    start = min(comp)
    parent: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, {})):
                if w == start:
                    path = [v]
                    while (p := parent[path[-1]]) is not None:
                        path.append(p)
                    return [*reversed(path), start]
                if w in comp and w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(comp)


def report(label: str, graph: Graph) -> int:
    found = cycles(graph)
    for comp, comp_path in found:
        print(f"{label}: {len(comp)} units import each other in a circle: {', '.join(sorted(comp))}; one circle:")
        for a, b in zip(comp_path, comp_path[1:], strict=False):
            file, line = graph[a][b]
            print(f"  {a} -> {b}   ({file.relative_to(ROOT)}:{line})")
    return len(found)


def main(argv: Iterable[str]) -> int:
    wanted = list(argv) or RUST_CRATES + PYTHON_PACKAGES
    total = 0
    for target in wanted:
        path = ROOT / target
        graph = python_graph(path) if target in PYTHON_PACKAGES else rust_graph(path)
        total += report(target, graph)
    if total:
        print(f"{total} circle(s) of imports found")
        return 1
    print(f"no circle of imports in {', '.join(wanted)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

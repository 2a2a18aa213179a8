"""Find circles of imports between the modules of ghostpii's packages.

Rust crates (`src/core`, `src/proto`, `src/keyhost`, `src/python`, `src/linalg`): the units are the modules, at
every level: the top-level modules of the crate (`domain/` with its files is one unit), and inside
each directory module its files and subdirectories (`domain/audit`, `domain/checkpoint`). An edge
is a path in one unit's files (`crate::a::b`, `super::b`, `self::b`, `use` groups included) that
names another unit of the same level: `crate::store::Connection` in `domain/audit.rs` is the edge
`domain -> store`, `crate::domain::merkle::root` in it the edge `domain/audit -> domain/merkle`.
Paths through a `pub use` re-export of a module (`pub use store as db;` in `lib.rs`) are followed to
the module. Unit tests (a trailing `#[cfg(test)] mod`, `tests.rs`) are not edges.
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

INLINE_PATH = re.compile(r"\b(crate|super|self)((?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)+)")
USE_STMT = re.compile(r"\buse\s+([^;]+);", re.S)
USE_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|::|[{},*]")
PUB_USE_STMT = re.compile(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", re.S)

Module = tuple[str, ...]


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


def _use_paths(tree: str) -> list[tuple[list[str], str | None]]:
    """The paths a `use` tree names, each with its alias: `a::{b, c::d as e}` -> a::b, a::c::d as e."""
    tokens = USE_TOKEN.findall(tree)
    out: list[tuple[list[str], str | None]] = []

    def parse(i: int, prefix: list[str]) -> int:
        path = list(prefix)
        while i < len(tokens):
            tok = tokens[i]
            if tok == "{":
                i += 1
                while i < len(tokens) and tokens[i] != "}":
                    i = parse(i, path)
                    if i < len(tokens) and tokens[i] == ",":
                        i += 1
                return i + 1
            if tok == "*":
                out.append((path, None))
                return i + 1
            if tok in (",", "}"):
                return i
            if tok == "self" and path:  # `a::{self, b}` names `a`
                i += 1
            else:
                path.append(tok)
                i += 1
            if i < len(tokens) and tokens[i] == "::":
                i += 1
                continue
            alias = None
            if i + 1 < len(tokens) and tokens[i] == "as":
                alias = tokens[i + 1]
                i += 2
            out.append((path, alias))
            return i
        return i

    parse(0, [])
    return out


def _module_of(rel: Path) -> Module:
    """The module path of a source file: `lib.rs` -> (), `a/mod.rs` -> (a,), `a/b.rs` -> (a, b)."""
    parts = list(rel.with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def _absolute(me: Module, path: list[str], modules: set[Module]) -> list[str] | None:
    """`path` as written in module `me`, from the crate root; `None` for another crate's path."""
    if not path:
        return None
    if path[0] in ("crate", "$crate"):
        return path[1:]
    if path[0] in ("super", "self"):
        base = list(me)
        rest = list(path)
        while rest and rest[0] in ("super", "self"):
            if rest.pop(0) == "super" and base:
                base.pop()
        return base + rest
    if (*me, path[0]) in modules:  # a child module named without `self::`
        return [*me, *path]
    return None


def _resolve(path: list[str], modules: set[Module], aliases: dict[Module, Module]) -> Module | None:
    """The deepest module that an absolute path names (through re-exports), or None."""
    parts = list(path)
    for _ in range(8):  # an alias may point at another alias
        for n in range(len(parts), 0, -1):
            head = tuple(parts[:n])
            if head in aliases:
                parts = [*aliases[head], *parts[n:]]
                break
        else:
            break
    for n in range(len(parts), 0, -1):
        if tuple(parts[:n]) in modules:
            return tuple(parts[:n])
    return None


def rust_graph(crate: Path) -> Graph:
    """Edges between the sibling modules of a crate, at every level of its module tree."""
    src = crate / "src"
    graph: Graph = defaultdict(dict)
    files = {}
    for file in sorted(src.rglob("*.rs")):
        rel = file.relative_to(src)
        if rel.parts[0] == "bin":
            continue
        files[file] = (rel, _module_of(rel))
    modules = {m for _, m in files.values()}
    texts = {file: _strip_comments(file.read_text()) for file in files}
    # `pub use x::y [as z];` of a module, in lib.rs and mod.rs: z (or y) is another name of x::y
    aliases: dict[Module, Module] = {}
    for file, (_, me) in files.items():
        for m in PUB_USE_STMT.finditer(texts[file]):
            for path, alias in _use_paths(m.group(1)):
                target = _absolute(me, path, modules)
                if target and tuple(target) in modules and tuple(target) != (*me, alias or target[-1]):
                    aliases[(*me, alias or target[-1])] = tuple(target)
    for file, (rel, me) in files.items():
        if rel.stem == "tests" or not me:
            continue
        text = texts[file]
        refs: list[tuple[list[str], int]] = []
        for m in USE_STMT.finditer(text):
            refs += [(p, m.start()) for p, _ in _use_paths(m.group(1))]
        for m in INLINE_PATH.finditer(text):
            refs.append(([m.group(1), *re.findall(r"[A-Za-z_][A-Za-z0-9_]*", m.group(2))], m.start()))
        for path, pos in refs:
            absolute = _absolute(me, path, modules)
            named = _resolve(absolute, modules, aliases) if absolute else None
            if named is None:
                continue
            common = 0
            while common < min(len(me), len(named)) and me[common] == named[common]:
                common += 1
            if common < len(me) and common < len(named):
                _add(graph, "/".join(me[: common + 1]), "/".join(named[: common + 1]), (file, _line_of(text, pos)))
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

"""The import graph points one way: wire ← storage ← replication ← node, and wire ← client;
bench may import anything but tests, and testkit (the process-cluster toolkit of tests and bench)
imports nothing of ours and is imported by tests and bench only.

Every module of the checked packages is parsed with ``ast`` (so imports inside functions and
``if TYPE_CHECKING:`` blocks count, as does ``importlib.import_module("literal")``); its imports
of our own top-level packages become package-level edges, and an edge the rules below do not
allow fails the test with the whole graph in the message. A second test imports the client in a
fresh interpreter and fails if any server module or server-only dependency was loaded, so the
client and the CLI run on machines that only talk to a cluster.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What each package may import of ours, besides itself. bench may import anything but tests.
ALLOWED: dict[str, frozenset[str]] = {
    "wire": frozenset(),
    "testkit": frozenset(),
    "storage": frozenset({"wire"}),
    "replication": frozenset({"storage", "wire"}),
    "node": frozenset({"replication", "storage", "wire"}),
    "client": frozenset({"wire"}),
}
FORBIDDEN_FOR_BENCH = frozenset({"tests"})
CHECKED = (*ALLOWED, "bench")

# Loaded by `import client, client.cli`, none of these may be.
SERVER_ONLY = ("pysyncobj", "prometheus_client", "cryptography", "aiohttp.web", "uvloop")
SERVER_PACKAGES = ("storage", "replication", "node")


@dataclass(frozen=True, order=True)
class Edge:
    """``source`` (a module of ours) imports ``target`` (a module of ours) at ``line``."""

    source: str
    target: str
    line: int

    @property
    def packages(self) -> tuple[str, str]:
        return self.source.split(".")[0], self.target.split(".")[0]


def _our_packages() -> frozenset[str]:
    """Top-level packages of the repository (a new one, e.g. a test toolkit, counts too)."""
    return frozenset(p.parent.name for p in ROOT.glob("*/__init__.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every module name ``module`` imports (absolute, relative, or via importlib)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # recorded as `node.config` for `from node import config`, whether config is a
            # submodule or a name defined in node: either way node is imported
            for alias in node.names:
                yield f"{target}.{alias.name}" if target else alias.name, node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno


def import_edges() -> list[Edge]:
    """Every import between two of our top-level packages, from the checked packages."""
    ours = _our_packages()
    edges: set[Edge] = set()
    for package in CHECKED:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            tree = ast.parse(path.read_text(), str(path))
            for target, line in _imported(tree, module, path.name == "__init__.py"):
                top = target.split(".")[0]
                if top in ours and top != package:
                    edges.add(Edge(module, target, line))
    return sorted(edges)


def _allowed(edge: Edge) -> bool:
    source, target = edge.packages
    if source == "bench":
        return target not in FORBIDDEN_FOR_BENCH
    return target in ALLOWED[source]


def render_graph(edges: list[Edge]) -> str:
    """The package graph, one line per package; back edges marked ``!``."""
    lines = []
    for package in CHECKED:
        targets: dict[str, str] = {}
        for edge in edges:
            source, target = edge.packages
            if source == package:
                mark = "" if _allowed(edge) else "!"
                targets[target] = max(targets.get(target, ""), mark)
        shown = ", ".join(f"{t}{m}" for t, m in sorted(targets.items())) or "(nothing of ours)"
        lines.append(f"  {package:<12} -> {shown}")
    return "\n".join(lines)


EDGES = import_edges()


def test_imports_point_one_way() -> None:
    back = [edge for edge in EDGES if not _allowed(edge)]
    listed = "\n".join(f"  {e.source}:{e.line} imports {e.target}" for e in back)
    assert not back, (
        f"back edges in the import graph:\n{listed}\ngraph (! back edge):\n{render_graph(EDGES)}"
    )


def test_the_walk_sees_the_layers() -> None:
    """Guards the walk itself: the edges every layer is built on are found."""
    pairs = {edge.packages for edge in EDGES}
    expected = {
        ("storage", "wire"),
        ("replication", "storage"),
        ("node", "replication"),
        ("node", "storage"),
        ("client", "wire"),
        ("bench", "testkit"),
    }
    assert expected <= pairs, render_graph(EDGES)


def test_importing_the_client_loads_no_server_module() -> None:
    code = "import client, client.cli; import sys; print(sorted(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: list[str] = ast.literal_eval(result.stdout.strip())
    bad = sorted(
        name
        for name in loaded
        if name.split(".")[0] in SERVER_PACKAGES
        or any(name == m or name.startswith(m + ".") for m in SERVER_ONLY)
    )
    assert not bad, f"`import client, client.cli` loaded server modules: {bad}"


if __name__ == "__main__":  # `python -m tests.test_layering` prints the graph
    print(render_graph(EDGES))

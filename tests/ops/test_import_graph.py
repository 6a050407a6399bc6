"""Which way the imports point (the design notes, "Which way the imports point").

The import graph of `dispatcher/` and `workers/` is read with `ast` (no module is imported):
an edge for every `import` at module level or inside a function; imports under
`if TYPE_CHECKING:` are not edges (they never run). Checked:
- no cycle, so no import hides one inside a function;
- the core (`dispatcher` but `dispatcher.ops`) imports neither `workers` nor the operations
  package, but for `connection`, which resolves the embedded Redis through `ops.redis_server`;
- the metrics modules (hooks, store, exposition) and the status view (`overview`, `ops.status`)
  form no cycle and none of the metrics modules imports `ops`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE_MAY_IMPORT_OPS = {("dispatcher.connection", "dispatcher.ops.redis_server")}
METRICS_MODULES = {"dispatcher.metrics", "dispatcher.metric_store", "dispatcher.exposition"}
STATUS_MODULES = {"dispatcher.overview", "dispatcher.ops.status"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """module name -> (file, is a package)."""
    found = {}
    for top in ("dispatcher", "workers"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def _runtime_imports(node: ast.AST):
    """Import nodes that run: everywhere but in the body of `if TYPE_CHECKING:`."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
        return
    typing_only = isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
    for child in node.orelse if typing_only else ast.iter_child_nodes(node):
        yield from _runtime_imports(child)


def _targets(node, module: str, package: bool, modules) -> set[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.module == "__future__":
            return set()
        base = module.split(".") if package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1] if node.level else []
        prefix = ".".join(base + ([node.module] if node.module else []))
        subs = [f"{prefix}.{alias.name}" for alias in node.names if f"{prefix}.{alias.name}" in modules]
        names = subs + ([prefix] if len(subs) < len(node.names) else [])
    out = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != module and not module.startswith(name + "."):  # a parent package is no edge
            out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    modules = _modules()
    edges = {}
    for module, (path, package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges[module] = set()
        for node in _runtime_imports(tree):
            edges[module] |= _targets(node, module, package, modules)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _is_ops(module: str) -> bool:
    return module == "dispatcher.ops" or module.startswith("dispatcher.ops.")


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_core_imports_neither_workers_nor_ops():
    wrong = sorted((m, t) for m, targets in graph().items() if m.startswith("dispatcher") and not _is_ops(m)
                   for t in targets if (t.startswith("workers") or _is_ops(t)) and (m, t) not in CORE_MAY_IMPORT_OPS)
    assert wrong == []


def test_metrics_and_status_form_no_cycle_and_metrics_never_import_ops():
    edges = graph()
    group = METRICS_MODULES | STATUS_MODULES
    assert group <= set(edges), group - set(edges)
    assert cycles({m: edges[m] & group for m in group}) == []
    assert not any(_is_ops(t) for m in METRICS_MODULES for t in edges[m])


def test_the_graph_sees_function_level_imports_and_skips_type_checking():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\nelse:\n    import p.d\n"
                     "def f():\n    from .c import x\n")
    modules = {"p": None, "p.a": None, "p.b": None, "p.c": None, "p.d": None}
    found = set().union(*(_targets(n, "p.a", False, modules) for n in _runtime_imports(tree)))
    assert found == {"p.c", "p.d"}  # p.b only for the type checker; the `else` branch runs
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]

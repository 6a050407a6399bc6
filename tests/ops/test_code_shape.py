"""Code shape: a module a newcomer can read in one sitting, functions that fit on a screen.

Every module under `dispatcher/` and `workers/` stays within MAX_MODULE_LINES lines and every
function (method, nested function) within MAX_FUNCTION_LINES, counted by `ast` as
`end_lineno - lineno + 1` (decorators excluded, docstring included). Not checked: `tests/` and
`bench/`, and `dispatcher/sandbox/`, which is test tooling (the simulated upstreams the tests,
the demo and the benchmarks run against), not the product.

Past offenders are listed below, each with the reason it is allowed for now. The list only
shrinks: an entry whose file or function is back within bounds fails the test until it is
removed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("dispatcher", "workers")
NOT_CHECKED = (ROOT / "dispatcher" / "sandbox",)  # test tooling, see the module docstring
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# path -> why it may exceed MAX_MODULE_LINES for now
LONG_MODULES_ALLOWED: dict[str, str] = {}
# (path, qualified function name) -> why it may exceed MAX_FUNCTION_LINES for now
LONG_FUNCTIONS_ALLOWED: dict[tuple[str, str], str] = {}


def _modules():
    for top in CHECKED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if not any(path.is_relative_to(skipped) for skipped in NOT_CHECKED):
                yield path.relative_to(ROOT).as_posix(), path


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, lines) of every function in `tree`, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            yield name, node.end_lineno - node.lineno + 1
            yield from _functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _measure():
    long_modules, long_functions = {}, {}
    for rel, path in _modules():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            long_modules[rel] = lines
        for name, length in _functions(ast.parse(text, filename=rel)):
            if length > MAX_FUNCTION_LINES:
                long_functions[(rel, name)] = length
    return long_modules, long_functions


def test_modules_and_functions_stay_small():
    long_modules, long_functions = _measure()
    too_long = [f"{rel}: {n} lines (at most {MAX_MODULE_LINES})"
                for rel, n in sorted(long_modules.items()) if rel not in LONG_MODULES_ALLOWED]
    too_long += [f"{rel}: {name}() is {n} lines (at most {MAX_FUNCTION_LINES})"
                 for (rel, name), n in sorted(long_functions.items()) if (rel, name) not in LONG_FUNCTIONS_ALLOWED]
    assert not too_long, "split by concept (a function into helpers, a module by concept):\n" + "\n".join(too_long)


def test_the_allow_list_only_shrinks():
    long_modules, long_functions = _measure()
    stale = [rel for rel in LONG_MODULES_ALLOWED if rel not in long_modules]
    stale += [f"{rel}: {name}()" for rel, name in LONG_FUNCTIONS_ALLOWED if (rel, name) not in long_functions]
    assert not stale, "back within bounds: remove from the allow-list:\n" + "\n".join(stale)


def test_the_shape_check_sees_nested_functions_and_methods():
    tree = ast.parse("class A:\n    def f(self):\n        def g():\n            pass\n        return g\n")
    assert dict(_functions(tree)) == {"A.f": 4, "A.f.g": 2}


CORE_PARAMETERS = ("d", "dispatcher", "core", "get_dispatcher")  # what the core's collaborators are called


def test_no_untyped_dispatcher_parameters():
    """Functions that take the dispatcher (the public `Dispatcher` or the internal `Core`) say which."""
    untyped = []
    for rel, path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                untyped += [f"{rel}:{node.lineno} {node.name}({a.arg})" for a in args
                            if a.arg in CORE_PARAMETERS and a.annotation is None]
    assert not untyped, "annotate them (Core or Dispatcher):\n" + "\n".join(untyped)

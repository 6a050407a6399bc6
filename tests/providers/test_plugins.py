"""Providers are plug-ins: one folder each, found by the registry, named nowhere else.

- No code outside `dispatcher/providers/<name>/` and the sandbox names a provider (comments and
  docstrings may: they are documentation).
- A provider folder removed (in a temporary copy of the packages) leaves everything else
  importing and running: the API builds, the workers start, a generation of another
  provider completes through real Redis and the real sandbox.
"""

from __future__ import annotations

import ast
import io
import os
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from dispatcher import providers

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dispatcher", "workers")
EXEMPT = ("dispatcher/providers/", "dispatcher/sandbox/")  # provider folders; the emulation is test tooling


def _provider_words() -> set[str]:
    words = set()
    for spec in providers.all_specs():
        words |= {spec.name.lower(), spec.title.lower()}
        words |= {w.lower() for w in re.findall(r"[A-Za-z]{4,}", spec.api_prefix)}  # e.g. "runwayml"
    words |= {"runway", "hailuo"}  # names the services also go by
    return words - {"api", "v1", "v2"}


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def _code_mentions(path: Path, pattern: re.Pattern) -> list[str]:
    """Names and string literals (not comments, not docstrings) of `path` that name a provider."""
    text = path.read_text()
    docs = _docstring_lines(ast.parse(text))
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in (tokenize.NAME, tokenize.STRING) or tok.start[0] in docs:
            continue
        if pattern.search(tok.string):
            found.append(f"{path.relative_to(ROOT)}:{tok.start[0]}: {tok.string[:60]}")
    return found


def test_no_code_outside_the_provider_folders_names_a_provider():
    pattern = re.compile(r"(?i)(?<![a-z])(" + "|".join(sorted(_provider_words())) + r")(?![a-z])")
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(EXEMPT):
                continue
            offenders += _code_mentions(path, pattern)
    assert not offenders, "provider names outside their folders:\n" + "\n".join(offenders)


def test_the_grep_would_catch_a_provider_named_in_code(tmp_path):
    sneaky = tmp_path / "x.py"
    sneaky.write_text('"""Docs may say Runway."""\n# so may comments: pixverse\nNAME = "runwayml"\n')
    pattern = re.compile(r"(?i)(?<![a-z])(runwayml|pixverse)(?![a-z])")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert _code_mentions(sneaky, pattern) == ['x.py:3: "runwayml"']
    finally:
        ROOT = saved


RUN_WITHOUT = r"""
import json, os, sys, time
from dispatcher import providers
from dispatcher.api.app import create_app
from dispatcher.client import Dispatcher
from dispatcher.settings import Settings
import httpx
import workers.pool, workers.steps, workers.maintenance, workers.callbacks  # the workers import

gone, keep = sys.argv[1], sys.argv[2]
assert gone not in providers.REGISTRY and keep in providers.REGISTRY, sorted(providers.REGISTRY)
settings = Settings.from_env()
d = Dispatcher.from_url(settings=settings)
schema = create_app(d).openapi()
assert not any(p.startswith(tuple(f"/{v}/{gone}" for v in ("v1", "v2"))) for p in schema["paths"]), "routes left"
spec = providers.get(keep)
demo = spec.demo.accounts()[0]
up = httpx.post(settings.upstream_url + "/_sandbox/users",
                json={"provider": keep, "concurrency": demo.body["maxJobs"], "duration": 0, **demo.upstream})
up.raise_for_status()
body = dict(demo.body, **{k: up.json()[k] for k in demo.sandbox_fields})
d.upsert_account(keep, body, demo.path_id)
ids = [d.submit(keep, spec.demo.operation, {"prompt": f"p{i}", "sandbox_duration": 0}).id for i in range(3)]
workers.pool.run_worker(settings, burst=True)
deadline = time.monotonic() + 60
while any(d.get(i).state != "completed" for i in ids):
    assert time.monotonic() < deadline, [d.get(i).state for i in ids]
    workers.pool.run_worker(settings, burst=True)
    time.sleep(0.2)
print("OK", json.dumps(sorted(providers.REGISTRY)))
"""


@pytest.mark.parametrize("gone", sorted(providers.REGISTRY))
def test_removing_a_provider_folder_leaves_the_rest_running(gone, tmp_path, settings, r, sandbox):
    copy = tmp_path / "copy"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(copy / "dispatcher" / "providers" / gone)
    keep = next(name for name in sorted(providers.REGISTRY) if name != gone)
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(copy), "DISPATCHER_LOG_LEVEL": "warning"}
    done = subprocess.run([sys.executable, "-c", RUN_WITHOUT, gone, keep], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]  # the worker's log lines come before it
    assert last.startswith("OK") and gone not in last

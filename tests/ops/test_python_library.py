"""The Python library as a backend uses it (issue 18): it logs through the standard `logging`
module and leaves the host's stdout alone, answers every time in seconds, ships `py.typed` (mypy
checks a typed consumer against the installed package), and shows no public name that README's
"Python" section does not document."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import pytest

import dispatcher as package
from dispatcher import logging as dlog
from dispatcher import providers

ROOT = Path(__file__).resolve().parents[2]

BACKEND = textwrap.dedent('''
    import json, logging, sys

    records = []

    class Keep(logging.Handler):  # the host's own handler, on its root logger
        def emit(self, record):
            records.append({"name": record.name, "level": record.levelname, "msg": record.getMessage(),
                            "provider": getattr(record, "provider", None),
                            "generation_id": getattr(record, "generation_id", None)})

    logging.getLogger().addHandler(Keep())
    logging.getLogger().setLevel(logging.INFO)

    from dispatcher import Dispatcher
    from dispatcher.logging import get_logger, register_secret

    email, password = sys.argv[2], sys.argv[3]
    with Dispatcher.from_url() as d:
        d.upsert_account("runwayml", {"email": email, "password": password, "maxJobs": 2}, email)
        job = d.submit("runwayml", "gen3turbo/create", {"promptText": "a lighthouse at dawn"})
        d.cancel(job.id)
        register_secret("Probe-secret-Pp77")
        get_logger().warning("probe", note="Probe-secret-Pp77", password=password)
    with open(sys.argv[1], "w") as out:
        json.dump(records, out)
''')


def test_a_backend_script_logs_through_stdlib_logging_and_prints_nothing(settings, sandbox, child_env, known,
                                                                        tmp_path):
    creds = known["accounts"]["runwayml"]
    res = sandbox.post("/_sandbox/users", json={"provider": "runwayml", "concurrency": 2, **creds})
    assert res.status_code == 201, res.text
    env = child_env(settings)  # DISPATCHER_LOG_FORMAT=json among them: the library ignores it
    env["DISPATCHER_UPSTREAM_URL"] = settings.upstream_url
    script, out = tmp_path / "backend.py", tmp_path / "records.json"
    script.write_text(BACKEND)
    done = subprocess.run([sys.executable, str(script), str(out), creds["email"], creds["password"]], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == "", (done.stdout, done.stderr)  # the host's streams untouched
    records = json.loads(out.read_text())
    by_event = {re.match(r"(.*?)(?= \w+=|$)", r["msg"]).group(1): r for r in records}  # "event key=value …"
    submitted = by_event["generation submitted"]
    assert submitted["name"] == "dispatcher" and submitted["level"] == "INFO"
    assert submitted["provider"] == "runwayml" and submitted["generation_id"].startswith("runwayml-")
    assert "account saved" in by_event and "generation canceled" in by_event
    probe = by_event["probe"]
    assert probe["level"] == "WARNING" and "note=…secured…" in probe["msg"] and "password=…secured…" in probe["msg"]
    text = json.dumps(records)
    assert creds["password"] not in text and "Probe-secret-Pp77" not in text


@pytest.fixture
def library_mode(monkeypatch):
    """This process as a backend's: no entry point configured logging (another test may have)."""
    monkeypatch.setattr(dlog, "_configured", False)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger, handler = logging.getLogger("dispatcher"), Keep()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_in_process_records_reach_the_host_handler_not_stdout(library_mode, dispatcher, add_account, capfd):
    account = add_account("runwayml", 1)
    capfd.readouterr()
    job = dispatcher.submit("runwayml", "gen3turbo/create", {"promptText": "x"})
    dlog.register_secret("Inproc-secret-Ii42")
    dlog.get_logger(provider="runwayml").debug("below the host's level", note="x")
    try:
        raise RuntimeError("failed with Inproc-secret-Ii42 inside")
    except RuntimeError:
        dlog.get_logger().exception("probe failed", cookie="c=1")
    assert capfd.readouterr().out == ""
    (submitted,) = [r for r in library_mode if r.getMessage().startswith("generation submitted")]
    assert submitted.generation_id == job.id and submitted.account == account and submitted.levelno == logging.INFO
    assert not [r for r in library_mode if "below the host's level" in r.getMessage()]
    (failed,) = [r for r in library_mode if r.getMessage().startswith("probe failed")]
    assert failed.levelno == logging.ERROR and not failed.exc_info  # the traceback rides in the message…
    assert "RuntimeError" in failed.getMessage() and "Inproc-secret-Ii42" not in failed.getMessage()  # …redacted
    assert failed.cookie == dlog.MASK


def test_configure_still_renders_for_the_entry_points(monkeypatch):
    """`configure` (the CLI, the worker pool, the demo) keeps its own rendering, JSON here."""
    code = ("import logging, dispatcher.client as c\n"
            "from dispatcher import logging as dl\n"
            "dl.configure('json', 'info')\n"
            "c.log.info('probe', provider='runwayml')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "", done.stderr
    (line,) = [e for e in dlog.parse_json_lines(done.stderr) if e.get("event") == "probe"]
    assert line["provider"] == "runwayml"


def test_every_time_is_in_seconds(dispatcher, api, add_account):
    account = add_account("runwayml", 1)
    session = dispatcher.core.accounts.get(providers.get("runwayml"), account).session
    before = time.time()
    job = dispatcher.submit("runwayml", "gen3turbo/create", {"promptText": "x"})  # admitted: no worker runs
    (row,) = dispatcher.running("runwayml")
    assert row["id"] == job.id and before - 1 < row["started"] <= time.time() and 0 <= row["elapsed"] < 5
    gen = dispatcher.get(job.id)
    assert before - 1 < gen.created <= gen.admitted_at <= time.time()

    dispatcher.core.cooldown_account("runwayml", account, 30)
    snap = dispatcher.available("runwayml")["accounts"][account]
    assert before + 29 < snap["cooldown_until"] < time.time() + 31  # epoch seconds, not milliseconds
    assert snap["usable_until"] == pytest.approx(session.expires_at, abs=0.002)
    from dispatcher.overview import collect

    (status,) = collect(dispatcher)["providers"]["runwayml"]["accounts"]
    assert 25 < status["cooldown_seconds"] <= 30
    # the useapi-shaped HTTP answer is as before: no instants in it, useapi's fields only
    res = api.get("/v1/runwayml/scheduler/available").json()
    assert set(res["accounts"][0]) == {"email", "maxJobs", "executing", "available", "eligible"}


CONSUMER = textwrap.dedent('''
    from dispatcher import Dispatcher, Generation, Handle, NoCapacity, Settings


    def run(url: str) -> float:
        with Dispatcher.from_url(url, Settings.from_env()) as d:
            job: Handle = d.submit("runwayml", "gen3turbo/create", {"promptText": "a cat"})
            reveal_type(job)
            gen: Generation = job.result(timeout=1.0)
            reveal_type(gen.finished_at)
            reveal_type(job.status)
            reveal_type(d.available("runwayml"))
            reveal_type(d.running("runwayml"))
            try:
                d.submit("runwayml", "gen3turbo/create", {}, wait=False)
            except NoCapacity as busy:
                print(busy.status, busy.accounts)
            return gen.created
''')
REVEALED = ['"dispatcher.client.Handle"', '"float | None"', '"str"', '"dict[str, Any]"', '"list[dict[str, Any]]"']


def _install(site: Path, *, marker: bool) -> None:
    """The package as pip lays it out: its modules, plus `py.typed` when pyproject ships it."""
    shutil.copytree(ROOT / "dispatcher", site / "dispatcher",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "py.typed"))
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    if marker and "py.typed" in data.get("dispatcher", []):
        shutil.copy(ROOT / "dispatcher" / "py.typed", site / "dispatcher" / "py.typed")


def _mypy(tmp_path: Path, name: str, *, marker: bool) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy", reason="mypy is in the dev extra: pip install -e '.[dev]'")
    env_dir = tmp_path / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    _install(site, marker=marker)
    deps = [p for p in sys.path if p.endswith("site-packages")]  # redis, httpx… from the test's own environment
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    consumer = tmp_path / "consumer.py"
    consumer.write_text(CONSUMER)
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--python-executable", str(python),
                           "--cache-dir", str(tmp_path / f"{name}-cache"), str(consumer)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_py_typed_ships_and_a_typed_consumer_checks(tmp_path):
    assert (ROOT / "dispatcher" / "py.typed").is_file()
    done = _mypy(tmp_path, "typed", marker=True)
    assert done.returncode == 0, done.stdout + done.stderr
    revealed = re.findall(r"Revealed type is (.+)", done.stdout)
    assert revealed == REVEALED, done.stdout
    # without the marker mypy refuses the installed package: py.typed is what makes it typed
    bare = _mypy(tmp_path, "untyped", marker=False)
    assert bare.returncode == 1 and "missing library stubs or py.typed marker" in bare.stdout, bare.stdout


def _python_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]


def test_every_public_name_is_documented():
    """Internal helpers carry a leading underscore: every other name of the supported surface is in
    README's "Python" section (`core` there as the one internal attribute, said to be internal)."""
    documented = set(re.findall(r"`(?:[\w.]*\.)?(\w+)", _python_section()))
    from dispatcher.client import Dispatcher, Handle
    from dispatcher.generations import Generation

    names = {f"Dispatcher.{n}" for n in dir(Dispatcher) if not n.startswith("_")}
    names |= {f"Handle.{n}" for n in dir(Handle) if not n.startswith("_")} | {"Handle.id", "Handle.generation"}
    names |= {f"Generation.{n}" for n in dir(Generation) if not n.startswith("_")}
    names |= {f"Generation.{f.name}" for f in dataclasses.fields(Generation)}
    names |= {"Dispatcher.core"} | {f"dispatcher.{n}" for n in package.__all__}
    missing = sorted(n for n in names if n.rpartition(".")[2] not in documented)
    assert not missing, f"public but not documented (document it, or make it _private): {missing}"

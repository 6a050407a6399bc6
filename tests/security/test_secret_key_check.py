"""Issue 15, finding 4: a worker (or the API) started with the wrong DISPATCHER_SECRET_KEY must
stop at once with a clear error, before it takes any job, instead of failing every job it takes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from rq import Queue

from dispatcher import keys
from dispatcher.ops.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
MISMATCH = "DISPATCHER_SECRET_KEY does not match the key this Redis's accounts were encrypted with"
ACCOUNT = {"email": "keys@example.com", "password": "Keys-pass-0123456789", "maxJobs": 1}
QUEUE = "dispatcher.runwayml"


@pytest.fixture
def queued(dispatcher, sandbox, r):
    """An account sealed with the test's key and one admitted generation whose start step is
    queued; no worker has ever run on this Redis, so no key-check value exists yet."""
    res = sandbox.post("/_sandbox/users", json={"provider": "runwayml", "concurrency": 1,
                                               "email": ACCOUNT["email"], "password": ACCOUNT["password"]})
    assert res.status_code == 201, res.text
    dispatcher.upsert_account("runwayml", dict(ACCOUNT), ACCOUNT["email"])
    gen = dispatcher.submit("runwayml", "gen3a_turbo", {"promptText": "must stay queued"})
    assert gen.status == "admitted" and Queue(QUEUE, connection=dispatcher.core.rq).count == 1
    return gen


def env_with_key(settings, key: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(settings.to_env())
    env.update(DISPATCHER_SECRET_KEY=key, DISPATCHER_LOG_FORMAT="json")
    return env


def run_bounded(args: list[str], env: dict, timeout: float = 60) -> tuple[int | None, str]:
    """Run a dispatcher process; (exit code, output), or (None, output) when it was still running."""
    proc = subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the pool's children too: they hold the output pipe
        out, _ = proc.communicate()
        return None, out
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind
        except ProcessLookupError:
            pass


def assert_untouched(dispatcher, gen) -> None:
    assert dispatcher.get(gen.id).state == "admitted", "the generation moved"
    assert Queue(QUEUE, connection=dispatcher.core.rq).count == 1, "a job was taken off the queue"


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_worker_with_the_wrong_key_exits_before_taking_a_job(dispatcher, settings, queued, processes):
    wrong = Fernet.generate_key().decode()
    code, out = run_bounded(["-m", "workers", "--processes", processes], env_with_key(settings, wrong))
    assert code is not None, f"the worker kept running with the wrong key:\n{out[-2000:]}"
    assert code != 0 and MISMATCH in out, out[-2000:]
    assert "Traceback" not in out and wrong not in out and settings.secret_key not in out
    assert_untouched(dispatcher, queued)


def test_the_check_value_is_sealed_once_and_only_its_key_passes(dispatcher, settings, r):
    from dispatcher.errors import ConfigurationError
    from dispatcher.secrets import KEY_CHECK, Vault, check_key

    check_key(dispatcher.core.vault, dispatcher.core.r)  # an empty Redis: the first key claims it
    sealed = r.get(KEY_CHECK)
    assert sealed and settings.secret_key.encode() not in sealed
    check_key(Vault(settings.secret_key), dispatcher.core.r)
    with pytest.raises(ConfigurationError, match=MISMATCH):
        check_key(Vault(Fernet.generate_key().decode()), dispatcher.core.r)
    assert r.get(KEY_CHECK) == sealed, "a wrong key replaced the check value"


def test_a_pool_whose_children_fail_on_configuration_stops(dispatcher, settings, queued):
    """The supervisor's own check skipped: the children's configuration error must end the pool,
    not restart them forever."""
    wrong = Fernet.generate_key().decode()
    script = ("import sys, workers.pool as pool\n"
              "from dispatcher.settings import Settings\n"
              "pool.check_settings_key = lambda *a, **k: None\n"
              "try:\n"
              "    pool.run_pool(Settings.from_env(), processes=2)\n"
              "except Exception as exc:\n"
              "    print('pool stopped:', type(exc).__name__, getattr(exc, 'message', exc))\n"
              "    sys.exit(1)\n")
    code, out = run_bounded(["-c", script], env_with_key(settings, wrong))
    assert code is not None, f"the pool kept restarting its workers:\n{out[-2000:]}"
    assert code != 0 and "pool stopped: ConfigurationError" in out and MISMATCH in out, out[-2000:]
    assert_untouched(dispatcher, queued)


def test_the_api_with_the_wrong_key_does_not_start(dispatcher, settings, queued):
    wrong = Fernet.generate_key().decode()
    args = ["-m", "dispatcher.ops.cli", "serve", "--host", "127.0.0.1", "--port", str(free_port())]
    code, out = run_bounded(args, env_with_key(settings, wrong), timeout=30)
    assert code is not None, f"the API started with the wrong key:\n{out[-2000:]}"
    assert code != 0 and MISMATCH in out, out[-2000:]
    assert dispatcher.core.r.exists(keys.account("runwayml", ACCOUNT["email"]))

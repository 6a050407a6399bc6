"""`dispatcher status`: providers, accounts, slots, lines, token expiry and errors; `--json` for scripts."""

from __future__ import annotations

import json
import subprocess
import sys

from dispatcher import providers
from dispatcher.logging import mask_url
from dispatcher.overview import collect

KNOWN_SECRETS = ("Runway-pass-Kx81-not-for-logs", "minimax-pasted-token-Mm55-not-for-logs")


def run_status(settings, child_env, *args, redis_url=None):
    env = child_env(settings)
    if redis_url:
        env["DISPATCHER_REDIS_URL"] = redis_url
    return subprocess.run([sys.executable, "-m", "dispatcher.ops.cli", "status", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_collect_shows_slots_lines_tokens_and_errors(dispatcher, add_account, submit):
    a = add_account("runwayml", 1)
    m = add_account("minimax", 2)
    ids = submit("runwayml", 3, 30.0)  # no worker runs: one admitted, two waiting
    dispatcher.core.cooldown_account("minimax", m, 60)
    dispatcher.core.flag_account("runwayml", a, "Token refresh failed: wrong password")

    data = collect(dispatcher)
    assert set(data["providers"]) == set(providers.REGISTRY)
    runway = data["providers"]["runwayml"]
    assert runway["waiting"] == 2 and runway["running"] == 1 and runway["slots"] == 1
    (acct,) = runway["accounts"]
    assert acct["id"] == a and acct["executing"] == 1 and acct["maxJobs"] == 1
    assert acct["error"] == "Token refresh failed: wrong password" and acct["eligible"] is False
    assert acct["token_seconds_to_expiry"] > 3600
    (mm,) = data["providers"]["minimax"]["accounts"]
    assert 0 < mm["cooldown_seconds"] <= 60 and mm["eligible"] is False and mm["error"] is None
    assert data["providers"]["pixverse"]["accounts"] == []
    assert data["queues"]["dispatcher.runwayml"] == 1  # the start step of the admitted one
    assert isinstance(data["workers"], int)
    assert len(ids) == 3


def test_status_command_json_and_table(dispatcher, settings, child_env, add_account):
    a = add_account("runwayml", 3)
    m = add_account("minimax", 2)
    dispatcher.core.flag_account("minimax", m, "Token expires soon and cannot be refreshed")

    done = run_status(settings, child_env, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [x["id"] for x in data["providers"]["runwayml"]["accounts"]] == [a]
    assert data["providers"]["minimax"]["accounts"][0]["error"].startswith("Token expires soon")

    table = run_status(settings, child_env)
    assert table.returncode == 0, table.stderr
    for text in (a, m, "0/3", "flagged", "Token expires soon", "waiting lines"):
        assert text in table.stdout, f"{text!r} missing from:\n{table.stdout}"
    for secret in KNOWN_SECRETS:
        assert secret not in done.stdout + table.stdout + done.stderr + table.stderr


def test_status_says_clearly_when_redis_is_down(settings, child_env):
    from dispatcher.ops.redis_server import free_port

    down = f"redis://:hunter2-Pw@127.0.0.1:{free_port()}/0"
    done = run_status(settings, child_env, redis_url=down)
    assert done.returncode == 1
    assert "is unreachable" in done.stderr and "Traceback" not in done.stderr
    assert "hunter2-Pw" not in done.stderr


def test_mask_url():
    assert mask_url("redis://:s3cret@redis:6379/0") == "redis://:…secured…@redis:6379/0"
    assert mask_url("redis://user:s3cret@redis:6379/0") == "redis://user:…secured…@redis:6379/0"
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"

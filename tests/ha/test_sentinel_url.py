"""`redis+sentinel://` URLs: read as rq-dashboard reads them, refused clearly when they do not fit, and
accepted by every entry point (the CLI, `status`, the dashboard) against real sentinels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher import sentinel
from dispatcher.connection import connect, connect_rq
from dispatcher.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-never-shown"


def test_the_rq_dashboard_form():
    spec = sentinel.parse(f"redis+sentinel://:{SECRET}@10.0.0.1:26380,10.0.0.2,sentinel-3:5000/mymaster/2")
    assert spec.hosts == (("10.0.0.1", 26380), ("10.0.0.2", 26379), ("sentinel-3", 5000))
    assert (spec.service, spec.db, spec.password) == ("mymaster", 2, SECRET)
    plain = sentinel.parse("redis+sentinel://127.0.0.1:26379/svc")  # no password, db 0
    assert (plain.service, plain.db, plain.password) == ("svc", 0, None)
    opts = sentinel.parse("redis+sentinel://h/svc?socket_timeout=0.5&sentinel_socket_connect_timeout=2&db=3")
    assert opts.client_options == {"socket_timeout": 0.5} and opts.sentinel_options == {"socket_connect_timeout": 2.0}
    assert opts.db == 3
    assert sentinel.parse("redis+sentinel://:p%40ss@h/svc").password == "p@ss"  # percent-decoded


def test_the_dashboard_gets_the_passwords_apart_from_the_url():
    config = sentinel.dashboard_config(f"redis+sentinel://:{SECRET}@h1:1,h2:2/svc/1", "sentinel-pw")
    assert config == {"RQ_DASHBOARD_REDIS_URL": "redis+sentinel://h1:1,h2:2/svc/1",
                      "RQ_DASHBOARD_REDIS_PASSWORD": SECRET, "RQ_DASHBOARD_REDIS_SENTINEL_PASSWORD": "sentinel-pw"}
    # rq-dashboard's own parser reads the URL it is given the same way
    from redis_sentinel_url import parse_sentinel_url

    parsed = parse_sentinel_url(config["RQ_DASHBOARD_REDIS_URL"])
    assert parsed.hosts == [("h1", 1), ("h2", 2)] and parsed.default_client.service == "svc"
    assert parsed.client_options == {"db": 1}
    assert sentinel.dashboard_config("redis://:x@h:6379/0") == {"RQ_DASHBOARD_REDIS_URL": "redis://:x@h:6379/0"}


@pytest.mark.parametrize("url, problem", [
    (f"redis+sentinel://:{SECRET}@h:26379", "service name"),
    (f"redis+sentinel://:{SECRET}@h:26379/", "service name"),
    (f"redis+sentinel://user:{SECRET}@h/svc", "user name"),
    (f"redis+sentinel://:{SECRET}@h:port/svc", "valid port"),
    (f"redis+sentinel://:{SECRET}@h:70000/svc", "valid port"),
    (f"redis+sentinel://:{SECRET}@h,,k/svc", "empty"),
    (f"redis+sentinel://:{SECRET}@h/svc/zero", "whole number"),
    (f"redis+sentinel://:{SECRET}@h/svc/0/more", "/<service>/<db> only"),
    (f"redis+sentinel://:{SECRET}@h/svc?client_type=slave", "master"),
    (f"redis+sentinel://:{SECRET}@h/svc?password={SECRET}", "unknown option"),
    (f"redis+sentinel://:{SECRET}@h/svc?socket_timeout=soon", "seconds"),
    (f"redis+sentinel://:{SECRET}@h/svc?db=1&db=2", "more than once"),
])
def test_a_bad_sentinel_url_is_one_clear_error_with_the_password_masked(url, problem):
    with pytest.raises(ConfigurationError) as caught:
        connect(url)
    message = caught.value.message
    assert problem in message and "redis+sentinel://[:password@]host:port" in message, message
    assert SECRET not in message, message


def test_a_malformed_redis_url_is_a_configuration_error_too():
    with pytest.raises(ConfigurationError) as caught:
        connect_rq(f"redis:/:{SECRET}@nowhere")
    assert SECRET not in caught.value.message


def run_cli(*args, url: str, tmp_path, settings=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(settings.to_env() if settings is not None else {})
    env.update({"DISPATCHER_REDIS_URL": url, "DISPATCHER_DATA_DIR": str(tmp_path / "data"),
                "DISPATCHER_LOG_FORMAT": "json"})
    return subprocess.run([sys.executable, "-m", "dispatcher.ops.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_cli_refuses_a_bad_sentinel_url_in_one_line(tmp_path):
    done = run_cli("status", url=f"redis+sentinel://:{SECRET}@127.0.0.1:9/", tmp_path=tmp_path)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr and SECRET not in done.stderr + done.stdout, done.stderr
    assert "service name" in done.stderr, done.stderr


def test_status_cli_and_dashboard_through_the_sentinels(ha, settings, dispatcher, tmp_path):
    """Real sentinels (with their own password): `status` (a child process), the dashboard's
    rq-dashboard connection and its Accounts page all reach the primary through the URL; neither
    password is shown."""
    from dispatcher.ops.dashboard import build_app

    done = run_cli("status", url=ha.url, tmp_path=tmp_path, settings=settings)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "redis+sentinel://:" in done.stdout and "dsp-primary" in done.stdout, done.stdout[:500]
    for secret in (ha.password, ha.sentinel_password):
        assert secret not in done.stdout + done.stderr, "password shown"
    app = build_app(ha.url, settings=settings)
    assert app.redis_conn.ping()
    assert app.redis_conn.connection_pool.service_name == "dsp-primary"
    with app.test_client() as client:
        res = client.get("/", headers={"Host": "127.0.0.1"})
        assert res.status_code == 200, res.status_code

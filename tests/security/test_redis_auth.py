"""Issue 15, finding 1: whoever reaches Redis runs code in the workers (RQ runs the function a
job names), so the embedded Redis requires a password, generated into the data directory (0600),
used by every command and never shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from dispatcher.errors import ConfigurationError
from dispatcher.ops.redis_server import EmbeddedRedis, find_redis_server, free_port, resolve_url
from dispatcher.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_FILE = "redis_password"


def refused_without_password(port: int) -> bool:
    """True when a client without the password is refused (NOAUTH / AuthenticationError)."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.AuthenticationError:
        return True
    except redis.ResponseError as exc:
        return str(exc).startswith("NOAUTH")
    finally:
        client.close()
    return False


def wait_answers(port: int, timeout: float = 10.0) -> None:
    """`--daemonize yes` returns before the server listens (Valkey 9 takes ~30 ms more than Redis 6.2)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5) as bare:
                bare.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(DISPATCHER_DATA_DIR=str(data_dir), DISPATCHER_LOG_FORMAT="json")
    return subprocess.run([sys.executable, "-m", "dispatcher.ops.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def data_dir(tmp_path):
    """A data directory whose embedded Redis is stopped after the test, however it was started."""
    path = tmp_path / "data"
    yield path
    EmbeddedRedis(path).stop()


def test_the_embedded_redis_refuses_a_client_without_the_password(data_dir):
    url = resolve_url(Settings(data_dir=data_dir))  # how every command finds (and starts) it
    server = EmbeddedRedis(data_dir)
    assert refused_without_password(server.port), "the embedded Redis answers a client without a password"
    wrong = redis.Redis(host="127.0.0.1", port=server.port, password="not-the-password-0123456789")
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    wrong.close()
    password_file = data_dir / PASSWORD_FILE
    assert password_file.stat().st_mode & 0o777 == 0o600, oct(password_file.stat().st_mode)
    password = password_file.read_text().strip()
    assert len(password) >= 32 and f":{password}@" in url
    with redis.Redis.from_url(url) as client:
        assert client.ping()
    assert password not in Path(f"/proc/{server.pid()}/cmdline").read_text(), "password on the command line"


def test_an_older_passwordless_server_is_given_the_password(data_dir):
    """A data directory whose Redis was started before passwords (same flags, no requirepass)."""
    old = data_dir / "redis"
    old.mkdir(parents=True)
    port = free_port()
    subprocess.run([find_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(old),
                    "--appendonly", "yes", "--save", "", "--daemonize", "yes",
                    "--pidfile", str(old / "redis.pid"), "--logfile", str(old / "redis.log")],
                   check=True, stdout=subprocess.DEVNULL)
    wait_answers(port)
    (old / "port").write_text(str(port))
    with redis.Redis(host="127.0.0.1", port=port) as bare:
        bare.ping()  # up, and open to anyone
        bare.set("kept", "yes")
    url = resolve_url(Settings(data_dir=data_dir, redis_maxmemory="64mb"))
    assert refused_without_password(port), "the older server still answers without a password"
    with redis.Redis.from_url(url, decode_responses=True) as client:
        assert client.get("kept") == "yes", "the running server was replaced, not secured"
        config = client.config_get("maxmemory*")
    assert int(config["maxmemory"]) == 64 * 1024 * 1024 and config["maxmemory-policy"] == "noeviction"


def test_a_foreign_passwordless_server_on_the_recorded_port_is_left_alone(data_dir, tmp_path):
    """A port file that points at somebody else's Redis (another directory): we refuse clearly
    and never set a password on it."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    port = free_port()
    subprocess.run([find_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(foreign),
                    "--save", "", "--daemonize", "yes", "--pidfile", str(foreign / "redis.pid"),
                    "--logfile", str(foreign / "redis.log")], check=True, stdout=subprocess.DEVNULL)
    wait_answers(port)
    try:
        (data_dir / "redis").mkdir(parents=True)
        (data_dir / "redis" / "port").write_text(str(port))
        with pytest.raises(ConfigurationError, match="serves another directory"):
            resolve_url(Settings(data_dir=data_dir))
        with redis.Redis(host="127.0.0.1", port=port) as bare:
            assert bare.ping() and bare.config_get("requirepass")["requirepass"] in (b"", "")
    finally:
        with redis.Redis(host="127.0.0.1", port=port) as bare:
            bare.shutdown(nosave=True)


def test_commands_use_the_password_and_never_print_it(data_dir):
    shown = cli(data_dir, "redis", "start")
    assert shown.returncode == 0, shown.stderr
    password = (data_dir / PASSWORD_FILE).read_text().strip()
    assert "redis://:…secured…@127.0.0.1:" in shown.stdout, shown.stdout
    url = cli(data_dir, "redis", "url")
    status = cli(data_dir, "status", "--json")
    assert status.returncode == 0, status.stderr  # the CLI authenticates
    assert json.loads(status.stdout)["redis"].startswith("redis://:…secured…@127.0.0.1:")
    for done in (shown, url, status):
        assert password not in done.stdout + done.stderr, f"{done.args} printed the Redis password"

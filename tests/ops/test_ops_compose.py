"""docker-compose.yml and README stay true to the code: real CLI commands, real settings."""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import click
import pytest
import yaml

from dispatcher.ops.cli import main
from dispatcher.settings import Settings, setting_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
README = ROOT / "README.md"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def resolve(args: list[str]) -> click.Command:
    """Parse `args` with the real click group (no callback runs); raise click errors on anything unknown."""
    ctx = main.make_context("dispatcher", list(args), resilient_parsing=False)
    command: click.Command = main
    while isinstance(command, click.Group):
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 9.0 folds it into args
            warnings.simplefilter("ignore", DeprecationWarning)
            tokens = [*getattr(ctx, "protected_args", []), *ctx.args]
        name, sub, rest = command.resolve_command(ctx, tokens)
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub
    return command


def environment(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def test_every_dispatcher_service_runs_a_real_cli_command():
    services = compose()["services"]
    assert {"redis", "api", "worker", "dashboard", "sandbox"} <= set(services)
    for name, service in services.items():
        if str(service.get("image", "")).startswith("redis:"):
            continue
        command = service["command"]
        assert isinstance(command, list) and command[0] == "dispatcher", f"{name}: {command!r}"
        resolved = resolve(command[1:])
        assert resolved.name == command[1], f"{name}: {command!r} resolves to {resolved.name}"
    assert services["api"]["command"][1] == "serve"
    assert services["worker"]["command"][1] == "worker"
    assert services["dashboard"]["command"][1] == "dashboard"
    assert services["sandbox"]["command"][1] == "sandbox"


def test_the_checker_rejects_what_is_not_a_command():
    with pytest.raises(click.UsageError):
        resolve(["serv"])
    with pytest.raises(click.UsageError):
        resolve(["worker", "--procs", "2"])
    with pytest.raises(click.UsageError):
        resolve(["accounts", "purge"])
    assert resolve(["accounts", "list", "runwayml"]).name == "list"


def test_every_environment_name_is_a_real_setting():
    names = set(setting_names())
    for name, service in compose()["services"].items():
        if str(service.get("image", "")).startswith("redis:"):
            assert set(environment(service)) <= {"REDISCLI_AUTH"}, f"service {name}: {environment(service)}"
            continue
        for key in environment(service):
            assert key in names, f"service {name}: {key} is not a dispatcher setting"


REQUIRED_PASSWORD = re.compile(r"^\$\{REDIS_PASSWORD:\?[^}]+\}$")  # compose stops when it is unset


def test_compose_redis_requires_a_password_every_service_uses():
    services = compose()["services"]
    redis = services["redis"]
    command = redis["command"]
    assert command[0] == "redis-server", "the image drops root only for a command starting with redis-server"
    assert REQUIRED_PASSWORD.match(command[command.index("--requirepass") + 1]), command
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert REQUIRED_PASSWORD.match(environment(redis)["REDISCLI_AUTH"]), "the health check needs the password"
    for name, service in services.items():
        url = environment(service).get("DISPATCHER_REDIS_URL")
        if url is None:
            continue
        # REDIS_URL (the `ha` profile's sentinel URL) or else the compose Redis, password required
        m = re.match(r"^\$\{REDIS_URL:-redis://:(.+)@redis:6379/0\}$", url)
        assert m and REQUIRED_PASSWORD.match(m.group(1)), f"service {name}: {url}"


def test_compose_shape():
    services = compose()["services"]
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    for name in ("api", "worker", "dashboard"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert environment(services[name])["DISPATCHER_REDIS_URL"].endswith("@redis:6379/0}")
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker, "worker must stay scalable"
    assert services["sandbox"]["profiles"] == ["demo"]
    assert "DISPATCHER_SECRET_KEY" not in environment(services["dashboard"]), "the dashboard needs no secret key"
    dash = environment(services["dashboard"])
    assert "DISPATCHER_DASHBOARD_USER" in dash and "DISPATCHER_DASHBOARD_PASSWORD" in dash
    for name, service in services.items():  # published ports stay on the host's loopback
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def _default(field: dataclasses.Field) -> str:
    value = field.default
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_compose_ha_profile_is_a_replica_and_three_sentinels():
    """`--profile ha`: a replica of `redis` and three sentinels (quorum 2) monitoring it, each with the
    password from the environment (never on a command line), state kept in its own volume; the
    sentinel URL of the compose header parses (dispatcher.sentinel)."""
    from dispatcher import sentinel

    services = compose()["services"]
    ha = {name for name, service in services.items() if "ha" in service.get("profiles", [])}
    assert ha == {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}, ha
    replica = services["redis-replica"]["command"]
    assert replica[0] == "redis-server" and replica[replica.index("--replicaof") + 1:][:2] == ["redis", "6379"]
    for command in (replica, services["redis"]["command"]):  # either may be the primary after a failover
        assert REQUIRED_PASSWORD.match(command[command.index("--masterauth") + 1]), command
        assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    volumes = set()
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        service = services[name]
        script = service["command"][-1]
        assert "sentinel monitor dispatcher redis 6379 2" in script and "exec redis-sentinel" in script
        assert "$$REDISCLI_AUTH" in script and "REDIS_PASSWORD" not in script, "the password stays off argv"
        assert REQUIRED_PASSWORD.match(environment(service)["REDISCLI_AUTH"])
        assert "ports" not in service
        volumes.add(service["volumes"][0])
    assert len(volumes) == 3, "each sentinel keeps what it learned in its own volume"
    header = COMPOSE.read_text().split("\nx-common-environment", 1)[0]
    url = re.search(r'REDIS_URL="(redis\+sentinel://[^"]+)"', header).group(1).replace("$REDIS_PASSWORD", "pw")
    spec = sentinel.parse(url)
    assert spec.service == "dispatcher" and len(spec.hosts) == 3
    assert {h for h, _ in spec.hosts} == {"sentinel-1", "sentinel-2", "sentinel-3"}


def test_readme_configuration_table_matches_the_settings():
    rows = re.findall(r"^\| `(DISPATCHER_[A-Z0-9_]+)` \| `([^`]*)` \| (.+) \|$", README.read_text(), re.M)
    documented = {name: default for name, default, _ in rows}
    expected = {f"DISPATCHER_{f.name.upper()}": _default(f) for f in dataclasses.fields(Settings)}
    missing = [f"| `{n}` | `{d}` | … |" for n, d in expected.items() if n not in documented]
    assert not missing, "README configuration table lacks:\n" + "\n".join(missing)
    extra = sorted(set(documented) - set(expected))
    assert not extra, f"README documents settings that do not exist: {extra}"
    wrong = {n: (documented[n], d) for n, d in expected.items() if documented[n] != d}
    assert not wrong, f"README defaults differ (README, code): {wrong}"
    assert [n for n, _, _ in rows] == list(setting_names()), "keep the table in the settings' order"


def test_readme_starts_with_the_two_commands():
    head = README.read_text().split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)", head, re.M)
    assert commands == ["make demo", "make test"]

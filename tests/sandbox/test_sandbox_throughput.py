"""Throughput smoke: sequential create + poll with a persistent client (prints req/s only)."""

from __future__ import annotations

import time


def test_sequential_create_poll(up, capsys):
    h = up.headers("runwayml", concurrency=1000, duration=0.01)
    n = 500
    t0 = time.perf_counter()
    for i in range(n):
        r = up.create("runwayml", h, {"promptText": f"p{i}"})
        assert r.status_code == 200
        assert up.poll("runwayml", h, r.json()["task"]["id"]).status_code == 200
    elapsed = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nsandbox: {2 * n / elapsed:.0f} req/s sequential ({2 * n} requests in {elapsed:.2f}s)")
    assert up.user_stats("run@example.com")["submitted"] == n

"""200 generations on all five providers in useapi mode, through real worker processes.

The accounts' maxJobs (2, 3 and 5) are posted through the dispatcher, which forwards them to the
sandbox's useapi.net; the emulated providers behind it could run more. Runway's sessions live 3 s,
so the JWT watch re-posts those accounts to useapi again and again while generations run. Halfway
through, work from outside the dispatcher occupies a Runway account at useapi: its 429s must be
absorbed by cooldowns, with no generation failing.

What must come out: every generation completed; 0 useapi violations (a 429 caused by our own jobs
alone would be one), 0 requests on an expired session, 0 duplicate creates (the same replyRef
twice) and 0 at the providers; at least one refresh made by a re-POST.
"""

from __future__ import annotations

import random
import time
from collections import Counter

from dispatcher import keys

N = 200
ACCOUNTS = [  # provider, id, maxJobs, sandbox user options
    ("runwayml", "reel-a@example.com", 2, {"jwt_lifetime": 3.0, "concurrency": 10}),
    ("runwayml", "reel-b@example.com", 3, {"jwt_lifetime": 3.0, "concurrency": 10}),
    ("pixverse", "pix-a@example.com", 3, {"concurrency": 10}),
    ("pixverse", "pix-b@example.com", 5, {"concurrency": 10}),
    ("minimax", "410001", 2, {"concurrency": 10}),
    ("minimax", "410002", 3, {"concurrency": 10}),
    ("kling", "kling-a@example.com", 5, {"concurrency": 10}),
    ("kling", "kling-b@example.com", 2, {"concurrency": 10}),
    ("riffusion", "riff-a", 3, {"concurrency": 10}),
    ("riffusion", "riff-b", 2, {"concurrency": 10}),
]
OPERATION = {"runwayml": "gen3turbo/create", "pixverse": "videos/create", "minimax": "videos/create",
             "kling": "videos/text2video", "riffusion": "music/create"}


def _wait_all(d, ids, timeout):
    deadline = time.monotonic() + timeout
    while True:
        gens = d.core.generations.many(ids)
        if all(g is not None and g.terminal for g in gens):
            return gens
        if time.monotonic() > deadline:
            live = Counter(g.state if g else None for g in gens if g is None or not g.terminal)
            raise AssertionError(f"not finished after {timeout}s: {dict(live)}")
        time.sleep(0.25)


def test_two_hundred_generations_through_useapi(dispatcher, team, fleet, settings):
    ids_of = {}
    for provider, ident, max_jobs, options in ACCOUNTS:
        ids_of[ident] = team.account(provider, ident, max_jobs, **options)
    fleet.start(2)
    rng = random.Random(17)
    providers = sorted(OPERATION)
    ids, busy_at = [], N // 2
    for i in range(N):
        provider = providers[i % len(providers)]
        payload = {"prompt": f"useapi e2e {i}", "sandbox_duration": round(rng.uniform(0.5, 2.0), 2)}
        ids.append(dispatcher.submit(provider, OPERATION[provider], payload).id)
        if i == busy_at:  # outside work takes every slot of one Runway account for a while
            team.sandbox.post("/_sandbox/useapi-busy", json={"provider": "runwayml", "account": "reel-b@example.com",
                                                             "jobs": 3, "seconds": 4}).raise_for_status()
        time.sleep(0.01)
    gens = _wait_all(dispatcher, ids, timeout=240)

    states = Counter(g.state for g in gens)
    failed = [(g.id, g.error, g.error_code) for g in gens if g.state != "completed"]
    assert states["completed"] == N, failed[:5]

    stats = team.stats()
    useapi = stats["useapi"]
    assert useapi["violations"] == 0, useapi
    assert useapi["expired_token_requests"] == 0, useapi
    assert useapi["duplicates"] == 0, useapi
    assert stats["violations"] == 0 and stats["duplicates"] == 0, stats
    assert useapi["rejected_429"] >= 1, "the outside work never made useapi refuse a create"

    # Runway's 3-second sessions were renewed by re-posting the accounts to useapi
    summaries = {s.id: s for s in dispatcher.core.accounts.summaries("runwayml")}
    refreshes = sum(int(dispatcher.core.r.hget(keys.account("runwayml", a), "refreshes") or 0) for a in summaries)
    assert refreshes >= 1, refreshes
    assert all(not s.error for s in summaries.values()), summaries
    print(f"useapi e2e: {N} completed, useapi {useapi}, providers violations {stats['violations']} "
          f"duplicates {stats['duplicates']}, runway re-posts {refreshes}")

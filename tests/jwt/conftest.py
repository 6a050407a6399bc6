"""Helpers for the JWT-watch and account-health tests: upstream users, accounts, waiting.

Everything runs against the real pieces: the embedded Redis, the sandbox over
loopback HTTP and (where a test asks for `fleet`) real worker processes.
"""

from __future__ import annotations

import time

import pytest

from dispatcher import providers

PASSWORD = "pw-s3cret-value"


class Upstreams:
    """Registers upstream users in the sandbox and the matching accounts in the dispatcher."""

    def __init__(self, sandbox, dispatcher):
        self.sandbox = sandbox
        self.d = dispatcher

    def user(self, provider: str, ident: str, **options) -> dict:
        body = {"provider": provider, **options}
        if provider in ("runwayml", "pixverse"):
            body.update(email=ident, password=PASSWORD)
        elif provider == "riffusion":
            body.update(cookie=f"sb-access-token={ident}", user_id=ident)
        else:
            body.update(account=ident)
        res = self.sandbox.post("/_sandbox/users", json=body)
        assert res.status_code == 201, res.text
        return res.json()

    def account(self, provider: str, ident: str, max_jobs: int, **options) -> str:
        """An upstream user plus the dispatcher account on it; returns the account id."""
        user = self.user(provider, ident, **options)
        if provider in ("runwayml", "pixverse"):
            body = {"email": ident, "password": PASSWORD}
        elif provider == "riffusion":
            body = {"cookie": f"sb-access-token={ident}"}
        else:
            body = {"account": ident, "token": user["token"]}
        view = self.d.upsert_account(provider, {**body, "maxJobs": max_jobs},
                                     None if provider == "riffusion" else ident)
        return view[providers.get(provider).id_field]

    def patch(self, provider: str, ident: str, **options) -> None:
        res = self.sandbox.patch(f"/_sandbox/users/{provider}/{ident}", json=options)
        assert res.status_code == 200, res.text

    def stats(self, provider: str | None = None) -> dict:
        res = self.sandbox.get("/_sandbox/stats", params={"provider": provider} if provider else None)
        res.raise_for_status()
        return res.json()


@pytest.fixture
def upstreams(sandbox, dispatcher) -> Upstreams:
    return Upstreams(sandbox, dispatcher)


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_all(d, ids, timeout: float) -> dict:
    """Wait until every generation is terminal; return {id: Generation}."""
    ids = list(ids)
    done: dict = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(ids):
        for gen_id, gen in zip(ids, d.core.generations.many([i for i in ids])):
            if gen is not None and gen.terminal:
                done[gen_id] = gen
        if len(done) < len(ids):
            if time.monotonic() >= deadline:
                live = {g: (x.state if x else None) for g, x in zip(ids, d.core.generations.many(ids))
                        if g not in done}
                raise AssertionError(f"{len(live)} generations not finished after {timeout}s: "
                                     f"{dict(list(live.items())[:10])}")
            time.sleep(0.2)
    return done


@pytest.fixture
def helpers():
    """The waiting helpers, as a fixture (test files cannot import each other)."""
    class H:
        pass

    h = H()
    h.wait_until = wait_until
    h.wait_all = wait_all
    return h

"""Where a `replyUrl` may point: the destination policy, checked at submit and again at connect.

By default a callback reaches public addresses only. Loopback, private, link-local, multicast,
unspecified, reserved and every other non-global address is refused, in each spelling a resolver
accepts: `2130706433`, `0x7f.0.0.1`, `0177.0.0.1`, `127.1`, `0`, `localhost`, `[::1]`, and IPv6
forms that carry an IPv4 address (`::ffff:127.0.0.1`, 6to4 `2002:7f00:1::`, NAT64 `64:ff9b::7f00:1`,
Teredo). `DISPATCHER_CALLBACK_ALLOW` lists hosts (exact names, case-insensitive) and networks (CIDR,
or single addresses) a callback may reach although internal.

- At submit (`check_reply_url`): a literal address is checked, a name is resolved (within
  SUBMIT_RESOLVE_SECONDS) and every address it resolves to is checked. A name that does not resolve
  is accepted: its receiver may come up later, and it is checked at connect.
- At connect (`GuardedBackend`, the network backend of every delivery): the worker resolves the
  host itself, checks every address, and connects to a checked address; nothing resolves the name
  again, so a DNS answer that changes between check and connect (rebinding) gains nothing. The host
  is the one httpx parsed from the URL, so this check is the authoritative one.

`GuardedBackend` also holds a delivery to its deadline: each connect, TLS handshake, read and write
gets at most what is left of it (a receiver dripping one byte at a time gains nothing), and reads
are capped at READ_SIZE bytes.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SUBMIT_RESOLVE_SECONDS = 2.0  # a submit waits this long at most for DNS; a slower name is checked at connect
READ_SIZE = 4096  # bytes asked of the socket per read, headers included
WRITE_SIZE = 16384  # bytes handed to the socket per write (each with a fresh share of the deadline)
_NUMERIC = re.compile(r"[0-9a-fx.]+")  # what inet_aton may read as IPv4 (2130706433, 0x7f.1, 0177.0.0.1)
_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHECKS = (("is_loopback", "loopback"), ("is_unspecified", "unspecified"), ("is_link_local", "link-local"),
           ("is_multicast", "multicast"), ("is_private", "private"), ("is_reserved", "reserved"))


class Refused(Exception):
    """A destination the policy does not allow. The message names the host and the kind of address,
    never the address a name resolved to."""


@dataclass(frozen=True)
class Allow:
    names: frozenset[str]
    networks: tuple


@lru_cache(maxsize=64)
def parse_allow(entries: tuple[str, ...]) -> Allow:
    """`DISPATCHER_CALLBACK_ALLOW` entries: each a network (`10.0.0.0/8`, `127.0.0.1`, `::1`) or a host name."""
    names, networks = set(), []
    for raw in entries:
        entry = raw.strip().lower().strip("[]")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.rstrip("."))
    return Allow(frozenset(names), tuple(networks))


def _norm(host: str) -> str:
    return host.strip().lower().strip("[]").rstrip(".")


def literal_address(host: str) -> Address | None:
    """The address `host` spells, in any form the resolver reads as one; None for a name."""
    text = _norm(host).split("%")[0]  # an IPv6 zone (fe80::1%eth0) does not change the kind of address
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _carried(ip: Address) -> list[Address]:
    """Every IPv4 address `ip` carries (IPv4-mapped, 6to4, NAT64, Teredo), then `ip` itself."""
    out: list[Address] = []
    if ip.version == 6:
        for inner in (ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())):
            if inner is not None:
                out.append(inner)
        if ip in _NAT64:
            out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out + [ip]  # the carried address first: it names the kind (loopback, not "private")


def _kind(ip: Address) -> str | None:
    for attribute, kind in _CHECKS:
        if getattr(ip, attribute):
            return kind
    return None if ip.is_global else "non-public"


def refusal(host: str, ip: Address, allow: Allow) -> str | None:
    """Why `host` (at address `ip`) may not be reached — "loopback", "private"… — or None when it may."""
    if _norm(host) in allow.names:
        return None
    carried = _carried(ip)
    if any(c.version == net.version and c in net for c in carried for net in allow.networks):
        return None
    for candidate in carried:
        kind = _kind(candidate)
        if kind:
            return kind
    return None


def _local_name(host: str) -> bool:
    name = _norm(host)
    return name == "localhost" or name.endswith(".localhost")  # RFC 6761: always loopback


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order. (Tests replace this one function.)"""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def _resolve_within(host: str, port: int, seconds: float) -> list[str] | None:
    """`resolve`, waited for `seconds` at most (getaddrinfo has no timeout); None when it failed or is late."""
    found: list = []

    def run():
        try:
            found.append(resolve(host, port))
        except (OSError, UnicodeError):
            pass

    worker = threading.Thread(target=run, name="dispatcher-resolve", daemon=True)
    worker.start()
    worker.join(max(seconds, 0.0))
    return found[0] if found else None


def _parse(addresses: list[str]) -> list[tuple[str, Address]]:
    out = []
    for text in addresses:
        ip = literal_address(text)
        if ip is not None:
            out.append((text, ip))
    return out


def _refuse(host: str, kind: str) -> Refused:
    article = "an" if kind[0] in "aeiou" else "a"
    return Refused(f"replyUrl must not point to {article} {kind} address (host {host}); "
                   f"DISPATCHER_CALLBACK_ALLOW can allow it")


def destinations(host: str, port: int, allow: Allow, seconds: float) -> list[tuple[str, Address]] | None:
    """The checked (text, address) pairs `host` may be reached at; raises Refused when any address it
    resolves to is refused. None: the name did not resolve within `seconds`."""
    ip = literal_address(host)
    if ip is not None:
        pairs = [(str(ip), ip)]
    else:
        name = _norm(host)
        if not _NAME.fullmatch(name):
            raise Refused(f"replyUrl host {host!r} is neither an address nor a host name")
        if _local_name(name) and name not in allow.names:
            raise _refuse(host, "loopback")
        resolved = _resolve_within(name, port, seconds)
        if resolved is None:
            return None
        pairs = _parse(resolved)
    for _, address in pairs:
        kind = refusal(host, address, allow)
        if kind:
            raise _refuse(host, kind)
    return pairs


def check_reply_url(url: str, allow_entries=()) -> None:
    """Submit-time check of a replyUrl (already known to be an http(s) URL with a host): raises Refused."""
    try:
        parsed = httpx.URL(url)  # the parser the delivery uses
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:  # httpx could not send to it either
        raise Refused(f"replyUrl is not a valid URL: {str(exc)[:120]}") from None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    destinations(host, port, parse_allow(tuple(allow_entries)), SUBMIT_RESOLVE_SECONDS)


class GuardedBackend(httpcore.NetworkBackend):
    """The httpcore network backend of one delivery: checks the destination at connect time,
    connects to a checked address, and gives every operation at most what is left of `deadline`
    (a `time.monotonic()` instant)."""

    def __init__(self, allow: Allow, deadline: float):
        self.allow = allow
        self.deadline = deadline
        self._plain = httpcore.SyncBackend()

    def left(self, timeout_error: type[Exception], timeout: float | None = None) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise timeout_error("callback deadline passed")
        return remaining if timeout is None else min(timeout, remaining)

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        pairs = destinations(host, port, self.allow, self.left(httpcore.ConnectTimeout, timeout))
        if not pairs:
            raise httpcore.ConnectError(f"could not resolve {host} in time")
        error: Exception = httpcore.ConnectError(f"no address of {host} answered")
        for text, _ in pairs:  # only checked addresses: the name is never resolved again
            try:
                stream = self._plain.connect_tcp(text, port, timeout=self.left(httpcore.ConnectTimeout, timeout),
                                                 local_address=local_address, socket_options=socket_options)
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return DeadlineStream(stream, self)
        raise error

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise Refused("replyUrl must not point to a unix socket")

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.deadline - time.monotonic())))


class DeadlineStream(httpcore.NetworkStream):
    """A connected stream whose every operation ends by the backend's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, backend: GuardedBackend):
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(min(max_bytes, READ_SIZE), self._backend.left(httpcore.ReadTimeout, timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_SIZE):
            self._inner.write(buffer[start:start + WRITE_SIZE], self._backend.left(httpcore.WriteTimeout, timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        # the handshake's own timeout bounds the whole handshake (CPython's ssl keeps one deadline)
        inner = self._inner.start_tls(ssl_context, server_hostname=server_hostname,
                                      timeout=self._backend.left(httpcore.ConnectTimeout, timeout))
        return DeadlineStream(inner, self._backend)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _Body(httpx.SyncByteStream):
    def __init__(self, stream):
        self._stream = stream

    def __iter__(self):
        yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


@lru_cache(maxsize=1)
def default_ssl_context() -> ssl.SSLContext:
    """httpx's verifying context, built once per process (loading the CA bundle is not free)."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport for one delivery: no proxy, no connection reuse, `GuardedBackend` underneath.
    Errors are httpcore's (or Refused), not mapped to httpx's."""

    def __init__(self, allow: Allow, deadline: float, ssl_context: ssl.SSLContext | None = None):
        # TLS verifies the URL's host name (and sends it as SNI) although the socket goes to an address
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context or default_ssl_context(), max_connections=1,
                                             max_keepalive_connections=0,
                                             network_backend=GuardedBackend(allow, deadline))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                           target=request.url.raw_path)
        answer = self._pool.handle_request(httpcore.Request(method=request.method, url=url,
                                                            headers=request.headers.raw, content=request.stream,
                                                            extensions=request.extensions))
        return httpx.Response(status_code=answer.status, headers=answer.headers, stream=_Body(answer.stream),
                              extensions=answer.extensions)

    def close(self) -> None:
        self._pool.close()

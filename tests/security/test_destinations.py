"""Where a replyUrl may point (issue 15, item 2): internal destinations are refused at submit and
again at connect. Only 127.0.0.0/8 is ever connected to: every other address is checked by the
validator alone (nothing is sent anywhere), and a made-up name's resolution is the one thing
injected (`destinations.resolve`)."""

from __future__ import annotations

import json
import datetime
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dispatcher.errors import ValidationError

LOOPBACK_SPELLINGS = ["127.0.0.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.1", "0x7f000001", "0.0.0.0", "0",
                      "localhost", "LOCALHOST.", "hooks.localhost", "[::1]", "[::ffff:127.0.0.1]", "[::]",
                      "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "127.0.0.1."]
INTERNAL = {  # checked by the validator only: nothing is ever sent to these
    "10.0.0.7": "private", "172.16.5.4": "private", "192.168.1.1": "private", "169.254.169.254": "link-local",
    "100.64.0.1": "non-public", "224.0.0.251": "multicast", "240.0.0.1": "private", "255.255.255.255": "private",
    "[fe80::1]": "link-local", "[fc00::1]": "private", "[ff02::1]": "multicast", "[::ffff:10.0.0.1]": "private",
    "[::ffff:169.254.169.254]": "link-local", "[2001:db8::1]": "private", "0xa000001": "private",
    "3232235777": "private",
}
PUBLIC = "93.184.215.14"  # only ever returned by a replaced resolver: no test connects to it


class Receiver:
    """A loopback webhook endpoint that records what reaches it."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.received: list[tuple[dict, bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture
def resolver(monkeypatch):
    """Replace name resolution: `resolver.names[name] = [addresses]` (or a list of answers, one per call)."""
    from dispatcher import destinations

    class Fake:
        names: dict = {}
        calls: list = []

        def __call__(self, host, port):
            self.calls.append(host)
            answer = self.names.get(host)
            if answer is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            if answer and isinstance(answer[0], list):  # one answer per call, the last one repeated
                return answer.pop(0) if len(answer) > 1 else answer[0]
            return answer

    fake = Fake()
    fake.names, fake.calls = {}, []
    monkeypatch.setattr(destinations, "resolve", fake)
    return fake


def _submit_json(url: str) -> dict:
    return {"promptText": "a lighthouse", "replyUrl": url}


@pytest.fixture
def strict(settings, r, sandbox):
    """A Dispatcher with the default policy (no allow-list) and one account, and its HTTP API."""
    from fastapi.testclient import TestClient

    from dispatcher.api.app import create_app
    from dispatcher.client import Dispatcher

    d = Dispatcher(settings.redis_url, settings.with_(callback_allow=()))
    sandbox.post("/_sandbox/users", json={"provider": "runwayml", "email": "dest@example.com", "password": "pw-dest",
                                          "concurrency": 2, "duration": 30}).raise_for_status()
    d.upsert_account("runwayml", {"email": "dest@example.com", "password": "pw-dest", "maxJobs": 2}, "dest@example.com")
    with TestClient(create_app(d), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {settings.api_tokens[0]}"
        yield d, client
    d.close()


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_loopback_reply_url_is_refused_at_submit_by_default(strict, r, snapshot, host):
    d, api = strict
    url = f"http://{host}:8000/admin/reset"
    before = snapshot(r)
    res = api.post("/v1/runwayml/gen3turbo/create", json=_submit_json(url))
    assert res.status_code == 400, res.text
    assert res.json()["error"].startswith("replyUrl")
    with pytest.raises(ValidationError) as refused:
        d.submit("runwayml", "gen3turbo/create", {"promptText": "a"}, reply_url=url)
    assert refused.value.status == 400 and refused.value.message == res.json()["error"]
    assert snapshot(r) == before  # nothing written: no record, no job, no line


@pytest.mark.parametrize("host,kind", sorted(INTERNAL.items()))
def test_internal_addresses_are_refused_by_the_validator(host, kind):
    from dispatcher.generations import validate_reply

    with pytest.raises(ValidationError, match=f"{kind} address"):
        validate_reply(f"https://{host}/hook", None, ())
    validate_reply(f"https://{host}/hook", None, ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                                                  "100.64.0.0/10", "224.0.0.0/4", "240.0.0.0/4", "fe80::/10",
                                                  "fc00::/7", "ff00::/8", "2001:db8::/32"))


def test_names_are_checked_by_what_they_resolve_to(resolver):
    from dispatcher.generations import validate_reply

    resolver.names["hooks.corp.test"] = ["10.1.2.3"]
    resolver.names["mixed.example.test"] = [PUBLIC, "127.0.0.1"]  # one internal address is enough to refuse
    resolver.names["hooks.example.test"] = [PUBLIC]
    for name, kind in (("hooks.corp.test", "private"), ("mixed.example.test", "loopback")):
        with pytest.raises(ValidationError, match=f"{kind} address"):
            validate_reply(f"https://{name}/hook", None, ())
    validate_reply("https://hooks.example.test/hook", None, ())  # public: accepted
    validate_reply("https://not-up-yet.example.test/hook", None, ())  # does not resolve: accepted, checked at connect
    validate_reply("https://hooks.corp.test/hook", None, ("hooks.corp.test",))  # allowed by name
    validate_reply("https://hooks.corp.test/hook", None, ("10.1.0.0/16",))  # allowed by network
    with pytest.raises(ValidationError):
        validate_reply("https://hooks.corp.test/hook", None, ("10.2.0.0/16", "other.corp.test"))


def _post(url, allow=()):
    from workers.callbacks import post

    return post(url, b'{"id":"x"}', {"Content-Type": "application/json"}, allow=allow, deadline=5)


def test_connect_time_check_refuses_a_name_that_resolves_to_loopback(resolver, receiver):
    from dispatcher.destinations import Refused

    resolver.names["hooks.rebind.test"] = ["127.0.0.1"]
    url = f"http://hooks.rebind.test:{receiver.port}/hook"
    with pytest.raises(Refused, match="loopback"):
        _post(url)
    assert receiver.received == []
    # allowed, the same name reaches the receiver: the worker connects to the address it checked
    assert _post(url, allow=("127.0.0.0/8",))[0] == 204
    assert _post(url, allow=("hooks.rebind.test",))[0] == 204
    assert len(receiver.received) == 2 and receiver.received[0][0]["Host"] == f"hooks.rebind.test:{receiver.port}"


def test_dns_rebinding_between_submit_and_connect_is_refused(resolver, receiver):
    from dispatcher.destinations import Refused
    from dispatcher.generations import validate_reply

    resolver.names["rebind.example.test"] = [[PUBLIC], ["127.0.0.1"]]  # public when checked, loopback after
    url = f"http://rebind.example.test:{receiver.port}/hook"
    validate_reply(url, None, ())  # accepted at submit: it resolved to a public address
    calls = len(resolver.calls)
    with pytest.raises(Refused, match="loopback"):
        _post(url)
    assert len(resolver.calls) == calls + 1  # resolved once, in the worker, and refused before any connect
    assert receiver.received == []


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.0.0.1", "127.1", "localhost"])
def test_connect_time_check_refuses_loopback_literals(resolver, receiver, host):
    from dispatcher.destinations import Refused

    resolver.names["localhost"] = ["127.0.0.1"]
    with pytest.raises(Refused):
        _post(f"http://{host}:{receiver.port}/hook")
    assert receiver.received == []
    assert _post(f"http://{host}:{receiver.port}/hook", allow=("127.0.0.1", "localhost"))[0] == 204
    assert json.loads(receiver.received[-1][1]) == {"id": "x"}


def _self_signed(name: str, tmp_path) -> tuple[str, str]:
    """A certificate for `name` (and its key), as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def test_https_checks_the_url_host_while_connecting_to_the_checked_address(resolver, tmp_path):
    """TLS sends the URL's host as SNI and verifies the certificate against it, although the socket
    goes to the address the worker checked."""
    from workers.callbacks import post

    cert, key = _self_signed("hooks.tls.test", tmp_path)
    server_side, seen = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), []
    server_side.load_cert_chain(cert, key)
    server_side.sni_callback = lambda sock, name, context: seen.append(name)
    trusting = ssl.create_default_context(cafile=cert)
    tls_receiver = Receiver(tls=server_side)
    try:
        resolver.names["hooks.tls.test"] = resolver.names["other.tls.test"] = ["127.0.0.1"]
        url = f"https://hooks.tls.test:{tls_receiver.port}/hook"
        status, _ = post(url, b"{}", {}, allow=("127.0.0.1",), deadline=5, ssl_context=trusting)
        assert status == 204 and seen == ["hooks.tls.test"] and len(tls_receiver.received) == 1
        with pytest.raises(Exception, match="(?i)certificate|hostname"):  # the certificate names another host
            post(f"https://other.tls.test:{tls_receiver.port}/hook", b"{}", {}, allow=("127.0.0.1",), deadline=5,
                 ssl_context=trusting)
        assert len(tls_receiver.received) == 1
    finally:
        tls_receiver.close()

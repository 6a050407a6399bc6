"""Structured logging: the entry points configure it; a library user's `logging` gets it.

Two modes, chosen when a line is logged (not when a logger is made):
- the `dispatcher` command (serve, worker, demo, status…) calls `configure`: structlog renders
  each event itself, console in a terminal, JSON otherwise, on stderr;
- used as a library (`import dispatcher` in a backend), nothing is configured and nothing is
  written to the host's stdout or stderr: every event goes to the standard `logging` logger
  named `dispatcher` (a `NullHandler` on it, as a library should), as a record whose message is
  `event key=value …` and whose fields are also attributes of the record (`record.provider`…),
  at the host's levels and through the host's handlers. The global structlog configuration, which
  the host may use itself, is left alone.

Context (`generation_id`, `provider`, `account`) is bound with contextvars.
`redact` runs before any renderer (and before a record is handed to `logging`), so a secret never
reaches a log line: values under secret-looking keys are masked, and any registered secret value
(passwords, cookies, tokens seen at run time) is replaced wherever it appears.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time

import structlog

SECRET_KEYS = frozenset(
    {
        "password", "cookie", "token", "access_token", "refresh_token", "jwt", "authorization",
        "secret", "secret_key", "api_token", "api_tokens", "creds", "credentials", "Token",
    }
)
MASK = "…secured…"

MAX_KNOWN_SECRETS = 512  # beyond this, secrets not seen for SECRET_UNUSED_S are forgotten
SECRET_UNUSED_S = 3600.0
_known_secrets: dict[str, float] = {}  # value -> when last registered; oldest first
_lock = threading.Lock()
_clock = time.monotonic


def register_secret(value: str | None) -> None:
    """Remember a secret value so `redact` masks it wherever it shows up.

    Every token a refresh brings is registered, so a long-running worker would
    collect them without end, and every log line is checked against them all.
    A secret in use is registered again each time it is opened (`Vault.open`:
    every step that uses its account, every refresh; idle accounts are not
    opened), so once the registry holds more than `MAX_KNOWN_SECRETS`, the ones
    not seen for `SECRET_UNUSED_S` (replaced tokens, idle accounts) are forgotten.
    One forgotten is registered again when it is next opened, before any use;
    secrets opened within `SECRET_UNUSED_S` are never dropped."""
    if value and len(value) >= 6:
        now = _clock()
        with _lock:
            _known_secrets.pop(value, None)
            _known_secrets[value] = now
            while len(_known_secrets) > MAX_KNOWN_SECRETS:
                oldest = next(iter(_known_secrets))
                if now - _known_secrets[oldest] < SECRET_UNUSED_S:
                    break
                del _known_secrets[oldest]


def mask_url(url: str | None) -> str | None:
    """A URL fit to show (a Redis URL in a status line, a log event): its password, if any, masked."""
    if not url:
        return url
    return re.sub(r"(://[^:/@]*:)[^@]*@", rf"\1{MASK}@", url)


def _scrub(value):
    if isinstance(value, str):
        for secret in _known_secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: (MASK if str(k).lower() in SECRET_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v) for v in value)
    return value


def redact(logger, method_name, event_dict):
    """structlog processor: mask secret-named keys and known secret values."""
    with _lock:
        return {k: (MASK if k.lower() in SECRET_KEYS else _scrub(v)) for k, v in event_dict.items()}


_configured = False


def configure(fmt: str = "auto", level: str = "info", stream=None) -> None:
    """Configure structlog and route stdlib logging (rq, uvicorn) through the same renderer."""
    global _configured
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer = structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer()
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer, foreign_pre_chain=[structlog.processors.add_log_level,
                                                  structlog.processors.TimeStamper(fmt="iso", utc=True), redact]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("rq", "rq.worker", "rq.scheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _configured = True


LIBRARY_LOGGER = "dispatcher"  # the stdlib logger a library user's handlers receive records on
logging.getLogger(LIBRARY_LOGGER).addHandler(logging.NullHandler())
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("x", logging.INFO, "", 0, "", (), None))) | {"message", "asctime"}


def _text(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if text and not any(c.isspace() or c in '"=' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _to_stdlib(logger, method_name, event_dict) -> dict:
    """Last processor of the library mode: `logging.Logger.<level>(msg, extra=…)` arguments."""
    event = str(event_dict.pop("event", ""))
    msg = " ".join([event, *(f"{k}={_text(v)}" for k, v in event_dict.items())])
    extra = {k: v for k, v in event_dict.items() if k not in _RECORD_FIELDS}
    # a traceback rides in the message, redacted; `Logger.exception` would add it again, raw
    return {"msg": msg, "extra": extra, "exc_info": False}


_LIBRARY_CHAIN = [
    structlog.stdlib.filter_by_level,  # the host's level for `dispatcher`: nothing below it is even built
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.PositionalArgumentsFormatter(),
    structlog.processors.format_exc_info,  # a traceback as text, so `redact` sees it too
    redact,
    _to_stdlib,
]


class _Logger:
    """What `get_logger` returns: a logger that picks its mode when it logs (see the module
    docstring), so module-level loggers made at import follow a later `configure`."""

    __slots__ = ("_bound", "_mode", "_logger")

    def __init__(self, bound: dict):
        self._bound = bound
        self._mode: bool | None = None
        self._logger = None

    def _target(self):
        if self._mode is not _configured:
            if _configured:  # structlog's lazy proxy follows every later `configure` itself
                self._logger = structlog.get_logger("dispatcher", **self._bound)
            else:
                self._logger = structlog.wrap_logger(
                    logging.getLogger(LIBRARY_LOGGER), processors=_LIBRARY_CHAIN, context_class=dict,
                    wrapper_class=structlog.stdlib.BoundLogger, cache_logger_on_first_use=False,
                ).bind(**self._bound)
            self._mode = _configured
        return self._logger

    def __getattr__(self, name):
        return getattr(self._target(), name)


def get_logger(**bound):
    """A lazy logger: it takes the configuration in force when it logs, not at import
    (`configure`d by an entry point, else the library mode)."""
    return _Logger(bound)


def parse_json_lines(text: str) -> list[dict]:
    """The JSON log events in a captured log (other lines are skipped): for tests and tooling."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


bind = structlog.contextvars.bind_contextvars
clear = structlog.contextvars.clear_contextvars

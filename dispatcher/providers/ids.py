"""Account ids: what each provider's id may look like, and credentials that travel in headers."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import ProviderSpec

# -- account ids ------------------------------------------------------------------
# An account id travels raw in URL paths (`{prefix}/accounts/{id}`), in Redis key names and in
# metric labels. Every character it may hold is one a URL path segment carries as it is
# (RFC 3986 pchar: no `/`, `?`, `#`, `%`, space, control or non-ASCII character), and dots
# only separate non-empty parts (no `.`/`..` segment for a client to normalise away).
ID_MAX = 254  # the longest email address a mail server accepts
_ATOM = r"[A-Za-z0-9!$&'*+=_~-]+"  # RFC 5322 atext that is also a raw URL path character
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_ID = re.compile(rf"(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")
EMAIL_RULE = ("an email address (letters, digits and ! $ & ' * + = _ ~ - in dot-separated parts "
              "before the @, a domain name after it)")
NUMERIC_ID = re.compile(r"[0-9]{1,32}")
NUMERIC_RULE = "the numeric account id (digits only)"
TOKEN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_~+@-]*(?:\.[A-Za-z0-9_~+@-]+)*")
TOKEN_RULE = "letters, digits and _ ~ + @ - in dot-separated parts, starting with a letter or digit"
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def id_problem(spec: ProviderSpec, value: str) -> str | None:
    """Why `value` cannot be an account id of `spec` (None when it can)."""
    if len(value) <= ID_MAX and spec.id_pattern.fullmatch(value):
        return None
    return f"{spec.id_field} must be {spec.id_rule}, at most {ID_MAX} characters"


def header_safe(value: str) -> bool:
    """True when `value` can be sent as an HTTP header value unchanged: printable ASCII only,
    spaces inside but not at either end (a header parser trims those), no CR, LF, NUL, tab or
    other control character, nothing past ASCII."""
    return bool(_HEADER_SAFE.fullmatch(value))

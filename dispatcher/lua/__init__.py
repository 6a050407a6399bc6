"""The one loader of the dispatcher's Lua scripts.

Every script is a file of its own, opening with a header (KEYS, ARGV, Returns, Invariant;
tests/capacity/test_semaphore.py enforces it). A `Family` is a folder of scripts loaded alike:
- the core scripts, in this folder (`transition`, `update_existing`, `with_account`,
  `claim_due`, `claim_queued`), each sent
  as written: `source(name)`, `register(client, name)`;
- the capacity scripts (`dispatcher/capacity/scripts/`), each sent with the shared prelude
  `_pump.lua` in front of it (`Family.prelude`).

A script may name a value it cannot know itself as `{{NAME}}` (RQ's key prefixes in
`_pump.lua`: `dispatcher.rq_glue.LUA_NAMES`); the family's `values` fill it in once, when
the text is built, so no call pays an argument for it. A placeholder without a value, or a
value that could break out of its Lua string literal, fails loudly at load time.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

_PLACEHOLDER = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")
_UNSAFE_VALUE = re.compile(r"['\"\\\n\r]")  # could end or escape the literal it sits in


def fill(text: str, values: Mapping[str, str], *, where: str = "script") -> str:
    """`text` with each `{{NAME}}` replaced by `values[NAME]`."""

    def value(match) -> str:
        name = match.group(1)
        if name not in values:
            raise RuntimeError(f"{where} names {{{{{name}}}}}, which nothing fills in")
        if _UNSAFE_VALUE.search(values[name]):
            raise RuntimeError(f"{where}: the value of {name} ({values[name]!r}) cannot sit in a Lua string")
        return values[name]

    return _PLACEHOLDER.sub(value, text)


@dataclass(frozen=True, eq=False)
class Family:
    """Scripts in one folder, loaded alike: `<folder>/<name>.lua`, after `<folder>/<prelude>.lua`
    when a prelude is given, with `values` filled in."""

    folder: Path
    names: tuple[str, ...]
    prelude: str | None = None
    values: Mapping[str, str] = field(default_factory=dict)
    _registered: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary, repr=False)

    def read(self, name: str) -> str:
        """A file of the family as it is on disk."""
        return (self.folder / f"{name}.lua").read_text(encoding="utf-8")

    def text(self, name: str) -> str:
        """A file of the family with its placeholders filled in (the prelude alone, for tests)."""
        return fill(self.read(name), self.values, where=f"{self.folder.name}/{name}.lua")

    def source(self, name: str) -> str:
        """The full text sent to Redis for `name`: prelude (if any) and body."""
        return self.sources[name]

    @cached_property
    def sources(self) -> dict[str, str]:
        """Every script's full text, built once."""
        prelude = self.text(self.prelude) + "\n" if self.prelude else ""
        return {name: prelude + self.text(name) for name in self.names}

    def registered(self, client) -> dict:
        """redis-py Scripts of the family, registered once per client (`register_script` hashes
        locally; the first EVALSHA that misses loads the script)."""
        try:
            return self._registered[client]
        except KeyError:
            pass
        except TypeError:  # not weak-referenceable: register without caching
            return {n: client.register_script(s) for n, s in self.sources.items()}
        scripts = {n: client.register_script(s) for n, s in self.sources.items()}
        self._registered[client] = scripts
        return scripts


CORE = Family(Path(__file__).parent, ("transition", "update_existing", "with_account", "claim_due",
                                   "claim_queued"))


def source(name: str) -> str:
    """The text of a core script."""
    return CORE.source(name)


def register(client, name: str):
    """A redis-py Script of a core script bound to `client` (EVALSHA with automatic load)."""
    return client.register_script(source(name))

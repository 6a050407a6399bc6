"""`python -m workers`, with SIGKILLs on demand around the end of a generation (tests only).

A kill happens when the Redis counter `bk:kill:<point>` is decremented to 0 or more, so setting it
to n asks for n kills at that point:
- `before-finished`: after the terminal move (and the slot's release), before `Core.finished`:
  the step worker dies with the end not handed over;
- `after-finished`: right after `Core.finished` (the end handed over);
- `after-fire`: in the callback worker's `settle`, after the callbacks were enqueued, before RQ
  records the generation's job ended.
The patches are made at import, so the callback worker (a spawned child, which imports this
script again as `__mp_main__`) has them too.
"""

from __future__ import annotations

import os
import signal
import sys

from dispatcher import backend_events
from dispatcher.core import Core


def _take(r, point: str) -> bool:
    return r.decr(f"bk:kill:{point}") >= 0


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


_finished = Core.finished


def finished(self, generation_id, gen=None):
    current = gen if gen is not None else self.generations.find(generation_id)
    if current is not None and current.terminal and _take(self.r, "before-finished"):
        _die()
    _finished(self, generation_id, gen)
    if _take(self.r, "after-finished"):
        _die()


_fire = backend_events.fire


def fire(core, *args, **kwargs):
    out = _fire(core, *args, **kwargs)
    if _take(core.r, "after-fire"):
        _die()
    return out


Core.finished = finished
backend_events.fire = fire

if __name__ == "__main__":
    from dispatcher.ops.cli import main

    main(["worker", *sys.argv[1:]])

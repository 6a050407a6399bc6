"""`python -m dispatcher.sandbox --host 127.0.0.1 --port 8100`"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time

from .server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dispatcher.sandbox",
                                     description="Simulated upstream for Runway, PixVerse, MiniMax, Riffusion.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault dice")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process is gone (set by SandboxProcess so no orphan survives)")
    args = parser.parse_args(argv)
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    serve(args.host, args.port, seed=args.seed, log_level=args.log_level)


def _watch_parent(pid: int) -> None:
    while os.getppid() == pid:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    main()

"""The demo's child processes and ports: free ports, spawned children that die with the demo,
stopped by process group, and probes that tell when they answer."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys

import httpx


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int, taken: set[int]) -> int:
    if preferred not in taken and port_free(preferred):
        return preferred
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


def die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM it if the demo dies without cleaning up (SIGKILL)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def answers(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(url).status_code < 500
    except httpx.HTTPError:
        return False


def probe(url: str, token: str) -> int | str:
    """The status code `url` answers with the Bearer `token`, or the name of the error."""
    try:
        return httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def terminate(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the child's process group (it was started in its own session), then SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)

"""Running the sandbox: `serve` (blocking, in this process) and `SandboxProcess` (a child process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .app import build_app

_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `dispatcher` package


def _fast_options() -> dict[str, str]:
    opts = {"loop": "asyncio", "http": "h11"}
    try:
        import uvloop  # noqa: F401

        opts["loop"] = "uvloop"
    except ImportError:
        pass
    try:
        import httptools  # noqa: F401

        opts["http"] = "httptools"
    except ImportError:
        pass
    return opts


def serve(host: str = "127.0.0.1", port: int = 8100, *, seed: int | None = None,
          log_level: str = "warning") -> None:
    """Run the sandbox on host:port until interrupted (single process, asyncio)."""
    import uvicorn

    uvicorn.run(build_app(seed=seed), host=host, port=port, access_log=False, log_level=log_level,
                lifespan="off", server_header=False, date_header=False, **_fast_options())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class SandboxProcess:
    """`python -m dispatcher.sandbox` in a child process on a free loopback port.

    >>> with SandboxProcess() as sandbox:
    ...     httpx.get(f"{sandbox.url}/_sandbox/health")
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", *,
                 seed: int | None = None, startup_timeout: float = 20.0) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("sandbox not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        if self.process is not None:
            return self.url
        attempts = 1 if self.port is not None else 3
        error: Exception | None = None
        for _ in range(attempts):
            port = self.port if self.port is not None and attempts == 1 else free_port(self.host)
            try:
                self._spawn(port)
                return self.url
            except RuntimeError as exc:
                error = exc
        raise error  # type: ignore[misc]

    def _spawn(self, port: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "dispatcher.sandbox", "--host", self.host, "--port", str(port)]
        cmd += ["--parent-pid", str(os.getpid())]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        self.port = port
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/_sandbox/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        output = self._output()
        self.stop()
        self.port = None
        raise RuntimeError(f"sandbox did not start on port {port}:\n{output}")

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "SandboxProcess":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

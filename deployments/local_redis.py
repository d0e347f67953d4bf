"""A redis-server child process of one's own: for fault drills, benchmarks and tests that stop it.

``persistent`` runs it as production should: an append-only file fsynced on every write, so a
restart keeps the streams, consumer groups and completion records.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any


class RedisServer:
    def __init__(self, port: int, workdir: Path, *, persistent: bool = False) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._workdir = workdir
        self._persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *self._persistence,
             "--dir", str(self._workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open and nothing answers, like a hung server."""
        import signal

        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        import signal

        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_timeout=2)

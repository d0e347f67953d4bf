"""A training job that runs beside the service, for artifacts only the off-path parts need.

``coe serve --train-missing-reward`` (what ``make run`` uses) answers requests as soon as the
experts and a router are ready; the reward model, which only the learner's shadow evaluation
uses, is trained meanwhile by a child ``coe train reward`` at lower CPU priority. Its output is
relayed into the service's log line by line, with a prefix, and it is stopped with the service.
The learner picks the model up when it appears (``services.learner.shadow.RewardModelWatcher``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from typing import Sequence, TextIO

LINE_BREAKS = re.compile(rb"[\r\n]+")
PROGRESS_EVERY_S = "20"  # tqdm redraws a bar at most this often, so the relayed log stays readable
LOWEST_PRIORITY = 19  # Ray runs its workers, the Serve replicas among them, at nice 15: stay below them


class BackgroundJob:
    """One child process: started niced, relayed with a prefix, terminated on :meth:`stop`."""

    def __init__(self, label: str, argv: Sequence[str], *, niceness: int = LOWEST_PRIORITY, out: TextIO | None = None) -> None:
        self.label = label
        self._argv = list(argv)
        self._niceness = niceness
        self._out = out or sys.stdout
        self._process: subprocess.Popen[bytes] | None = None
        self._relay: threading.Thread | None = None

    def start(self) -> None:
        env = {**os.environ, "TQDM_MININTERVAL": PROGRESS_EVERY_S, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            self._argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the service, which then stops the job in order
            preexec_fn=lambda: os.nice(self._niceness),  # the request path keeps the CPU it needs
        )
        self._say(f"started in the background (pid {self._process.pid}, lower priority): {' '.join(self._argv)}")
        self._relay = threading.Thread(target=self._forward, name=f"relay-{self.label}", daemon=True)
        self._relay.start()

    def _forward(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        pending = b""
        for chunk in iter(lambda: process.stdout.read1(4096), b""):  # type: ignore[union-attr]
            *lines, pending = LINE_BREAKS.split(pending + chunk)
            for line in lines:
                if line.strip():
                    self._say(line.decode("utf-8", "replace").rstrip())
        if pending.strip():
            self._say(pending.decode("utf-8", "replace").rstrip())
        code = process.wait()
        if code == 0:
            self._say("finished")
        elif code < 0:
            self._say(f"stopped by signal {-code}")
        else:
            self._say(f"failed with exit code {code}; the service runs on without it")

    def _say(self, text: str) -> None:
        print(f"[{self.label}] {text}", file=self._out, flush=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout_s: float | None = None) -> int | None:
        if self._process is None:
            return None
        try:
            code = self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        if self._relay is not None:
            self._relay.join(timeout=5)
        return code

    def stop(self, timeout_s: float = 10.0) -> None:
        """Interrupt the job as Ctrl-C would, so its temporary files are removed; kill it if it lingers.

        Artifacts are written to a temporary folder and renamed, so a stopped job leaves none half-written.
        """
        if not self.running:
            return
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._relay is not None:
            self._relay.join(timeout=5)

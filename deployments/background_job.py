"""A training job that runs beside the service, for artifacts only the off-path parts need.

``coe serve --train-missing-reward`` (what ``make run`` uses) answers requests as soon as the
experts and a router are ready; the reward model, which only the learner's shadow evaluation
uses, is trained meanwhile by a child ``coe train reward``. Its output is relayed into the
service's log line by line, with a prefix, and it is stopped with the service. The learner picks
the model up when it appears (``services.learner.shadow.RewardModelWatcher``).

On two cores a training job slows answers even at the lowest priority: decoding is bound by
memory bandwidth, which no scheduler shares out (measured here: a 32-token answer took 31 s
instead of 2 s while the reward model trained at nice 19). So the job also *yields*: while the
service's own processes are busy it is paused (``SIGSTOP``), and it resumes once they have been
quiet for a few seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Sequence, TextIO

LINE_BREAKS = re.compile(rb"[\r\n]+")
PROGRESS_EVERY_S = "20"  # tqdm redraws a bar at most this often, so the relayed log stays readable
LOWEST_PRIORITY = 19  # Ray runs its workers, the Serve replicas among them, at nice 15: stay below them


class ServiceLoad:
    """How busy a service is: the CPU its process tree uses, leaving out one job's process group.

    ``coe serve`` starts Ray, so every replica is a descendant of its process; an idle service
    (Ray's own bookkeeping, the learner waiting on Redis) uses a small fraction of a core.
    """

    def __init__(self, root_pid: int, busy_cores: float = 0.5) -> None:
        import psutil

        self._root = psutil.Process(root_pid)
        self._busy_cores = busy_cores
        self._last: tuple[float, float] | None = None  # (clock, CPU seconds)

    def _cpu_seconds(self, excluded_group: int) -> float:
        import psutil

        total = 0.0
        for process in [self._root, *self._root.children(recursive=True)]:
            try:
                if os.getpgid(process.pid) == excluded_group:
                    continue
                times = process.cpu_times()
                total += times.user + times.system
            except (psutil.Error, ProcessLookupError):
                continue  # it ended between the listing and the reading
        return total

    def busy(self, excluded_group: int) -> bool:
        """Whether the service used more than ``busy_cores`` since the last call."""
        now, used = time.monotonic(), self._cpu_seconds(excluded_group)
        last, self._last = self._last, (now, used)
        if last is None or now <= last[0]:
            return False
        return (used - last[1]) / (now - last[0]) > self._busy_cores


class BackgroundJob:
    """One child process: started at the lowest priority, relayed with a prefix, paused while
    ``yield_to`` is busy, and interrupted on :meth:`stop`."""

    def __init__(
        self,
        label: str,
        argv: Sequence[str],
        *,
        yield_to: ServiceLoad | None = None,
        check_every_s: float = 0.5,
        resume_after_quiet_s: float = 3.0,
        out: TextIO | None = None,
    ) -> None:
        self.label = label
        self._argv = list(argv)
        self._yield_to = yield_to
        self._check_every_s = check_every_s
        self._resume_after_quiet_s = resume_after_quiet_s
        self._out = out or sys.stdout
        self._process: subprocess.Popen[bytes] | None = None
        self._relay: threading.Thread | None = None
        self._paused = False
        self._pauses = 0
        self._lock = threading.Lock()  # pausing and stopping must not interleave
        self._stopping = threading.Event()

    def start(self) -> None:
        env = {**os.environ, "TQDM_MININTERVAL": PROGRESS_EVERY_S, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            self._argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: Ctrl-C reaches the service, which stops it in order
            preexec_fn=lambda: os.nice(LOWEST_PRIORITY),
        )
        yielding = ", paused whenever the service is busy" if self._yield_to is not None else ""
        self._say(f"started in the background (pid {self._process.pid}, lowest priority{yielding}): {' '.join(self._argv)}")
        self._relay = threading.Thread(target=self._forward, name=f"relay-{self.label}", daemon=True)
        self._relay.start()
        if self._yield_to is not None:
            threading.Thread(target=self._yield, name=f"yield-{self.label}", daemon=True).start()

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
        paused = f" (it gave way to requests {self._pauses} times)" if self._pauses else ""
        if code == 0:
            self._say(f"finished{paused}")
        elif code < 0:
            self._say(f"stopped by signal {-code}")
        elif self._stopping.is_set():  # interrupted by ``stop``; code it was in (an import) turned Ctrl-C into an error
            self._say(f"stopped by signal {int(signal.SIGINT)} (it exited with code {code})")
        else:
            self._say(f"failed with exit code {code}; the service runs on without it")

    def _yield(self) -> None:
        """Pause the job while the service is busy; resume it after a quiet spell."""
        assert self._process is not None and self._yield_to is not None
        group = self._process.pid
        quiet_since = time.monotonic()
        while not self._stopping.wait(self._check_every_s) and self.running:
            busy = self._yield_to.busy(excluded_group=group)
            now = time.monotonic()
            if busy:
                quiet_since = now
            with self._lock:
                if self._stopping.is_set() or not self.running:
                    return
                if busy and not self._paused:
                    os.killpg(group, signal.SIGSTOP)
                    self._paused = True
                    self._pauses += 1
                    if self._pauses == 1:
                        self._say("paused while the service answers requests (and whenever it does again)")
                elif not busy and self._paused and now - quiet_since >= self._resume_after_quiet_s:
                    os.killpg(group, signal.SIGCONT)
                    self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

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
        self._stopping.set()
        if not self.running:
            return
        assert self._process is not None
        with self._lock:
            if self._paused:
                os.killpg(self._process.pid, signal.SIGCONT)  # a stopped process acts on no signal but this one
                self._paused = False
            self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._relay is not None:
            self._relay.join(timeout=5)

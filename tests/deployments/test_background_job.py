"""The background job of `coe serve --train-missing-reward`: it gives way while the service is busy.

Real processes stand on both sides: a "service" that burns a core while a flag file exists, and
a job that prints a counter every tenth of a second.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil

from deployments.background_job import BackgroundJob, ServiceLoad

BUSY_WHILE_FLAG = """
import os, sys, time
flag = sys.argv[1]
while True:
    if os.path.exists(flag):
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            pass
    else:
        time.sleep(0.05)
"""
COUNTER = """
import time
count = 0
while True:
    print(f"count {count}", flush=True)
    count += 1
    time.sleep(0.1)
"""


def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(0.05)


def test_the_job_pauses_while_the_service_is_busy_and_resumes_after(tmp_path: Path) -> None:
    flag = tmp_path / "busy"
    service = subprocess.Popen([sys.executable, "-c", BUSY_WHILE_FLAG, str(flag)])
    log_path = tmp_path / "job.log"
    log = log_path.open("w", encoding="utf-8")
    job = BackgroundJob("job", [sys.executable, "-c", COUNTER], yield_to=ServiceLoad(service.pid),
                        check_every_s=0.2, resume_after_quiet_s=1.0, out=log)

    def counted() -> int:
        return log_path.read_text(encoding="utf-8").count("count ")

    try:
        job.start()
        assert job.pid is not None
        eventually(lambda: counted() >= 5, "the job makes progress while the service is idle")
        assert not job.paused and psutil.Process(job.pid).nice() == 19

        flag.touch()  # a request arrives: the service uses a core
        eventually(lambda: job.paused, "the job is paused while the service is busy")
        assert psutil.Process(job.pid).status() == psutil.STATUS_STOPPED
        before = counted()
        time.sleep(0.8)
        assert counted() == before, "no progress while paused"
        assert "paused while the service answers requests" in log_path.read_text(encoding="utf-8")

        flag.unlink()  # the service is quiet again
        eventually(lambda: not job.paused, "the job resumes after a quiet spell")
        eventually(lambda: counted() > before + 3, "the job makes progress again")

        flag.touch()  # busy again, and the service stops while the job is paused
        eventually(lambda: job.paused, "the job is paused again")
        job.stop(timeout_s=5)
        assert not job.running, "a paused job is continued, so that it can act on the interrupt"
        assert job.wait(0) == -2  # ended by the SIGINT, not killed
    finally:
        job.stop()
        service.kill()
        service.wait()
        log.close()

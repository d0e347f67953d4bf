"""Run an expert's Python answer against unit tests in a locked-down child process.

The answer is untrusted code written by a small model: it may loop forever, allocate without
bound, open sockets or write anywhere. Each run gets

- a fresh temporary directory as its working directory, ``HOME`` and ``TMPDIR``, deleted after;
- an environment of its own (``PATH`` and the locale only): no secrets are inherited;
- ``python -I -S -B``: no site-packages, no user site, no ``PYTHON*`` variables, no bytecode files;
- resource limits (``resource.setrlimit``): CPU seconds, address space, file size, open files,
  no core dumps; and a wall-clock limit after which the whole process group is killed;
- a network namespace of its own where the kernel allows one (no interfaces but loopback, and
  that one down), and in any case an audit hook (``sys.addaudithook``, which cannot be removed)
  that refuses sockets, subprocesses, ``ctypes``, and file access outside the temporary directory
  and the standard library;
- an unprivileged user (``nobody``) when started as root.

The harness, not the answer, decides the verdict: it prints a token only it knew (taken out of
the environment before the answer runs) after every test passed, so an answer that exits early
or prints "passed" does not pass.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

TOKEN_VARIABLE = "COE_SANDBOX_TOKEN"
NOBODY = 65534

HARNESS = r'''
import os, resource, sys

PRELOADED = ("collections", "itertools", "functools", "math", "cmath", "re", "string", "statistics", "datetime",
             "json", "heapq", "bisect", "fractions", "decimal", "random", "typing", "dataclasses", "operator",
             "copy", "textwrap", "unicodedata", "calendar", "csv", "io", "enum", "array", "numbers", "socket", "encodings.idna")

def _confine(limits):
    workdir = os.getcwd()
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:  # a network namespace of our own: nothing to connect to
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
        if libc.unshare(CLONE_NEWNET) != 0 and os.geteuid() != 0:
            libc.unshare(CLONE_NEWUSER | CLONE_NEWNET)
    except Exception:
        pass  # the audit hook below still refuses sockets
    if os.geteuid() == 0:
        # Once unprivileged, modules under a private home cannot be imported: load the usual ones now.
        for name in PRELOADED:
            try:
                __import__(name)
            except ImportError:
                pass
        os.setgroups([])
        os.setgid(limits["nobody"])
        os.setuid(limits["nobody"])

    readable = tuple(os.path.realpath(p) + os.sep for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})
    inside = os.path.realpath(workdir) + os.sep
    refused = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
               "os.forkpty", "os.kill", "os.killpg", "ctypes.", "pty.", "winreg.", "webbrowser.", "urllib.Request")
    path_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink", "os.link",
                   "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move", "os.chdir",
                   "os.listdir", "os.scandir", "glob.glob"}

    def allowed(path, write):
        if isinstance(path, int):
            return True  # an already open descriptor
        if path is None:
            path = "."
        real = os.path.realpath(os.fsdecode(path)) + os.sep
        if real.startswith(inside):
            return True
        return not write and real.startswith(readable)

    def hook(event, args):
        if event.startswith(refused):
            raise PermissionError(f"the sandbox does not allow {event}")
        if event == "open":
            path, mode, flags = args
            write = (mode is not None and any(c in str(mode) for c in "wax+")) or bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if not allowed(path, write):
                raise PermissionError(f"the sandbox does not allow opening {path!r}")
        elif event in path_events:
            for path in args[:2]:
                if isinstance(path, (str, bytes, os.PathLike)) and not allowed(path, event not in {"os.listdir", "os.scandir", "glob.glob"}):
                    raise PermissionError(f"the sandbox does not allow {event} on {path!r}")

    sys.addaudithook(hook)

def _main():
    import json
    limits = json.loads(sys.argv[1])
    token = os.environ.pop("COE_SANDBOX_TOKEN")
    with open("solution.py", encoding="utf-8") as handle:
        solution = handle.read()
    with open("tests.py", encoding="utf-8") as handle:
        tests = handle.read()
    _confine(limits)
    namespace = {"__name__": "__main__"}
    exec(compile(solution, "solution.py", "exec"), namespace)
    exec(compile(tests, "tests.py", "exec"), namespace)
    sys.stdout.flush()
    sys.stdout.write("\n" + token + "\n")
    sys.stdout.flush()

_main()
'''


@dataclass(frozen=True)
class SandboxLimits:
    """What one run may use; the defaults fit a small function and its tests with room to spare."""

    wall_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 512
    file_bytes: int = 1_000_000
    output_bytes: int = 64_000


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    reason: str  # "passed", "timed out", "out of memory", or the last line of the error
    returncode: int | None
    stdout: str
    stderr: str


def _reason(returncode: int, stderr: str) -> str:
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timed out"
    if returncode == -signal.SIGXFSZ:
        return "wrote more than the file size limit"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit code {returncode}"
    if last.startswith("MemoryError"):
        return "out of memory"
    return last


def run_tests(solution: str, tests: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run ``solution`` then ``tests`` (assert statements) in the sandbox; pass means every test ran."""
    workdir = Path(tempfile.mkdtemp(prefix="coe-sandbox-"))
    try:
        (workdir / "solution.py").write_text(solution, encoding="utf-8")
        (workdir / "tests.py").write_text(tests, encoding="utf-8")
        (workdir / "harness.py").write_text(HARNESS, encoding="utf-8")
        if os.geteuid() == 0:
            os.chown(workdir, NOBODY, NOBODY)  # the answer runs as nobody and may write only here
        token = secrets.token_hex(16)
        settings = {
            "cpu_s": limits.cpu_s,
            "memory_bytes": limits.memory_mb * 1024 * 1024,
            "file_bytes": limits.file_bytes,
            "nobody": NOBODY,
        }
        environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(workdir), "TMPDIR": str(workdir), TOKEN_VARIABLE: token}
        # Output goes to files, which RLIMIT_FSIZE caps: a pipe would let an answer fill our memory.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", "harness.py", json.dumps(settings)],
                cwd=workdir,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group, killed as a whole
            )
            try:
                process.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return SandboxResult(False, "timed out", None, _read(out, limits), _read(err, limits))
            stdout, stderr = _read(out, limits), _read(err, limits)
        lines = stdout.rstrip("\n").splitlines()
        passed = process.returncode == 0 and bool(lines) and lines[-1] == token
        if passed:
            return SandboxResult(True, "passed", 0, "\n".join(lines[:-1]), stderr)
        reason = _reason(process.returncode, stderr) if process.returncode else "the answer ended before its tests ran"
        return SandboxResult(False, reason, process.returncode, stdout, stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _read(handle: IO[bytes], limits: SandboxLimits) -> str:
    handle.seek(0)
    return handle.read(limits.output_bytes).decode("utf-8", "replace")

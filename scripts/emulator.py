"""Start and stop the embedded AWS emulator (ministack), bound to loopback only.

An emulator never outlives the process that started it, however that process ends (SIGKILL,
pytest-timeout's os._exit, a crash): ministack runs in its own process group, together with
the function processes it starts, and a small watchdog process holds a pipe from the parent.
When the pipe closes, the watchdog kills the whole group. Nor does it leave files behind:
ministack unpacks each function process's code (tens of MB) into a directory of its own under
the temporary directory and never removes it when it is killed; its TMPDIR is a scratch
directory of this emulator's, removed when the group is gone (by `stop()` or the watchdog).
Without it every test run left gigabytes in /tmp, until the disk was full.

The scratch directory is memory-backed where the machine offers it (`/dev/shm` that may hold
executables and has room): every cold function process unpacks ~1,400 files, which takes about
0.25 s there against 1.4 s on a busy disk, and removing a long test run's scratch (tens of
thousands of files) takes a fraction of a second there against more than a minute on disk."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Optional

from chalicelib.domain.numbers import shown_number

ROOT = Path(__file__).resolve().parents[1]
EMULATOR_PYTHON = ROOT / ".venv-emulator" / "bin" / "python"
# How ministack's app is served: by uvicorn on httptools (scripts/emulator_server.py, in the
# emulator's virtualenv), or by ministack's own entry point (hypercorn on h11, about a third more
# of the emulator's CPU a request), kept for `python -m bench.emulator_requests` to compare.
SERVERS = ("uvicorn", "hypercorn")
DEFAULT_SERVER = SERVERS[0]
HOST = "127.0.0.1"
MEMORY_TMP = Path("/dev/shm")
# A memory-backed directory with less room than this is left alone: a long test run's function
# processes unpack a few GB, and a container's default /dev/shm (64 MB) is far too small.
MEMORY_TMP_MIN_FREE_BYTES = 4 * 1024**3

# Runs as `python -c WATCHDOG <pgid> <scratch>` with its stdin the read end of a pipe only the
# parent writes to. EOF on stdin means the parent is gone (or stopping the emulator): TERM, then
# KILL, the process group. It ends on its own once the group is gone, removing the scratch
# directory either way.
WATCHDOG = r"""
import os, select, shutil, signal, sys, time
pgid, scratch = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGINT, signal.SIG_IGN)
def alive():
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
def end():
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
while alive():
    ready, _, _ = select.select([sys.stdin], [], [], 1.0)
    if ready and not os.read(sys.stdin.fileno(), 4096):
        end()
        break
shutil.rmtree(scratch, ignore_errors=True)
"""


def scratch_parent(candidate: Path = MEMORY_TMP, min_free_bytes: int = MEMORY_TMP_MIN_FREE_BYTES) -> Optional[str]:
    """`candidate` when the function processes' code can live there: it exists, may be written
    and may hold executables (the packages' compiled extensions are loaded from it; Docker
    mounts /dev/shm `noexec`) and has `min_free_bytes` free; otherwise None, the system's
    temporary directory."""
    try:
        fs = os.statvfs(candidate)
    except OSError:
        return None
    if fs.f_flag & (os.ST_NOEXEC | os.ST_RDONLY) or not os.access(candidate, os.W_OK | os.X_OK):
        return None
    if fs.f_bavail * fs.f_frsize < min_free_bytes:
        return None
    return str(candidate)


class EmulatorError(RuntimeError):
    """The emulator did not start: its port is taken, it is not installed, it exited or never
    answered. The message is one line for a person."""


def port_taken(port: int) -> bool:
    """True when something already listens on HOST:`port` (SO_REUSEADDR, as a server binds:
    connections of an earlier run still closing do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Emulator:
    """One ministack process and its function processes, in a process group of their own that
    ends with `stop()` or with the process that called `start()`."""

    def __init__(
        self, port: int, log: Optional[IO[bytes]] = None, log_level: str = "INFO", inherit_output: bool = False,
        server: str = DEFAULT_SERVER,
    ) -> None:
        if server not in SERVERS:
            raise ValueError(f"server must be one of {', '.join(SERVERS)}, not {server!r}")
        self.server = server
        self.port = port
        self.endpoint = f"http://{HOST}:{port}"
        self._log = log
        self._log_level = log_level
        self._inherit_output = inherit_output
        self.process: Optional[subprocess.Popen] = None
        self._watchdog: Optional[subprocess.Popen] = None
        self.scratch: Optional[str] = None  # the emulator's TMPDIR while it runs

    def start(self, timeout_s: float = 30) -> "Emulator":
        """Start ministack and wait until it answers; raises EmulatorError (nothing left running)
        when it cannot: the port already taken (another `make run`, whose emulator would
        otherwise answer in its place), ministack missing, exited or silent for `timeout_s`."""
        if port_taken(self.port):
            raise EmulatorError(f"{HOST}:{self.port} is already in use (another `make run`?); stop what listens "
                                f"there or choose another port with GATEWAY_PORT")
        if not EMULATOR_PYTHON.exists():
            raise EmulatorError(f"{EMULATOR_PYTHON} is missing; run `make venv` first")
        self.scratch = tempfile.mkdtemp(prefix="jobpipe-emulator-", dir=scratch_parent())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBPIPE_"))},
            "TMPDIR": self.scratch,  # the function processes' unpacked code: removed with the emulator
            "BIND_HOST": HOST,  # never the 0.0.0.0 default
            "GATEWAY_PORT": str(self.port),
            "MINISTACK_HOST": HOST,
            "LOG_LEVEL": self._log_level,
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "1",
        }
        self.process = subprocess.Popen(
            self._command(),
            env=env,
            stdout=None if self._inherit_output else (self._log or subprocess.DEVNULL),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # Its own session too: a signal to the parent's process group must not take the
        # watchdog down before it has done its work. The pipe is not inheritable (Popen's
        # pipes are close-on-exec), so only this process holds the write end.
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(self.process.pid), self.scratch],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise EmulatorError(f"ministack exited with code {self.process.returncode} while starting "
                                    f"on {self.endpoint}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/_ministack/health", timeout=1):
                    pass
            except OSError:
                time.sleep(0.2)
                continue
            if self.process.poll() is None:
                return self
            # what answered is another process that took the port meanwhile
        self.stop()
        raise EmulatorError(f"ministack did not answer on {self.endpoint} within {shown_number(timeout_s)} s")

    def _command(self) -> list[str]:
        if self.server == "hypercorn":
            return [str(EMULATOR_PYTHON.parent / "ministack")]  # reads BIND_HOST, GATEWAY_PORT, LOG_LEVEL
        return [str(EMULATOR_PYTHON), str(ROOT / "scripts" / "emulator_server.py"), HOST, str(self.port),
                self._log_level]

    @property
    def process_group(self) -> Optional[int]:
        """ministack's process group (its function processes are in it too)."""
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """Stop ministack and every process of its group (the Lambda function processes)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self._watchdog is not None:
            # Closing the pipe is what a dying parent does: the watchdog finishes off whatever
            # of the group outlived ministack, then exits.
            self._watchdog.stdin.close()
            try:
                self._watchdog.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

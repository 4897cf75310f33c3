"""Start and stop the embedded AWS emulator (ministack), bound to loopback only."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import IO, Optional

ROOT = Path(__file__).resolve().parents[1]
MINISTACK = ROOT / ".venv-emulator" / "bin" / "ministack"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Emulator:
    """One ministack process. Stopped by its own process id (its Lambda workers die with it)."""

    def __init__(
        self, port: int, log: Optional[IO[bytes]] = None, log_level: str = "INFO", inherit_output: bool = False
    ) -> None:
        self.port = port
        self.endpoint = f"http://{HOST}:{port}"
        self._log = log
        self._log_level = log_level
        self._inherit_output = inherit_output
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout_s: float = 30) -> "Emulator":
        if not MINISTACK.exists():
            raise RuntimeError(f"{MINISTACK} is missing; run `make venv` first")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBPIPE_"))},
            "BIND_HOST": HOST,  # never the 0.0.0.0 default
            "GATEWAY_PORT": str(self.port),
            "MINISTACK_HOST": HOST,
            "LOG_LEVEL": self._log_level,
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "1",
        }
        self.process = subprocess.Popen(
            [str(MINISTACK)],
            env=env,
            stdout=None if self._inherit_output else (self._log or subprocess.DEVNULL),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ministack exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/_ministack/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"ministack did not answer on {self.endpoint} within {timeout_s:g} s")

    def stop(self) -> None:
        """Stop the process we started (and its process group: the Lambda worker processes)."""
        if self.process is None or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)

"""The `jobpipe` console script's start, run as pyproject.toml declares it, in a child process:
Ctrl-C or SIGTERM while the CLI is still importing what it needs (most of a short command's
time) ends as it does later, one line and exit 130 or 143, never a traceback."""
import os
import signal
import subprocess
import sys
import time
import tomllib

import pytest

from tests.unit.test_cli import ROOT

# Runs the console script's target as its generated wrapper does, an import of `slow` first
# announced (the marker file made) and then held for a minute: the signal lands inside it.
SLOW_IMPORT = """
import importlib.abc, pathlib, sys, time

class Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {slow!r}:
            pathlib.Path({marker!r}).touch()
            time.sleep(60)
        return None

sys.meta_path.insert(0, Slow())
sys.argv = ["jobpipe", *{argv!r}]
from {module} import {function}
sys.exit({function}())
"""


def console_script() -> tuple[str, str]:
    """(module, function) of the `jobpipe` console script pyproject.toml declares."""
    with open(ROOT / "pyproject.toml", "rb") as project:
        target = tomllib.load(project)["project"]["scripts"]["jobpipe"]
    module, _, function = target.partition(":")
    return module, function


def signaled_while_importing(slow, argv, signum, tmp_path):
    """(exit code, stderr) of `jobpipe ARGV` sent `signum` while it imports `slow`."""
    marker = tmp_path / "importing"
    module, function = console_script()
    script = SLOW_IMPORT.format(slow=slow, marker=str(marker), argv=argv, module=module, function=function)
    env = {**os.environ, "JOBPIPE_API_URL": "http://api.test", "JOBPIPE_TOKEN": "tok"}
    # SIGINT as a terminal leaves it (a test runner started in the background may ignore it).
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, f"{slow} was never imported"
            time.sleep(0.01)
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err.decode()


@pytest.mark.parametrize("signum, code, line", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("slow", ["requests", "rich.console"])
def test_a_signal_while_the_cli_imports_ends_it_in_one_line_never_a_traceback(slow, signum, code, line, tmp_path):
    """Ctrl-C in `jobpipe status ID`'s first half second, while the package imported the client
    (requests) and rich, printed a traceback ending in KeyboardInterrupt, and SIGTERM then killed
    it without a word: the handlers came after those imports. A later Ctrl-C was already one line."""
    assert signaled_while_importing(slow, ["status", "j-1"], signum, tmp_path) == (code, f"jobpipe: {line}\n")

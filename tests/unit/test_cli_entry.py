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
@pytest.mark.parametrize("slow", ["jobpipe_client.cli_parser", "requests", "rich.console"])
def test_a_signal_while_the_cli_imports_ends_it_in_one_line_never_a_traceback(slow, signum, code, line, tmp_path):
    """Ctrl-C in `jobpipe status ID`'s first half second, while the package imported the client
    (requests) and rich, printed a traceback ending in KeyboardInterrupt, and SIGTERM then killed
    it without a word: the handlers came after those imports. A later Ctrl-C was already one line."""
    assert signaled_while_importing(slow, ["status", "j-1"], signum, tmp_path) == (code, f"jobpipe: {line}\n")


# Runs the console script's target, then names on stderr the modules loaded by its end.
MODULES_LOADED = """
import atexit, sys
atexit.register(lambda: print("loaded:", " ".join(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["jobpipe", *{argv!r}]
from {module} import {function}
sys.exit({function}())
"""


def modules_loaded(argv):
    """(exit code, the modules `jobpipe ARGV` loaded) over an API URL nothing answers at."""
    module, function = console_script()
    env = {**os.environ, "JOBPIPE_API_URL": "http://127.0.0.1:9", "JOBPIPE_TOKEN": "tok"}
    process = subprocess.run([sys.executable, "-c", MODULES_LOADED.format(argv=argv, module=module, function=function)],
                             cwd=ROOT, env=env, capture_output=True, timeout=120)
    said = process.stderr.decode()
    return process.returncode, set(said.rpartition("loaded: ")[2].split())


@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["watch", "--help"], 0), (["--version"], 0),
                                        (["status"], 2), (["list", "--limit", "0"], 2)],
                         ids=["help", "command-help", "version", "missing-id", "bad-flag"])
def test_help_version_and_usage_errors_load_neither_requests_nor_rich(argv, code):
    """`jobpipe --help` or a mistyped flag took as long as a command (0.2 s, 0.03 of it Python's
    own start): the package loaded the client (requests) and rich, and the parser importlib's
    metadata, before the command line was read."""
    exited, loaded = modules_loaded(argv)
    assert exited == code
    assert not {name for name in loaded if name.partition(".")[0] in ("requests", "urllib3", "rich")}
    assert "importlib.metadata" in loaded if argv == ["--version"] else "importlib.metadata" not in loaded


def test_a_command_loads_what_it_runs_with():
    """The other side of the lazy imports: a command still gets its client and its console."""
    exited, loaded = modules_loaded(["status", "j-1"])
    assert exited == 3  # no answer at the URL
    assert {"requests", "rich.console", "jobpipe_client.client", "jobpipe_client.cli_commands"} <= loaded


def help_into(stdout, argv, unbuffered):
    """(exit code, stderr) of the console script's `jobpipe ARGV` with `stdout` as its fd 1 (None:
    closed), its stdout unbuffered (PYTHONUNBUFFERED=1, as many container images set) or not."""
    module, function = console_script()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    env.update({"PYTHONUNBUFFERED": "1"} if unbuffered else {})
    script = f"import sys; sys.argv = ['jobpipe', *{argv!r}]; from {module} import {function}; {function}()"
    process = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.PIPE,
                             preexec_fn=(lambda: os.close(1)) if stdout is None else None, timeout=120)
    return process.returncode, process.stderr.decode()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full to stand for a full disk")
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("argv", [["--help"], ["watch", "--help"], ["--version"]], ids=["help", "command-help", "version"])
def test_help_or_version_into_a_stdout_that_cannot_take_it_is_one_line_and_exit_2(argv, unbuffered):
    """`jobpipe --help > /dev/full` exited 0 without a word (argparse drops the write's error) or,
    its output buffered, 120 after 'Exception ignored ... OSError'; as any command's output, it
    is one line and exit 2. So is a closed stdout, where argparse sent the help to stderr."""
    with open("/dev/full", "wb") as full:
        assert help_into(full, argv, unbuffered) == (2, "jobpipe: cannot write stdout: No space left on device\n")
    assert help_into(None, argv, unbuffered) == (2, "jobpipe: cannot write stdout: it is closed\n")


def test_help_into_a_reader_gone_ends_quietly_as_141():
    """`jobpipe --help | head -0` ends as a command whose reader went away does."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        assert help_into(writer, ["--help"], unbuffered=False) == (141, "")
    finally:
        os.close(writer)


@pytest.mark.parametrize("module", ["jobpipe_client.cli", "jobpipe_client.cli_entry"])
def test_python_dash_m_runs_the_cli(module):
    """`python -m jobpipe_client.cli` ran the CLI before its start moved to cli_entry.py; it still
    does, as `python -m jobpipe_client.cli_entry` does."""
    env = {**os.environ, "JOBPIPE_API_URL": "http://127.0.0.1:9", "JOBPIPE_TOKEN": "tok"}
    process = subprocess.run([sys.executable, "-m", module, "status", "j-1"], cwd=ROOT, env=env,
                             capture_output=True, timeout=120)
    assert process.returncode == 3 and process.stderr.decode().startswith("jobpipe: the jobpipe API could not be reached")

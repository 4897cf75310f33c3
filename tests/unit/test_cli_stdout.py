"""The `jobpipe` CLI's stdout through the console it builds itself (cli_stdout.stdout_console), not
one a test hands it: a file or a pipe is never taken for a terminal, whatever the environment
says. No sockets: the API is the in-memory one; stdout is a real file descriptor."""
import io
import json
import os
import re
import subprocess
import sys

import pytest

from jobpipe_client import JobpipeClient
from jobpipe_client.cli import client_from, main
from jobpipe_client.cli_stdout import GuardedStdoutBytes, StdoutError, is_a_terminal, stdout_console
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession
from tests.unit.test_cli import ENV, ROOT, URL, Run

# What rich reads as "this is a terminal" although it is not.
TERMINAL_CLAIMS = [{"FORCE_COLOR": "1"}, {"TTY_COMPATIBLE": "1"}, {"TTY_INTERACTIVE": "1", "FORCE_COLOR": "1"}]


def run_on_stdout(argv, api, stdout, monkeypatch):
    """`main` with `stdout` as sys.stdout and no console given: the CLI builds its own."""
    def make_client(args, env):
        client_from(args, env)
        return JobpipeClient(URL, "tok", session=FakeSession({URL: api}))

    monkeypatch.setattr("sys.stdout", stdout)
    err = io.StringIO()
    code = main(argv, environ=ENV, err=err, make_client=make_client)
    stdout.flush()
    return Run(code, None, err.getvalue())


@pytest.fixture
def stdout_file(tmp_path):
    """A stdout that is a file, as `jobpipe ... > out` gets it; `.read()` is what was written."""
    path = tmp_path / "stdout"
    stream = open(path, "w", encoding="utf-8")
    stream.read_written = path.read_bytes
    yield stream
    stream.close()


@pytest.mark.parametrize("claims", TERMINAL_CLAIMS, ids=lambda c: ",".join(c))
def test_a_file_is_not_a_terminal_whatever_the_environment_says(claims, monkeypatch, stdout_file):
    for name, value in claims.items():
        monkeypatch.setenv(name, value)
    console = stdout_console(stdout_file)
    assert not is_a_terminal(stdout_file)
    assert (console.is_terminal, console.is_interactive, console.color_system) == (False, False, None)


@pytest.mark.parametrize("claims", TERMINAL_CLAIMS, ids=lambda c: ",".join(c))
def test_an_artifact_into_a_file_is_its_bytes_exactly_whatever_the_environment_says(claims, monkeypatch,
                                                                                     stdout_file):
    """`FORCE_COLOR=1 jobpipe artifact J data.csv > out.csv` rewrote the bytes (tabs expanded,
    \\r\\n made \\n, `:100:` an emoji): rich called the file a terminal, and the CLI showed it
    the text as a terminal is shown it."""
    for name, value in claims.items():
        monkeypatch.setenv(name, value)
    api = FakeApi()
    job = api.add("completed")
    data = "a\tb\r\nc\td\r\n:100: \x1b[31m\n".encode()
    api.add_artifact(job["id"], "data.csv", data, "text/csv")
    result = run_on_stdout(["artifact", job["id"], "data.csv"], api, stdout_file, monkeypatch)
    assert (result.code, result.err, stdout_file.read_written()) == (0, "", data)


def test_a_binary_artifact_into_a_file_is_written_not_refused_with_force_color(monkeypatch, stdout_file):
    monkeypatch.setenv("FORCE_COLOR", "1")
    api = FakeApi()
    job = api.add("completed")
    api.add_artifact(job["id"], "data.bin", b"\x00\x01\xffbinary", "application/octet-stream")
    result = run_on_stdout(["artifact", job["id"], "data.bin"], api, stdout_file, monkeypatch)
    assert (result.code, result.err, stdout_file.read_written()) == (0, "", b"\x00\x01\xffbinary")


@pytest.mark.parametrize("command", ["list", "status"])
def test_a_listing_into_a_file_is_plain_aligned_lines_with_force_color(command, monkeypatch, stdout_file):
    """`FORCE_COLOR=1 jobpipe list | awk ...` got ANSI colours and values cut to fit 80 columns."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    api = FakeApi()
    job = api.add("failed", type="demo.a-long-job-type-name",
                  error={"code": "demo_failure", "message": "a message long enough to be cut in a fitted table"})
    argv = ["list"] if command == "list" else ["status", job["id"]]
    result = run_on_stdout(argv, api, stdout_file, monkeypatch)
    written = stdout_file.read_written().decode()
    assert result.code == 0 and "\x1b" not in written
    header, line = written.splitlines()
    assert header.split() == ["id", "type", "status", "progress", "attempts", "created", "detail"]
    assert line.split()[:3] == [job["id"], "demo.a-long-job-type-name", "failed"]
    assert line.endswith("demo_failure: a message long enough to be cut in a fitted table")


@pytest.fixture
def stdout_terminal():
    """A stdout that is a terminal (a pseudo-terminal's end); `.read()` is what reached the
    terminal, its line ends as the terminal's driver made them (\\r\\n)."""
    controller, end = os.openpty()
    stream = open(end, "w", encoding="utf-8")

    def read_written():
        stream.flush()
        os.set_blocking(controller, False)
        pieces = []
        while True:
            try:
                piece = os.read(controller, 65536)
            except BlockingIOError:
                return b"".join(pieces).decode().replace("\r\n", "\n")
            pieces.append(piece)

    stream.read_written = read_written
    yield stream
    stream.close()
    os.close(controller)


def test_the_apis_text_on_a_terminal_is_its_own_characters_never_emoji(monkeypatch, stdout_terminal):
    """rich replaced emoji codes in what it drew: a text artifact's `ratio 1:100:2 :warning:`
    reached the terminal as `ratio 1💯2 ⚠`; so did a job id or a cancel's line holding one."""
    api = FakeApi()
    job = api.add("completed")
    api.add_artifact(job["id"], "notes.txt", b"ratio 1:100:2 ok :warning: :smile:\n", "text/plain")
    result = run_on_stdout(["artifact", job["id"], "notes.txt"], api, stdout_terminal, monkeypatch)
    assert stdout_console(stdout_terminal).is_terminal
    assert (result.code, result.err) == (0, "")
    assert stdout_terminal.read_written() == "ratio 1:100:2 ok :warning: :smile:\n"
    queued = api.add("queued")
    api.jobs[":fire:"] = {**queued, "id": ":fire:"}
    result = run_on_stdout(["cancel", ":fire:"], api, stdout_terminal, monkeypatch)
    assert (result.code, stdout_terminal.read_written()) == (0, ":fire: canceled\n")


# -- stdout's reader gone --------------------------------------------------------------------------

RUN_OVER_FAKE_API = """
import functools, sys
from jobpipe_client import JobpipeClient, cli
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession

api = FakeApi()
job = api.add("completed")
api.jobs["j1"] = {{**job, "id": "j1"}}
api.jobs["q1"] = {{**api.add("queued"), "id": "q1"}}
api.add_artifact("j1", "data.csv", b"a,b\\r\\n1,2\\r\\n", "text/csv")
session = FakeSession({{"http://api.test": api}})
cli.main = functools.partial(cli.main, make_client=lambda *_: JobpipeClient("http://api.test", "tok", session=session))
sys.argv = ["jobpipe", *{argv!r}]
cli.run()
"""


def run_console_script(argv, stdout):
    """`jobpipe ARGV` as the console script runs it (cli.run: its own stdout console, its exit
    code), in a child process over the in-memory API holding jobs `j1`, completed, with an
    artifact `data.csv`, and `q1`, queued, with `stdout` as its fd 1 (None: closed). (exit
    code, stderr)."""
    script = RUN_OVER_FAKE_API.format(argv=argv)
    close_stdout = (lambda: os.close(1)) if stdout is None else None
    process = subprocess.run([sys.executable, "-c", script], cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE,
                             preexec_fn=close_stdout, timeout=120)
    return process.returncode, process.stderr.decode()


SUBMIT = ["submit", "demo.steps", "--payload", '{"steps": 1, "step_ms": 0}']
SUBMITTED = r" \(job (\S+) was submitted: `jobpipe watch \1` follows it\)"


@pytest.mark.parametrize("argv", [["watch", "j1"], SUBMIT, ["cancel", "q1"], ["status", "j1"]],
                         ids=["watch", "submit", "cancel", "status"])
def test_a_reader_gone_before_the_first_line_ends_the_command_quietly_as_141(argv):
    """`jobpipe watch J | head -0`: rich's own broken-pipe handler exited 1, which for a watch
    means "a job failed"; `status` and `list` already ended 141 as the help says. A submit is
    not quiet: its job was made, and the id the reader never got is named on stderr (it was
    lost with the pipe)."""
    reader, writer = os.pipe()
    os.close(reader)  # no reader at all: the first write fails
    try:
        code, err = run_console_script(argv, writer)
    finally:
        os.close(writer)
    if argv is SUBMIT:
        assert code == 141 and re.fullmatch(
            f"jobpipe: stdout was closed before the job's id was written on it{SUBMITTED}\n", err), err
    else:
        assert (code, err) == (141, "")


BIG_ARTIFACT = """
import functools, sys
from jobpipe_client import JobpipeClient, cli
from jobpipe_client.cli_entry import run
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession

api = FakeApi()
api.jobs["j1"] = {**api.add("completed"), "id": "j1"}
api.add_artifact("j1", "big.bin", bytes(1024 * 1024), "application/octet-stream")
session = FakeSession({"http://api.test": api})
cli.main = functools.partial(cli.main, make_client=lambda *_: JobpipeClient("http://api.test", "tok", session=session))
sys.argv = ["jobpipe", "artifact", "j1", "big.bin"]
run()
"""


def test_an_unbuffered_artifact_whose_reader_goes_away_mid_write_ends_as_141():
    """`jobpipe artifact J big.bin | head -c 10` with PYTHONUNBUFFERED=1 (many container images
    set it) exited 0, "it was written": stdout's buffer is then the raw file, whose write took
    the part the pipe held and returned its count, which was dropped, so the rest was never
    tried and the reader's leaving never seen. Buffered, it ended 141, as the help says."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-c", BIG_ARTIFACT], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout.read(10) == bytes(10)  # the first piece is in the pipe: the write is under way
    process.stdout.close()
    err = process.stderr.read().decode()
    assert (process.wait(timeout=120), err) == (141, "")


class TakesAFew(io.RawIOBase):
    """A raw stdout that takes at most 3 bytes a write, or none (None: non-blocking and full)."""

    def __init__(self, full=False):
        self.taken, self.full = bytearray(), full

    def writable(self):
        return True

    def write(self, data):
        if self.full:
            return None
        self.taken += bytes(data[:3])
        return min(len(data), 3)


def test_bytes_stdout_takes_in_part_are_written_whole_or_refused_in_one_line():
    """With stdout unbuffered, a write that took part of an artifact's piece lost the rest, and
    one that took none (a non-blocking pipe with no room) lost it all, the command exiting 0."""
    raw = TakesAFew()
    stdout = GuardedStdoutBytes(raw)
    assert stdout.write(b"0123456789") == 10 and bytes(raw.taken) == b"0123456789"
    with pytest.raises(StdoutError, match="^cannot write stdout: Resource temporarily unavailable$"):
        GuardedStdoutBytes(TakesAFew(full=True)).write(b"0123456789")


# -- stdout that cannot be written -------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full to stand for a full disk")
@pytest.mark.parametrize("argv", [["list"], ["status", "j1", "--json"], ["artifact", "j1", "data.csv"], SUBMIT],
                         ids=["list", "status-json", "artifact", "submit"])
def test_stdout_on_a_full_disk_is_one_line_and_exit_2_never_a_traceback(argv):
    """`jobpipe list > /dev/full` ended in a traceback (OSError: No space left on device), and
    a submit's job id was lost with it: the job was made, and nothing said which."""
    with open("/dev/full", "wb") as full:
        code, err = run_console_script(argv, full)
    ending = SUBMITTED if argv is SUBMIT else ""
    assert code == 2 and re.fullmatch(f"jobpipe: cannot write stdout: No space left on device{ending}\n", err), err


@pytest.mark.parametrize("argv", [["status", "j1"], ["artifact", "j1", "data.csv"], SUBMIT],
                         ids=["status", "artifact", "submit"])
def test_a_closed_stdout_is_one_line_and_exit_2_and_a_submit_names_its_job(argv):
    """`jobpipe submit demo.steps >&-` submitted the job, then failed on Python's missing
    sys.stdout (AttributeError) without saying which job it made."""
    code, err = run_console_script(argv, None)
    ending = SUBMITTED if argv is SUBMIT else ""
    assert code == 2 and re.fullmatch(f"jobpipe: cannot write stdout: it is closed{ending}\n", err), err


def run_with_stderr_closed(argv):
    """(exit code, stdout) of the console script's `jobpipe ARGV` with fd 2 closed (`2>&-`)."""
    script = RUN_OVER_FAKE_API.format(argv=argv)
    process = subprocess.run([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             preexec_fn=lambda: os.close(2), timeout=120)
    return process.returncode, process.stdout.decode()


def test_with_stderr_closed_the_failure_line_never_lands_in_stdouts_data():
    """`jobpipe status j1 nope --json 2>&- | jq .` failed in jq: with stderr closed Python has no
    sys.stderr, and print(file=None) wrote `jobpipe: job nope not found` on stdout, after the
    JSON. With nowhere to say it, the exit code says it."""
    code, out = run_with_stderr_closed(["status", "j1", "nope", "--json"])
    assert code == 2 and [job["id"] for job in json.loads(out)] == ["j1"]
    assert run_with_stderr_closed(["status", "nope"]) == (2, "")  # the not-found line, not on stdout
    assert run_with_stderr_closed(["status"]) == (2, "")  # argparse's own refusal


# -- characters stdout cannot encode --------------------------------------------------------------

@pytest.mark.parametrize("encoding, text, shown", [
    ("ascii", "naïve ✓", "na\\xefve \\u2713"),
    ("cp1252", "done ✓", "done \\u2713"),
    ("utf-8", "bad \ud800 text", "bad \\ud800 text"),  # a lone surrogate, from a server that sent one
], ids=["ascii", "cp1252", "surrogate"])
@pytest.mark.parametrize("argv", [["status", "{id}"], ["list"], ["watch", "{id}", "--timeout", "0"]],
                         ids=lambda argv: argv[0])
def test_text_stdout_cannot_encode_is_printed_as_its_escape_never_a_traceback(argv, encoding, text, shown):
    """`PYTHONIOENCODING=ascii jobpipe status ID` (or a Windows console in cp1252) for a job whose
    message held `✓` ended in UnicodeEncodeError; so did any stdout for a lone surrogate."""
    api = FakeApi()
    job = api.add("running", progress={"percent": 10, "step": None, "message": text, "details": None,
                                       "updated_at": None})
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, newline="")
    err = io.StringIO()
    code = main([part.format(id=job["id"]) for part in argv], environ=ENV, out=stdout_console(stream), err=err,
                make_client=lambda *_: JobpipeClient(URL, "tok", session=FakeSession({URL: api})))
    stream.flush()
    assert code in (0, 4), err.getvalue()  # 4: the watch's --timeout 0 ran out, as it must
    assert shown in raw.getvalue().decode(encoding)

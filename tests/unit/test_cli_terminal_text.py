"""What the API says reaches a terminal as text, never as a command: a job's message, step,
error, type, scope or details come from handler code fed by tenant input, and an escape
sequence in them (OSC 52 writes the clipboard, CSI 2J clears the screen, a bare carriage
return overwrites the line) or rich markup is shown, not obeyed. --json stays the exact data."""
import json
import re

import pytest

from jobpipe_client.terminal_text import shown
from tests.support.fake_api import FakeApi
from tests.support.fake_http import make_response
from tests.unit.test_cli import run_cli

CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x07"
CLEAR = "\x1b[2J"
HOSTILE = f"done{CLIPBOARD}{CLEAR}\rall fine\x9b31m\u202eevil\x00"
MARKUP = "[bold red]boom[/] [link=https://evil.test]click[/link]"
# What rich itself writes on a terminal: colours and the live display's cursor moves.
RICH_OWN = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def hostile_job(api, status="failed"):
    return api.add(
        status=status, type=f"demo{CLEAR}.steps", attempts=1,
        progress={"percent": 40.0, "step": f"step{CLIPBOARD}", "message": f"{HOSTILE} {MARKUP}"},
        error={"code": f"boom{CLEAR}", "message": f"{HOSTILE} {MARKUP}"} if status == "failed" else None,
    )


def assert_harmless(text, escaped_whole=True, live=False):
    """No control character of the server's reaches the terminal: what is left once rich's
    own colour and cursor sequences (and, for a live display, its carriage returns) are taken
    out is plain text and line breaks."""
    assert CLEAR not in text
    plain = RICH_OWN.sub("", text.replace("\r", "") if live else text)
    assert not [c for c in plain if (ord(c) < 32 and c != "\n") or 0x7f <= ord(c) < 0xa0], repr(plain)
    assert "\u202e" not in plain
    if escaped_whole:  # a fitted table may wrap or cut it
        assert "\\x1b]52;c;" in plain, "the sequence is shown, escaped"


@pytest.mark.parametrize("text, expected", [
    ("a\x1b[2Jb", "a\\x1b[2Jb"),
    ("a\rb", "a\\rb"),
    ("a\x9b31m", "a\\x9b31m"),
    ("a\u202eb", "a\\u202eb"),
    ("line\none\ttab", "line one tab"),
    ("plain [bold]text[/] é ✓", "plain [bold]text[/] é ✓"),
])
def test_shown_escapes_control_characters_and_keeps_the_rest(text, expected):
    assert shown(text) == expected


@pytest.mark.parametrize("terminal", [False, True], ids=["line-per-change", "live-board"])
def test_watch_shows_a_hostile_message_and_error_as_text(terminal):
    api = FakeApi()
    job = hostile_job(api, status="running")
    api.script(job["id"], {"status": "failed", "version": 2,
                           "error": {"code": f"boom{CLEAR}", "message": f"{HOSTILE} {MARKUP}"}})
    result = run_cli(["watch", job["id"]], api, terminal=terminal)
    assert result.code == 1
    assert_harmless(result.out, live=terminal)
    assert "\\rall fine" in result.out, "a bare carriage return is shown, escaped"
    assert MARKUP in RICH_OWN.sub("", result.out), "rich markup is printed as it came"


@pytest.mark.parametrize("command", ["status", "list"])
@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_status_and_list_tables_show_hostile_values_as_text(command, terminal):
    api = FakeApi()
    job = hostile_job(api)
    result = run_cli([command, job["id"]] if command == "status" else [command], api, terminal=terminal)
    assert result.code == 0, result.err
    assert_harmless(result.out, escaped_whole=not terminal)


def test_a_refusal_line_shows_the_api_message_and_details_as_text():
    def refusing(method, url, **_):
        return make_response(method, url, 422, {"error": {
            "code": "invalid_payload", "message": f"payload is not valid{CLIPBOARD}",
            "details": [{"loc": ["payload", f"x{CLEAR}"], "msg": f"bad\r{MARKUP}"}]}})

    result = run_cli(["submit", "demo.steps"], server=refusing)
    assert result.code == 2 and len(result.err_lines) == 1
    assert_harmless(result.err)
    assert MARKUP in result.err


def test_a_message_laid_out_over_lines_is_one_tidy_line():
    """The API's text as a template left it (line breaks, indents, a trailing newline) is one
    line on stderr with single spaces, not a line with gaps and a trailing blank."""
    def refusing(method, url, **_):
        return make_response(method, url, 404, {"error": {
            "code": "job_not_found", "message": "no such job:\n\n    it may have expired\n"}})

    result = run_cli(["result", "j1"], server=refusing)
    assert (result.code, result.err) == (2, "jobpipe: refused: no such job: it may have expired (job_not_found)\n")


@pytest.mark.parametrize("argv", [["status", "--json"], ["list", "--json"], ["watch", "--json"]])
def test_json_output_stays_the_exact_data(argv):
    api = FakeApi()
    job = hostile_job(api)
    argv = [argv[0], job["id"], *argv[1:]] if argv[0] != "list" else argv
    result = run_cli(argv, api, terminal=True)
    data = json.loads(result.out)
    read = data[0] if isinstance(data, list) else data
    assert read["progress"]["message"] == f"{HOSTILE} {MARKUP}"
    assert read["error"]["message"] == f"{HOSTILE} {MARKUP}" and read["type"] == f"demo{CLEAR}.steps"

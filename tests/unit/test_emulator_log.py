"""A failing e2e test's report carries what the emulator logged while it ran
(tests/support/emulator_log.py)."""
from __future__ import annotations

from tests.support import emulator_log


def test_only_the_lines_written_since_the_offset_are_shown(tmp_path):
    log = tmp_path / "ministack.log"
    log.write_text("before the test\n")
    offset = emulator_log.size(log)
    with log.open("a") as out:
        out.write("[APIHandler] START\n[APIHandler] Task timed out after 30.00 seconds\n")
    assert emulator_log.written_since(log, offset) == "[APIHandler] START\n[APIHandler] Task timed out after 30.00 seconds"


def test_a_long_test_shows_its_last_lines_and_says_how_many_were_left_out(tmp_path):
    log = tmp_path / "ministack.log"
    log.write_text("".join(f"line {i}\n" for i in range(250)))
    shown = emulator_log.written_since(log, 0, max_lines=200).splitlines()
    assert shown[0] == f"(50 earlier lines of {log} left out)"
    assert shown[1:] == [f"line {i}" for i in range(50, 250)]


def test_a_long_line_is_cut_and_undecodable_bytes_do_not_stop_the_report(tmp_path):
    log = tmp_path / "ministack.log"
    log.write_bytes(b"x" * 1000 + b"\n\xff\xfe broken\n")
    first, second = emulator_log.written_since(log, 0, max_line_chars=10).splitlines()
    assert first == "x" * 10 + " …"
    assert second.endswith(" broken")


def test_no_log_yet_or_nothing_written_is_an_empty_section(tmp_path):
    missing = tmp_path / "missing.log"
    assert emulator_log.size(missing) == 0
    assert emulator_log.written_since(missing, 0) == ""
    log = tmp_path / "ministack.log"
    log.write_text("old\n")
    assert emulator_log.written_since(log, emulator_log.size(log)) == ""

"""`make bench` keeps the emulator's log only for a run that failed, and says where it is."""
import subprocess

import pytest

import bench.__main__ as bench_main


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_main.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(bench_main.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0))
    return tmp_path


def test_a_run_that_measured_leaves_nothing_behind(scratch, monkeypatch):
    def measure(server, build, log):
        log.write(b"emulator output\n")
        return {"measured": True}

    monkeypatch.setattr(bench_main, "_measure", measure)

    assert bench_main.run() == {"measured": True}
    assert list(scratch.iterdir()) == []


def test_a_failed_run_keeps_the_log_and_names_it(scratch, monkeypatch, capsys):
    def measure(server, build, log):
        log.write(b"emulator output\n")
        raise RuntimeError("deploy failed")

    monkeypatch.setattr(bench_main, "_measure", measure)

    with pytest.raises(RuntimeError, match="deploy failed"):
        bench_main.run()
    [kept] = scratch.iterdir()
    log = kept / "ministack.log"
    assert log.read_bytes() == b"emulator output\n"
    assert capsys.readouterr().err == f"make bench: the emulator's log is kept in {log}\n"

"""`make run` (scripts/run_local.py) when things go wrong before the stack is ready: the port is
taken, GATEWAY_PORT is bad, the emulator dies or the deploy fails, Ctrl-C comes. Each ends with
one line on stderr and a non-zero exit, no traceback, and the emulator it started stopped."""
from __future__ import annotations

import os
import signal
import socket

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from scripts import emulator as emulator_module
from scripts import run_local
from scripts.emulator import Emulator, EmulatorError, HOST, scratch_parent

SECRET = "r" * 40


class FakeProcess:
    def __init__(self) -> None:
        self.returncode = None

    def poll(self):
        return self.returncode


class FakeEmulator:
    """Records what run_local does with it; `on_start` runs inside start()."""

    made: list["FakeEmulator"] = []

    def __init__(self, port, **kwargs) -> None:
        self.port = port
        self.endpoint = f"http://{HOST}:{port}"
        self.process = FakeProcess()
        self.started = self.stopped = False
        FakeEmulator.made.append(self)

    on_start = None

    def start(self):
        self.started = True
        if FakeEmulator.on_start:
            FakeEmulator.on_start(self)
        return self

    def stop(self):
        self.stopped = True


@pytest.fixture
def run(monkeypatch, tmp_path):
    """run_local.main() with a fake emulator; returns (exit code, stderr lines, the emulator)."""
    for name in ("AWS_ENDPOINT_URL", "GATEWAY_PORT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOBPIPE_AUTH_SECRET", SECRET)
    monkeypatch.setattr(run_local, "STATE", tmp_path / ".local")
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # the test process keeps its own handlers
    FakeEmulator.made, FakeEmulator.on_start = [], None
    monkeypatch.setattr(run_local, "Emulator", FakeEmulator)

    def main(capsys):
        with pytest.raises(SystemExit) as exited:
            run_local.main()
        err = capsys.readouterr().err
        return exited.value.code, err.strip("\n").split("\n"), (FakeEmulator.made or [None])[0]

    return main


def raising(error):
    def fail(*args, **kwargs):
        raise error
    return fail


def test_a_port_that_is_taken_is_refused_before_ministack_starts(monkeypatch):
    monkeypatch.setattr(emulator_module.subprocess, "Popen", raising(AssertionError("must not start")))
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmulatorError, match=f"^{HOST}:{port} is already in use \\(another `make run`\\?\\); "
                                                f".* GATEWAY_PORT$"):
            Emulator(port).start()


def test_the_emulator_unpacks_functions_in_a_memory_backed_directory_only_where_one_fits(monkeypatch, tmp_path):
    assert scratch_parent(tmp_path, min_free_bytes=0) == str(tmp_path)
    assert scratch_parent(tmp_path / "missing", min_free_bytes=0) is None
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    assert scratch_parent(tmp_path, min_free_bytes=free + 2**30) is None, "a container's 64 MB /dev/shm"
    real = os.statvfs
    for flag in (os.ST_NOEXEC, os.ST_RDONLY):  # compiled extensions cannot be loaded from noexec
        monkeypatch.setattr(emulator_module.os, "statvfs",
                            lambda path, flag=flag: os.statvfs_result((*real(path)[:8], real(path).f_flag | flag, 255)))
        assert scratch_parent(tmp_path, min_free_bytes=0) is None


def test_make_run_on_a_taken_port_ends_in_one_line_exit_1(monkeypatch, capsys, run):
    monkeypatch.setattr(run_local, "Emulator", Emulator)
    monkeypatch.setattr(run_local, "deploy", raising(AssertionError("must not deploy")))
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("GATEWAY_PORT", str(port))
        code, lines, _ = run(capsys)
    assert code == 1
    assert lines == [f"make run: {HOST}:{port} is already in use (another `make run`?); stop what listens there "
                     f"or choose another port with GATEWAY_PORT"]


@pytest.mark.parametrize("value", ["abc", "0", "70000", "45 66"])
def test_a_bad_gateway_port_ends_the_run_before_anything_starts(value, monkeypatch, capsys, run):
    monkeypatch.setenv("GATEWAY_PORT", value)
    code, lines, emulator = run(capsys)
    assert code == 2 and emulator is None
    assert lines == [f"make run: GATEWAY_PORT must be a port number from 1 to 65535 (got {value!r})"]
    # `make run`'s check before the build (scripts.stack_config) says the same.
    from scripts import stack_config

    with pytest.raises(SystemExit) as exited:
        stack_config.main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == lines


@pytest.mark.parametrize("stack", ["", "2nd", "my_stack", "a" * 129])
def test_a_stack_name_cloudformation_refuses_ends_the_run_before_anything_starts(stack, monkeypatch, capsys, run):
    """JOBPIPE_STACK is the stack's name: one CloudFormation refuses failed the deploy after the
    emulator had started and the code was uploaded."""
    from scripts import run_local, stack_config

    monkeypatch.setattr(run_local, "STACK", stack)
    code, lines, emulator = run(capsys)
    assert code == 2 and emulator is None
    assert lines == ["make run: JOBPIPE_STACK must be a stack name: a letter, then letters, digits and hyphens, "
                     f"at most 128 in all (got {stack[:80]!r})"]
    with pytest.raises(SystemExit) as exited:  # `make run`'s check before the build says the same
        stack_config.main()
    assert exited.value.code == 2 and capsys.readouterr().err.splitlines() == lines


def test_an_emulator_that_does_not_start_ends_in_one_line(monkeypatch, capsys, run):
    FakeEmulator.on_start = raising(EmulatorError("ministack exited with code 1 while starting on http://x"))
    code, lines, emulator = run(capsys)
    assert code == 1 and lines == ["make run: ministack exited with code 1 while starting on http://x"]
    assert emulator.stopped


def test_an_emulator_that_dies_during_the_deploy_is_named_instead_of_a_traceback(monkeypatch, capsys, run):
    def deploy(*args, **kwargs):
        FakeEmulator.made[0].process.returncode = -9
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:4566/")

    monkeypatch.setattr(run_local, "deploy", deploy)
    code, lines, emulator = run(capsys)
    assert code == 1 and lines[-1] == "make run: ministack exited with code -9 before the stack was ready"
    assert emulator.stopped


def test_a_failure_while_preparing_the_functions_ends_in_one_line(monkeypatch, capsys, run):
    monkeypatch.setattr(run_local, "deploy", lambda *a, **k: {"ApiUrl": "http://127.0.0.1:9/api"})
    monkeypatch.setattr(run_local, "prepare", raising(ClientError(
        {"Error": {"Code": "ResourceNotFoundException", "Message": "Function not found"}}, "PutFunctionConcurrency")))
    code, lines, emulator = run(capsys)
    assert code == 1 and len(lines) == 1 and emulator.stopped
    assert lines[0].startswith("make run: the stack did not deploy: An error occurred (ResourceNotFoundException)")


@pytest.mark.parametrize("when", ["start", "deploy"])
def test_ctrl_c_before_the_stack_is_ready_exits_130_in_one_line_with_the_emulator_stopped(
        when, monkeypatch, capsys, run):
    if when == "start":
        FakeEmulator.on_start = raising(KeyboardInterrupt)
    monkeypatch.setattr(run_local, "deploy", raising(KeyboardInterrupt))
    code, lines, emulator = run(capsys)
    assert code == 130 and emulator.stopped
    assert lines == ["make run: interrupted before the stack was ready; stopping the emulator"]


def test_an_unknown_server_is_refused_before_anything_starts():
    with pytest.raises(ValueError, match="^server must be one of uvicorn, hypercorn, not 'gunicorn'$"):
        Emulator(0, server="gunicorn")


def test_a_stack_the_deploy_refuses_for_its_parameters_ends_in_one_line_exit_2(monkeypatch, capsys, run):
    """What the deploy itself refuses of the stack's name and parameters (a JOBPIPE_STACK so long
    that a function's environment could pass Lambda's 4 KB; an update at AWS_ENDPOINT_URL
    whose values break a rule with those its stack keeps) ended `make run` in a traceback."""
    from scripts import run_local
    from scripts.lambda_environment import environment_problem
    from scripts.stack_config import StackConfigError
    from tests.support.infra import packaged_template

    refused = environment_problem(packaged_template(), "j" * 128, "us-east-1", {"AuthSecret": "****"})
    assert refused
    monkeypatch.setattr(run_local, "deploy", raising(StackConfigError(refused)))
    code, lines, emulator = run(capsys)
    assert code == 2 and lines[-1] == f"make run: the stack was not deployed: {refused}"
    assert emulator.stopped

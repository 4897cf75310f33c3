"""What every tier shares: a test that crashed its xdist worker is not run again.

pytest-timeout's thread method ends a worker's process when a test outlives its timeout, and
xdist replaces the worker. Under `--dist loadfile` (the functional and e2e tiers) xdist hands
the crashed worker's whole file back to the queue, the crashed test included, so its
replacement runs that test again, hangs on it again and crashes: up to eight times, 300 s and
(in e2e) a stack's deploy each, before the run ends. The controller writes each crashed test's
id to a file its workers inherit the path of; a worker skips a test named there, saying why,
and the run goes on with the rest of the file. The crash itself is the test's failure."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

CRASHED_TESTS = "JOBPIPE_CRASHED_TESTS"  # the file's path, set by the controller for its workers


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist"):
        return
    handle, path = tempfile.mkstemp(prefix="jobpipe-crashed-tests-")
    os.close(handle)
    os.environ[CRASHED_TESTS] = path  # the workers are started after configure: they inherit it
    config.stash[_CRASHED_PATH] = path


def pytest_unconfigure(config: pytest.Config) -> None:
    path = config.stash.get(_CRASHED_PATH, None)
    if path is not None:
        os.environ.pop(CRASHED_TESTS, None)
        Path(path).unlink(missing_ok=True)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: object) -> None:
    path = os.environ.get(CRASHED_TESTS)
    if path:
        with open(path, "a", encoding="utf-8") as crashed:
            crashed.write(crashitem + "\n")


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures (an e2e stack's deploy) are set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    path = os.environ.get(CRASHED_TESTS)
    if path and item.nodeid in _crashed(path):
        pytest.skip("crashed an xdist worker already (its failure is reported): not run again")


def _crashed(path: str) -> set[str]:
    try:
        return set(Path(path).read_text(encoding="utf-8").splitlines())
    except OSError:
        return set()


_CRASHED_PATH = pytest.StashKey[str]()

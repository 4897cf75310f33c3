"""The suite's own runs: a test that hangs fails once and the run goes on."""
from __future__ import annotations

from pathlib import Path

pytest_plugins = ("pytester",)

SHARED_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def test_a_test_that_crashed_its_worker_is_not_run_again_and_the_rest_of_its_file_runs(pytester):
    """pytest-timeout's thread method ends the worker; under `--dist loadfile` xdist gives the
    file back, the hanging test included, and without the shared conftest each replacement
    worker ran it again and crashed too (nine failures, the run ending only at xdist's limit)."""
    pytester.makeconftest(SHARED_CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_hangs="""
            import time
            import pytest

            @pytest.mark.timeout(1, method="thread")
            def test_hangs():
                time.sleep(120)

            def test_after_it():
                pass
        """,
        test_other="""
            def test_other():
                pass
        """,
    )
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(failed=1, passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*crashed while running 'test_hangs.py::test_hangs'*",
                                 "*crashed an xdist worker already*"])

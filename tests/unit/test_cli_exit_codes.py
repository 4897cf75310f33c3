"""`jobpipe`'s exit code and its one line on stderr for each error a command can end with, as
the help lists them: one command (cancel) over a client whose call raises the error."""
import io

import pytest
from rich.console import Console

from jobpipe_client.cli import Terminated, interrupted_submit_line, main, outcome_unknown_line, refusal_line
from jobpipe_client.cli_options import UsageError
from jobpipe_client.cli_stdout import StdoutError
import jobpipe_client.errors as errors
from tests.unit.test_cli import ENV, URL

OUTAGE = errors.JobpipeUnavailableError([(URL, "timed out after 10 s")], may_have_arrived=True)


def terminated_submit():
    try:
        raise errors.SubmitInterruptedError("order-1") from Terminated()
    except errors.SubmitInterruptedError as exc:
        return exc


def cases():
    refused = errors.JobpipeClientError(404, "job_not_found", "job j-1 does not exist")
    unknown = errors.SubmitOutcomeUnknownError(OUTAGE, "order-1")
    interrupted = errors.SubmitInterruptedError("order-1")
    gone = errors.ResultGoneError({"id": "j-1", "status": "completed"})
    late = errors.WaitTimeoutError(5, {})
    unusable = errors.JobpipeAnswerError("POST", URL, "not JSON")
    terminated = terminated_submit()
    return [
        (UsageError("--json and --watch need a job"), 2, "--json and --watch need a job"),
        (errors.JobpipeInputError("job id is empty"), 2, "job id is empty"),
        (StdoutError("stdout could not be written"), 2, "stdout could not be written"),
        (refused, 2, refusal_line(refused)),
        (gone, 1, str(gone)),
        (unknown, 3, outcome_unknown_line(unknown)),
        (OUTAGE, 3, str(OUTAGE)),
        (late, 4, str(late)),
        (unusable, 3, str(unusable)),
        (interrupted, 130, interrupted_submit_line(interrupted)),
        (terminated, 143, interrupted_submit_line(terminated, "terminated")),
        (Terminated(), 143, "terminated"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ]


class RaisingClient:
    def __init__(self, error):
        self.error = error

    def cancel(self, job_id):
        raise self.error


def run_cancel(error):
    out, err = io.StringIO(), io.StringIO()
    code = main(["cancel", "j-1"], environ=ENV, out=Console(file=out), err=err,
                make_client=lambda args, env: RaisingClient(error))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("error, code, line", cases(), ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else "")
def test_each_error_a_command_ends_with_is_its_exit_code_and_one_line(error, code, line):
    assert run_cancel(error) == (code, "", f"jobpipe: {' '.join(line.split())}\n")


def test_a_reader_gone_from_a_command_that_made_no_job_is_raised_quietly():
    with pytest.raises(BrokenPipeError):
        main(["cancel", "j-1"], environ=ENV, out=Console(file=io.StringIO()), err=(err := io.StringIO()),
             make_client=lambda args, env: RaisingClient(BrokenPipeError()))
    assert err.getvalue() == ""


def test_a_refusals_line_names_each_problem_whatever_shape_its_loc_has():
    """docs: a `loc` that is one value rather than a list is that value; a problem with no
    `loc` (or a null one) is its message alone; no details add nothing, not `None`."""
    refused = errors.JobpipeClientError(422, "invalid_payload", "payload is not valid", details=[
        {"loc": ["steps", 0], "msg": "m1"}, {"loc": "step_ms", "msg": "m2"}, {"loc": None, "msg": "m3"},
        {"msg": "m4"}])
    assert refusal_line(refused) == "refused: payload is not valid (invalid_payload): steps.0: m1; step_ms: m2; m3; m4"
    for none in (None, [], {}):
        assert errors.describe_details(none) == ""
        assert refusal_line(errors.JobpipeClientError(400, "invalid_request", "no", details=none)) == \
            "refused: no (invalid_request)"

"""Numbers the docs give an operator, read against the code, the template and each other: a
figure stated in two places, or worked from another, cannot drift from its source unseen."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def doc(name: str) -> str:
    return (ROOT / name).read_text()


def row(text: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is `first_cell` (bold marks dropped)."""
    for line in text.splitlines():
        cells = [c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r}")


def number(text: str) -> float:
    return float(re.match(r"[\d,.]+", text).group().replace(",", ""))


def test_the_jobs_tables_write_units_agree_across_docs_capacity():
    """The base table's WRU a job, summed in the table of writes, is the one the table totals
    and the list of limits divide by: a claim that stopped being a transaction (4 WRU to 1) left
    14 there, and the jobs table's limit at 2,850 jobs/s instead of about 3,600."""
    capacity = doc("docs/capacity.md")
    _, base, indexes, total = row(capacity, "jobs table")
    per_job = int(base)
    assert per_job + int(indexes) == int(total)
    _, per_job_there, at_1000, at_10000 = row(capacity, "jobs, base table")
    assert int(per_job_there) == per_job
    assert number(at_1000) == per_job * 1_000 and number(at_10000) == per_job * 10_000
    binds = next(line for line in capacity.splitlines() if "jobs table 40,000 WRU/s" in line)
    assert f"({per_job} a job)" in binds, binds
    rate = number(binds.split("|")[2].strip())
    assert 40_000 / per_job - 100 <= rate <= 40_000 / per_job, binds


def test_the_error_text_a_job_keeps_is_the_one_the_docs_give():
    """A failed attempt's error keeps MAX_ERROR_MESSAGE_CHARS of its text; jobs.md said nothing
    of it (and read as if a fail_job message kept 300,000 characters), reliability.md that the
    full text stays on the job."""
    from chalicelib.defaults import MAX_ERROR_MESSAGE_CHARS
    from chalicelib.defaults import MAX_EVENT_TEXT_CHARS

    assert MAX_ERROR_MESSAGE_CHARS <= MAX_EVENT_TEXT_CHARS
    stated = f"first {MAX_ERROR_MESSAGE_CHARS:,} characters"
    jobs = " ".join(doc("docs/jobs.md").split())
    assert f"`error.message` keeps the {stated} of the exception's text" in jobs
    assert f"its message is the error's {stated}" in jobs
    reliability = " ".join(doc("docs/reliability.md").split())
    assert f"an error's text is kept to its {stated} there" in reliability


def test_a_jobs_longest_run_is_the_one_the_code_and_the_functions_allow():
    """jobs.md's bound on `timeout_s` is the registry's, from the worker functions' timeout
    (.chalice/config.json) and its margins; and no page speaks of a job running longer (a quick
    job "behind a 20-minute one", when none can run past 870 s)."""
    import json

    from chalicelib.defaults import CLAIM_HEADROOM_S, INVOCATION_MARGIN_S, MAX_JOB_TIMEOUT_S, WORKER_TIMEOUT_S

    functions = json.loads(doc(".chalice/config.json"))["stages"]["dev"]["lambda_functions"]
    assert {f["lambda_timeout"] for name, f in functions.items() if name.startswith("job_worker")} == {WORKER_TIMEOUT_S}
    jobs = " ".join(doc("docs/jobs.md").split())
    assert (f"`timeout_s` is at most {MAX_JOB_TIMEOUT_S} s: an attempt runs inside one worker invocation "
            f"({WORKER_TIMEOUT_S} s) that keeps {INVOCATION_MARGIN_S} s to record the outcome and "
            f"{CLAIM_HEADROOM_S} s for the invocation's start") in jobs
    for page in ("docs/jobs.md", "docs/capacity.md", "docs/reliability.md", "docs/performance.md"):
        for minutes in re.findall(r"(\d+)-minute (?:job|one)\b", " ".join(doc(page).split())):
            assert int(minutes) * 60 <= MAX_JOB_TIMEOUT_S, (page, f"{minutes}-minute job")


def test_each_bounded_parameters_refusal_states_its_bounds():
    """CloudFormation answers a parameter that breaks its rule with its ConstraintDescription:
    the operator's only word on the bound. ErpWebhookUrl's said the URL's host may have 1024
    characters, where MaxLength bounds the whole URL."""
    import json

    parameters = json.loads(doc("infra/resources.json"))["Parameters"]
    for name, parameter in parameters.items():
        if "MaxLength" not in parameter:
            continue
        said = parameter["ConstraintDescription"]
        low, high = parameter.get("MinLength"), parameter["MaxLength"]
        assert (f"{low} to {high} characters" if low else f"at most {high} characters") in said or \
            f"32 to {high} characters" in said, (name, said)
    url = parameters["ErpWebhookUrl"]["ConstraintDescription"]
    assert f"URL of at most {parameters['ErpWebhookUrl']['MaxLength']} characters" in url, url


def test_the_worker_batch_and_reconciler_page_numbers_are_the_ones_the_docs_give():
    """The worker's batch size, its batch-mates' short lease and hand-back wait, and the due
    index's page size are defaults (chalicelib/defaults.py) that jobs.md, reliability.md and
    performance.md quote in numbers."""
    from chalicelib.defaults import BATCH_MATE_LEASE_S, BATCH_MATE_WAIT_S, DUE_PAGE, WORKER_BATCH_SIZE

    words = {10: "ten"}
    jobs = " ".join(doc("docs/jobs.md").split())
    assert f"The worker takes up to {words[WORKER_BATCH_SIZE]} messages per invocation" in jobs
    assert f"hidden for a {BATCH_MATE_LEASE_S} s short lease (`BATCH_MATE_LEASE_S`" in jobs
    assert f"delivered again {BATCH_MATE_LEASE_S} s after the batch began" in jobs
    wait = f"{BATCH_MATE_WAIT_S:g}"
    assert f"once the batch has run {wait} s (`BATCH_MATE_WAIT_S`)" in jobs
    assert f"starts about {wait} s late" in jobs
    reliability = " ".join(doc("docs/reliability.md").split())
    assert f"reads the index {DUE_PAGE} jobs a page (`DUE_PAGE`)" in reliability
    assert f"(up to {words[WORKER_BATCH_SIZE]}) were hidden for a {BATCH_MATE_LEASE_S} s short lease" in reliability
    assert f"delivered again {BATCH_MATE_LEASE_S} s after the batch began" in reliability
    performance = " ".join(doc("docs/performance.md").split())
    assert f"its {BATCH_MATE_LEASE_S} s short lease" in performance
    for migrating_line in doc("docs/migrating.md").splitlines():
        if "`WORKER_BATCH_SIZE`" in migrating_line:
            assert f"up to {words[WORKER_BATCH_SIZE]} jobs per invocation" in migrating_line


def test_the_job_retry_base_is_one_number_in_code_template_and_docs():
    """The first retry's base (2 s) was written in the settings and again in the lifecycle; it
    is JOB_RETRY_BASE_S, the template's RetryBaseSeconds default and the one jobs.md works its
    schedule from."""
    import inspect
    import json

    from chalicelib.defaults import JOB_RETRY_BASE_S
    from chalicelib.lifecycle import JobLifecycle
    from chalicelib.settings import Settings

    assert Settings.model_fields["retry_base_s"].default == JOB_RETRY_BASE_S
    assert inspect.signature(JobLifecycle).parameters["retry_base_s"].default == JOB_RETRY_BASE_S
    parameters = json.loads(doc("infra/resources.json"))["Parameters"]
    assert parameters["RetryBaseSeconds"]["Default"] == JOB_RETRY_BASE_S
    b = JOB_RETRY_BASE_S
    jobs = " ".join(doc("docs/jobs.md").split())
    assert f"`RetryBaseSeconds` ({b} s: {b // 2}-{b} s, then {b}-{2 * b} s, {2 * b}-{4 * b} s" in jobs


def test_the_progress_interval_is_one_number_in_code_template_and_docs():
    """PROGRESS_MIN_INTERVAL_S is the template's ProgressMinIntervalSeconds default, the one the
    bench counts progress writes by, and the default docs/jobs.md and docs/migrating.md give
    a job author."""
    import json

    from bench.requests_per_job import PROGRESS_INTERVAL_S
    from chalicelib.defaults import PROGRESS_MIN_INTERVAL_S
    from chalicelib.settings import Settings

    interval = f"{PROGRESS_MIN_INTERVAL_S:g}"
    assert Settings.model_fields["progress_min_interval_s"].default == PROGRESS_MIN_INTERVAL_S
    assert json.loads(doc("infra/resources.json"))["Parameters"]["ProgressMinIntervalSeconds"]["Default"] \
        == PROGRESS_MIN_INTERVAL_S
    assert PROGRESS_INTERVAL_S == PROGRESS_MIN_INTERVAL_S
    jobs = " ".join(doc("docs/jobs.md").split())
    assert f"`PROGRESS_MIN_INTERVAL_S` (default {interval} s;" in jobs, f"docs/jobs.md: the default is {interval} s"
    migrating = row(doc("docs/migrating.md"), "force flag, 2 s throttle")
    assert f"(default {interval})" in migrating[1], f"docs/migrating.md: the default is {interval}"


def test_the_bytes_a_progress_report_takes_are_the_ones_the_docs_give():
    """jobs.md gives the bound of a report in bytes twice (for ctx.progress and for fail_job's
    cut): it is the defaults' figure, which grows with the message's and the details' bounds."""
    from chalicelib.defaults import MAX_PROGRESS_REPORT_BYTES

    jobs = " ".join(doc("docs/jobs.md").split())
    assert f"take at most {MAX_PROGRESS_REPORT_BYTES:,} bytes together (`MAX_PROGRESS_REPORT_BYTES`" in jobs
    assert f"{MAX_PROGRESS_REPORT_BYTES:,} bytes in UTF-8 with the details" in jobs


def test_the_expiries_data_model_gives_are_the_ones_the_code_writes():
    """docs/data-model.md's TTL lines against what the adapters write: a job's record two days
    past its retention, its runs and artifacts 47 days past their write (moved a day past the
    record at the end of a job that lived long), a cache entry 30 days past its last write, a
    scope's task completion never."""
    from chalicelib.adapters.dynamodb_cache import _completion_item
    from chalicelib.defaults import (CACHE_TTL_S, JOBS_QUEUE_RETENTION_S, RECORD_EXPIRY_SLACK_S, RECORD_PART_EXPIRY_S,
                                     RECORD_PART_KEEP_S, RETENTION_DAYS, RETENTION_MAX_DAYS)
    from chalicelib.ports import TaskCompletion

    model = " ".join(doc("docs/data-model.md").split())
    assert RECORD_EXPIRY_SLACK_S == 2 * 86400 and "when they finish, two days past `RetentionDays`" in model
    assert RECORD_PART_EXPIRY_S - RECORD_EXPIRY_SLACK_S == 86400
    kept_days = (RECORD_PART_KEEP_S - RECORD_PART_EXPIRY_S) // 86400  # how long a job may live, at retention 0
    assert kept_days == RETENTION_MAX_DAYS + JOBS_QUEUE_RETENTION_S // 86400 == 44
    assert f"Runs and artifacts get it when written, {RECORD_PART_KEEP_S // 86400} days past their write" in model
    assert f"the longest retention, {RETENTION_MAX_DAYS} days, the jobs queues' 14 and three" in model
    assert (f"longer than {kept_days} days less its retention: "
            f"{kept_days - RETENTION_DAYS} days at the default {RETENTION_DAYS}") in model
    assert "moved at its end to a day past its record's" in model
    assert CACHE_TTL_S == 30 * 86400 and "cache entry gets it 30 days past its last write or invalidation" in model
    assert "expires_at" not in _completion_item("acme", "s", TaskCompletion("demo.steps", "2026-01-01T00:00:00Z", "j"))
    assert "`TASK#` records get none" in model


def test_the_bytes_a_character_takes_in_an_answer_are_the_ones_the_docs_give():
    """api.md and data-model.md bound a job by its JSON written again inside Lambda's proxy
    response, giving what one character takes there: a quote is `\\"` in the body and `\\\\\\"`
    (4 bytes) in the answer, not the 2 the pages said; a non-ASCII character `\\\\u00e9` (7)."""
    from chalicelib.domain.job import answer_bytes

    def cost(character: str) -> int:
        return answer_bytes(character) - answer_bytes("")

    for page in ("docs/api.md", "docs/data-model.md"):
        text = " ".join(doc(page).split())
        stated = re.search(r"non-ASCII character takes (\d+) bytes,? (?:and )?a quote (\d+)", text)
        assert stated, page
        assert (int(stated.group(1)), int(stated.group(2))) == (cost("é"), cost('"')), page


def test_the_reconcilers_margin_leaves_a_request_sent_just_above_it_and_the_pass_record_their_time():
    """A pass starts no job, letter, batch or AWS request once less than RECONCILE_PASS_MARGIN_S is
    left: with the Reconciler function's AWS limits (the template's JOBPIPE_AWS_*, held to
    RECONCILER_AWS_*), one request whose every try times out fits the margin twice: the one sent
    just above it, then the pass's record. reliability.md says the same figures."""
    import json

    from chalicelib.defaults import (
        RECONCILE_PASS_MARGIN_S, RECONCILE_REQUEST_WORST_S, RECONCILER_AWS_CONNECT_TIMEOUT_S,
        RECONCILER_AWS_MAX_ATTEMPTS, RECONCILER_AWS_READ_TIMEOUT_S, request_worst_s,
    )

    reconciler = json.loads(doc("infra/resources.json"))["Resources"]["Reconciler"]["Properties"]
    deployed = reconciler["Environment"]["Variables"]
    limits = (RECONCILER_AWS_CONNECT_TIMEOUT_S, RECONCILER_AWS_READ_TIMEOUT_S, RECONCILER_AWS_MAX_ATTEMPTS)
    assert (float(deployed["JOBPIPE_AWS_CONNECT_TIMEOUT_S"]), float(deployed["JOBPIPE_AWS_READ_TIMEOUT_S"]),
            int(deployed["JOBPIPE_AWS_MAX_ATTEMPTS"])) == limits
    # every try timing out, and botocore's standard-mode waits between them (up to 1 s, and 5 s
    # more where an answer asked for a later retry)
    assert RECONCILE_REQUEST_WORST_S == request_worst_s(*limits) == 2 * (1 + 3) + (1 + 5) == 14
    assert RECONCILE_PASS_MARGIN_S >= 2 * RECONCILE_REQUEST_WORST_S
    assert RECONCILE_PASS_MARGIN_S < reconciler["Timeout"] / 2, "most of the invocation is the pass's"
    reliability = " ".join(doc("docs/reliability.md").split())
    assert f"A pass keeps to its function's {reconciler['Timeout']} s" in reliability
    assert f"with less than {RECONCILE_PASS_MARGIN_S} s left (`RECONCILE_PASS_MARGIN_S`)" in reliability
    shown = (f"({RECONCILER_AWS_CONNECT_TIMEOUT_S:g} s connect, {RECONCILER_AWS_READ_TIMEOUT_S:g} s read, "
             f"{RECONCILER_AWS_MAX_ATTEMPTS} tries: `JOBPIPE_AWS_*` on the Reconciler function)")
    assert f"The reconciler's AWS calls have limits of their own {shown}" in reliability
    assert f"about {RECONCILE_REQUEST_WORST_S:g} s at most (`RECONCILE_REQUEST_WORST_S`" in reliability
    row = (f"| the Reconciler function | {reconciler['Timeout']} s per pass | its AWS clients: "
           f"{RECONCILER_AWS_CONNECT_TIMEOUT_S:g} s connect, {RECONCILER_AWS_READ_TIMEOUT_S:g} s read, "
           f"{RECONCILER_AWS_MAX_ATTEMPTS} tries (`JOBPIPE_AWS_*` on the function), no request started with "
           f"less than {RECONCILE_PASS_MARGIN_S} s left")
    assert row in reliability


def test_the_least_function_concurrency_ceiling_the_readme_gives_is_the_largest_sqs_mapping():
    """The README and the template's description say how low `FunctionConcurrencyCeiling` may go
    on AWS: the largest MaximumConcurrency of the functions' SQS mappings, which the deploy
    checks; a mapping raised in infra/resources.json moves the bound there too."""
    from scripts.stack_config import sqs_mapping_concurrency
    from tests.support.infra import packaged_template

    template = packaged_template()
    mappings = sqs_mapping_concurrency(template)
    most, function = max((most, function) for function, most in mappings.items())
    assert (function, most) == ("JobWorkerHigh", most)
    assert f"(its `MaximumConcurrency`: at least {most}, the high worker's, or 0 for none)" in \
        " ".join(doc("README.md").split())
    assert f"MaximumConcurrency ({most}, the high worker's)" in \
        template["Parameters"]["FunctionConcurrencyCeiling"]["Description"]


def test_reliability_md_says_what_parks_a_message_on_the_erp_outbound_dead_letter_queue():
    """ErpOutboundDeadLetterQueue has an alarm like every dead-letter queue; what lands there
    (the ERP's consumer receiving a message and not deleting it) and what to do is a row of
    reliability.md's table, with the queue's receives and visibility timeout as the template
    sets them."""
    from tests.support.infra import packaged_template

    queue = packaged_template()["Resources"]["ErpOutboundQueue"]["Properties"]
    receives = queue["RedrivePolicy"]["maxReceiveCount"]
    reliability = " ".join(doc("docs/reliability.md").split())
    assert (f"parks it on `ErpOutboundDeadLetterQueue` at its {receives}th receive (each receive hides it "
            f"{queue['VisibilityTimeout']} s") in reliability
    assert "`POST /api/system/dlq/redrive?queue=erp_outbound`" in reliability


def test_how_many_problems_a_refusal_lists_is_the_one_the_docs_give():
    """A refusal lists MAX_PROBLEMS_LISTED problems, each key of a `loc` cut to MAX_LOC_PART_CHARS."""
    from chalicelib.defaults import MAX_LOC_PART_CHARS, MAX_PROBLEMS_LISTED

    api = " ".join(doc("docs/api.md").split())
    assert f"details list each problem, the first {MAX_PROBLEMS_LISTED:,} of them" in api
    assert f"problems, the first {MAX_PROBLEMS_LISTED:,} listed`" in api
    assert f"cut to its first {MAX_LOC_PART_CHARS:,} characters and `…`" in api


def test_the_operators_hour_parameters_are_bounded_and_defaulted_as_the_migration_guide_says():
    """docs/migrating.md tells an rq user what their `max_age_hours=24` and the statistics'
    window became: the ranges and defaults it gives are the routes' and tasks' own."""
    from chalicelib.defaults import CLEANUP_AGE_HOURS, MAX_CLEANUP_AGE_HOURS, MAX_STATS_WINDOW_HOURS, STATS_WINDOW_HOURS
    from chalicelib.maintenance import AgeParameters, WindowPayload

    guide = doc("docs/migrating.md")
    assert f"`?max_age_hours=` (1-{MAX_CLEANUP_AGE_HOURS}, default {CLEANUP_AGE_HOURS})" in guide
    assert f"`?window_hours=` (1-{MAX_STATS_WINDOW_HOURS}, default {STATS_WINDOW_HOURS})" in guide
    assert AgeParameters().max_age_hours == CLEANUP_AGE_HOURS and WindowPayload().window_hours == STATS_WINDOW_HOURS

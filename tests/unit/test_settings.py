"""Settings: functions deployed without a secret load, and fail clearly only where it is needed."""
from __future__ import annotations

import pytest

from chalicelib.composition import Container
from chalicelib.defaults import MAX_BODY_BYTES
from chalicelib.settings import SettingsError, load_settings, refused_variables

BASE = {"JOBPIPE_TABLE": "jobs", "JOBPIPE_IDEMPOTENCY_TABLE": "idem", "JOBPIPE_QUEUE_URL_HIGH": "h",
        "JOBPIPE_QUEUE_URL_NORMAL": "n", "JOBPIPE_QUEUE_URL_LOW": "l", "JOBPIPE_DLQ_URL": "d"}


def test_a_function_without_the_auth_secret_loads_its_settings():
    settings = load_settings(BASE)
    assert settings.auth_secret is None
    with pytest.raises(SettingsError, match="JOBPIPE_AUTH_SECRET"):
        Container(settings).token_policy


def test_the_api_function_gets_its_token_policy():
    settings = load_settings({**BASE, "JOBPIPE_AUTH_SECRET": "s" * 40, "JOBPIPE_TOKEN_MAX_LIFETIME_S": "600",
                              "JOBPIPE_TOKEN_ISSUER": "https://id.example"})
    policy = Container(settings).token_policy
    assert (policy.secret, policy.max_lifetime_s, policy.issuer, policy.audience) == ("s" * 40, 600, "https://id.example", None)


@pytest.mark.parametrize("secret", ["short", " " + "s" * 40])
def test_a_weak_or_padded_auth_secret_is_refused(secret):
    with pytest.raises(SettingsError, match="JOBPIPE_AUTH_SECRET"):
        load_settings({**BASE, "JOBPIPE_AUTH_SECRET": secret})


def test_the_webhook_needs_both_url_and_secret_where_it_is_delivered():
    with pytest.raises(SettingsError, match="ERP_WEBHOOK_SECRET"):
        load_settings({**BASE, "ERP_WEBHOOK_URL": "https://erp.example/hook"}).require_webhook()
    with pytest.raises(SettingsError, match="ERP_WEBHOOK_URL"):
        load_settings({**BASE, "ERP_WEBHOOK_SECRET": "k" * 32}).require_webhook()
    settings = load_settings({**BASE, "ERP_WEBHOOK_URL": "https://erp.example/hook", "ERP_WEBHOOK_SECRET": "k" * 32})
    assert settings.require_webhook() == ("https://erp.example/hook", "k" * 32)


def test_failed_deliveries_come_back_doubling_from_the_base_up_to_the_cap():
    from chalicelib.defaults import redelivery_wait_s
    assert [redelivery_wait_s(n) for n in (1, 2, 3, 6, 7, 100)] == [30, 60, 120, 900, 900, 900]
    settings = load_settings({**BASE, "JOBPIPE_REDELIVERY_BASE_S": "2", "JOBPIPE_REDELIVERY_MAX_S": "60"})
    waits = [settings.redelivery_wait_s(n) for n in range(1, 8)]
    assert waits == [2, 4, 8, 16, 32, 60, 60]
    with pytest.raises(SettingsError, match="JOBPIPE_REDELIVERY_MAX_S"):
        load_settings({**BASE, "JOBPIPE_REDELIVERY_MAX_S": "0"})


AUTH_SECRET = "Qm4vT9xKp2LwZr7Hs8NcYb3Fj6Gd5Ae1U0"
WEBHOOK_SECRET = "wE8rT2yU6iO0pA4sD9fG3hJ7kL1zX5cV"


def shows_part_of(secret: str, text: str) -> bool:
    """Any 8 characters in a row of `secret` in `text` (pydantic cuts a long input in the middle)."""
    return any(secret[i:i + 8] in text for i in range(len(secret) - 7))


@pytest.mark.parametrize("environ", [
    {"JOBPIPE_AUTH_SECRET": AUTH_SECRET, "ERP_WEBHOOK_SECRET": WEBHOOK_SECRET},  # a function missing its table
    {**BASE, "JOBPIPE_AUTH_SECRET": AUTH_SECRET[:31], "ERP_WEBHOOK_SECRET": WEBHOOK_SECRET},  # one character short
    {**BASE, "JOBPIPE_AUTH_SECRET": AUTH_SECRET + " ", "ERP_WEBHOOK_SECRET": WEBHOOK_SECRET},
    {**BASE, "JOBPIPE_AUTH_SECRET": AUTH_SECRET, "ERP_WEBHOOK_SECRET": WEBHOOK_SECRET, "JOBPIPE_RETENTION_DAYS": "x"},
])
def test_settings_that_fail_never_show_a_secret_in_the_error_or_its_cause(environ):
    """The API logs an unhandled error with its chained causes (logger.exception): pydantic's
    ValidationError showed the input, for a missing variable the whole environment read, so
    both signing keys went to the function's log."""
    import traceback

    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    shown = "".join(traceback.format_exception(caught.value))
    assert "invalid jobpipe settings" in shown
    assert not shows_part_of(AUTH_SECRET, shown) and not shows_part_of(WEBHOOK_SECRET, shown), shown


def test_a_settings_object_shows_no_secret():
    settings = load_settings({**BASE, "JOBPIPE_AUTH_SECRET": AUTH_SECRET, "ERP_WEBHOOK_SECRET": WEBHOOK_SECRET})
    assert not shows_part_of(AUTH_SECRET, repr(settings)) and not shows_part_of(WEBHOOK_SECRET, repr(settings))
    assert settings.auth_secret == AUTH_SECRET and settings.erp_webhook_secret == WEBHOOK_SECRET


def _template_settings() -> list[tuple[str, str, dict]]:
    """(settings field, template parameter, its declaration) for each function variable of
    infra/resources.json that is a parameter as it stands (Globals or a function's own)."""
    import json
    from pathlib import Path

    from chalicelib.settings import _ENV
    from scripts.stack_config import fed_variables

    template = json.loads((Path(__file__).resolve().parents[2] / "infra" / "resources.json").read_text())
    field_of = {var: field for field, var in _ENV.items()}
    return [(field_of[var], parameter, template["Parameters"][parameter])
            for parameter, variables in sorted(fed_variables(template).items()) if parameter in template["Parameters"]
            for var in sorted(variables)]


def test_every_settings_default_is_written_once_in_defaults_py():
    """dispatch_grace_s (120), the redelivery base and cap (30, 900) and others were written in
    settings.py beside DISPATCH_GRACE_S and DELIVERY_RETRY_* in defaults.py: two numbers that
    could drift; so were the statistics' window and a clean-up's age (24 hours each) in the
    operator's routes and tasks. A setting's, a query's or a task payload's number default
    names its constant (0 and False are "off")."""
    import ast
    from pathlib import Path

    from chalicelib import settings as module

    package = Path(module.__file__).parent
    sources = [package / "settings.py", package / "maintenance.py", *sorted((package / "api").glob("*.py"))]
    written = []
    for call in (node for source in sources for node in ast.walk(ast.parse(source.read_text()))):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Field":
            for keyword in call.keywords:
                if keyword.arg == "default" and isinstance(keyword.value, (ast.Constant, ast.BinOp)):
                    value = keyword.value
                    if not (isinstance(value, ast.Constant) and value.value in (None, 0, "", False, "default")):
                        written.append(ast.unparse(call))
    assert not written, written


def test_the_templates_parameter_defaults_are_the_settings_defaults():
    """A parameter's default is what a function gets from a stack deployed without it: the
    same as the setting's (chalicelib/defaults.py) when the variable is left out."""
    from chalicelib import defaults
    from chalicelib.settings import Settings

    held = {"RetentionDays": defaults.RETENTION_DAYS, "RetryBaseSeconds": defaults.JOB_RETRY_BASE_S,
            "ProgressMinIntervalSeconds": defaults.PROGRESS_MIN_INTERVAL_S,
            "DispatchGraceSeconds": defaults.DISPATCH_GRACE_S, "MaxDispatches": defaults.MAX_DISPATCHES,
            "RedeliveryBaseSeconds": defaults.DELIVERY_RETRY_BASE_S,
            "RedeliveryMaxSeconds": defaults.DELIVERY_RETRY_MAX_S,
            "TokenMaxLifetimeSeconds": defaults.TOKEN_MAX_LIFETIME_S,
            "TenantMaxUnfinishedJobs": defaults.TENANT_MAX_UNFINISHED_JOBS}
    seen = set()
    for field, parameter, declared in _template_settings():
        default = Settings.model_fields[field].default
        if parameter in held:
            assert declared["Default"] == held[parameter] == default, parameter
            seen.add(parameter)
        elif "Default" in declared:
            expected = str(default).lower() if isinstance(default, bool) else default
            assert declared["Default"] == expected, (parameter, declared["Default"], default)
    assert seen == set(held)


def _bounds(field: str) -> dict[str, object]:
    from chalicelib.settings import Settings

    names = {"ge": "MinValue", "le": "MaxValue", "min_length": "MinLength", "max_length": "MaxLength"}
    found = {}
    for rule in Settings.model_fields[field].metadata:
        for attribute, name in names.items():
            if getattr(rule, attribute, None) is not None:
                found[name] = getattr(rule, attribute)
    return found


def test_each_setting_a_parameter_gives_is_bounded_as_the_template_bounds_the_parameter():
    """A function reads its variables whatever set them (a stack the template checked, an
    emulator that checks nothing, a console edit): JOBPIPE_RETENTION_DAYS=90 was accepted where
    RetentionDays stops at 30 (the jobs' S3 objects outlive their records only up to 30), and
    ERP_WEBHOOK_SECRET of 20 characters where the template takes 32 to 128."""
    from chalicelib.domain.webhook_url import webhook_url_problem
    from scripts.stack_config import SECRET_MIN_CHARS

    for field, parameter, declared in _template_settings():
        expected = {k: declared[k] for k in ("MinValue", "MaxValue", "MinLength", "MaxLength") if k in declared}
        if parameter == "ErpWebhookSecret":  # empty, or 32 and more (its AllowedPattern)
            expected["MinLength"] = SECRET_MIN_CHARS
        if parameter == "ErpWebhookUrl":  # its whole rule, the length too, is domain.webhook_url's
            longest = "https://erp.example/" + "a" * (expected["MaxLength"] - len("https://erp.example/"))
            assert webhook_url_problem(longest) is None and webhook_url_problem(longest + "a") is not None
            expected = {}
        assert _bounds(field) == expected, parameter


@pytest.mark.parametrize("environ, variable", [
    ({"JOBPIPE_RETENTION_DAYS": "31"}, "JOBPIPE_RETENTION_DAYS"),
    ({"ERP_WEBHOOK_SECRET": "k" * 31}, "ERP_WEBHOOK_SECRET"),
    ({"ERP_WEBHOOK_SECRET": "k" * 129}, "ERP_WEBHOOK_SECRET"),
    ({"JOBPIPE_AUTH_SECRET": "s" * 129}, "JOBPIPE_AUTH_SECRET"),
    ({"JOBPIPE_TOKEN_ISSUER": "https://id.example/" + "x" * 120}, "JOBPIPE_TOKEN_ISSUER"),
    ({"JOBPIPE_TOKEN_AUDIENCE": "jobpipé"}, "JOBPIPE_TOKEN_AUDIENCE"),
    ({"ERP_WEBHOOK_URL": "erp.example/hook"}, "ERP_WEBHOOK_URL"),
    ({"ERP_WEBHOOK_URL": "https://erp.example/" + "x" * 1010}, "ERP_WEBHOOK_URL"),
    ({"ERP_WEBHOOK_URL": "https://erp.example:/hook"}, "ERP_WEBHOOK_URL"),  # a colon and no port
    ({"ERP_WEBHOOK_URL": "https://a@b@erp.example/hook"}, "ERP_WEBHOOK_URL"),  # an @ in the user part
])
def test_a_value_the_template_would_refuse_is_refused_by_the_settings_naming_the_variable(environ, variable):
    with pytest.raises(SettingsError, match=variable):
        load_settings({**BASE, **environ})


@pytest.mark.parametrize("variable, field", [("JOBPIPE_TABLE", "table_name"),
                                             ("JOBPIPE_IDEMPOTENCY_TABLE", "idempotency_table_name")])
def test_a_table_name_shorter_than_dynamodb_takes_is_refused_naming_the_variable(variable, field):
    """DynamoDB names a table in 3 characters at least: a shorter one is refused when the
    settings are read, naming the variable and the rule, not at the function's first request."""
    assert getattr(load_settings({**BASE, variable: "abc"}), field) == "abc"
    assert refused_variables({**BASE, variable: "ab"}) == {variable: "String should have at least 3 characters"}


def test_a_bound_the_settings_hold_a_variable_to_is_shown_as_the_docs_write_it():
    """pydantic writes le=2592000 as it is; the refusal shows 2,592,000, like every other bound."""
    with pytest.raises(SettingsError) as refused:
        load_settings({**BASE, "JOBPIPE_TOKEN_MAX_LIFETIME_S": "9999999"})
    assert "JOBPIPE_TOKEN_MAX_LIFETIME_S: Input should be less than or equal to 2,592,000" in str(refused.value)
    assert refused_variables({"JOBPIPE_TOKEN_MAX_LIFETIME_S": "9999999"}) == {
        "JOBPIPE_TOKEN_MAX_LIFETIME_S": "Input should be less than or equal to 2,592,000"}
    assert refused_variables({"JOBPIPE_MAX_BODY_BYTES": "1"}) == {
        "JOBPIPE_MAX_BODY_BYTES": "Input should be greater than or equal to 1,024"}


@pytest.mark.parametrize("variable, refused, taken", [
    ("JOBPIPE_MAX_BODY_BYTES", ("1023", str(MAX_BODY_BYTES + 1)), ("1024", str(MAX_BODY_BYTES))),
    ("JOBPIPE_INLINE_LIMIT_BYTES", ("1023", "131073"), ("1024", "131072")),
    ("JOBPIPE_IDEMPOTENCY_TTL_S", ("59",), ("60", "2592000")),
    ("JOBPIPE_AWS_CONNECT_TIMEOUT_S", ("0", "-1", "60.5"), ("0.1", "60")),
    ("JOBPIPE_AWS_READ_TIMEOUT_S", ("0", "300.5"), ("0.5", "300")),
    ("JOBPIPE_AWS_MAX_ATTEMPTS", ("0", "11"), ("1", "10")),
])
def test_a_variable_no_parameter_checks_is_held_to_its_bounds_when_read(variable, refused, taken):
    """No parameter checks these variables: the template writes the AWS clients' timeouts and
    tries itself, per function, and leaves the rest to an operator; a function still reads
    whatever a console edit or an emulator set. A body limit past what reaches a
    function (MAX_BODY_BYTES), an inline payload past what fits a job's item beside its record (128 KiB),
    idempotency kept under a minute, an AWS call that cannot connect, never times out or is
    never tried: each is refused naming the variable, and each edge itself is taken."""
    for value in refused:
        assert set(refused_variables({**BASE, variable: value})) == {variable}, value
    for value in taken:
        assert refused_variables({**BASE, variable: value}) == {}, value
        load_settings({**BASE, variable: value})


def test_an_empty_variable_keeps_the_default_and_the_edges_of_a_rule_are_taken():
    """A variable set to "" (a template condition's empty branch) is no value: the default
    holds and nothing is refused. A token claim may use every printable ASCII character, the
    space and the tilde too; a redelivery cap equal to its base is a steady wait."""
    assert load_settings({**BASE, "JOBPIPE_RETENTION_DAYS": ""}).retention_days == load_settings(BASE).retention_days
    assert refused_variables({**BASE, "JOBPIPE_RETENTION_DAYS": "", "JOBPIPE_EVENT_BUS": ""}) == {}
    claims = load_settings({**BASE, "JOBPIPE_TOKEN_ISSUER": "https://id.example/~ops", "JOBPIPE_TOKEN_AUDIENCE": "job pipe"})
    assert (claims.token_issuer, claims.token_audience) == ("https://id.example/~ops", "job pipe")
    steady = load_settings({**BASE, "JOBPIPE_REDELIVERY_BASE_S": "60", "JOBPIPE_REDELIVERY_MAX_S": "60"})
    assert [steady.redelivery_wait_s(n) for n in (1, 2, 5)] == [60, 60, 60]


def test_only_the_dead_letter_queues_configured_are_named_and_the_jobs_ones_fall_back():
    """An operator's routes list the dead-letter queues of this stack: one not configured is
    not named (a route would call a queue with no URL), and a redrive target not configured is
    not offered. A priority with no dead-letter queue of its own shares the normal one's."""
    bare = load_settings(BASE)
    assert bare.other_dead_letters == {} and bare.targeted_dead_letters == {"event_delivery": []}
    assert bare.dead_letter_urls == dict.fromkeys(("high", "normal", "low"), BASE["JOBPIPE_DLQ_URL"])
    some = load_settings({**BASE, "JOBPIPE_CACHE_DLQ_URL": "cache-dlq", "JOBPIPE_CACHE_QUEUE_URL": "cache",
                          "JOBPIPE_DLQ_URL_HIGH": "dlq-high"})
    assert some.other_dead_letters == {"cache_invalidation": ("cache-dlq", "cache")}
    assert some.targeted_dead_letters == {"event_delivery": ["cache"]}
    assert some.dead_letter_urls == {"high": "dlq-high", "normal": BASE["JOBPIPE_DLQ_URL"], "low": BASE["JOBPIPE_DLQ_URL"]}


WEBHOOK_URLS = ("http://127.0.0.1:8099/erp", "HTTPS://erp.example", "https://user:pw@erp.example:8443/x?y#z",
                "http://[::1]:8099/erp", "ftp://erp.example/hook", "erp.example/hook", "http://", "http:///path",
                "http://:80/x", "https://erp example/x", "http://erp.example:abc/", "http://erp.example:0/",
                "http://erp.example:65536/", "https://bücher.example/hook", "https://xn--bcher-kva.example/hook",
                "https://erp.example/h%C3%A9", "https://erp.example/hé", "https://erp.example/" + "a" * 1010)


@pytest.mark.parametrize("url", WEBHOOK_URLS)
def test_the_functions_and_a_deploy_hold_the_webhook_url_to_one_rule(url):
    """A URL `make run` and `scripts.deploy` take, the ERP bridge's settings take, and one they
    refuse the settings refuse with the same rule: port 0 passed the settings alone."""
    from scripts.stack_config import StackConfigError, check_parameters

    try:
        check_parameters({"ErpWebhookUrl": url, "ErpWebhookSecret": "k" * 32})
        deploy_rule = None
    except StackConfigError as exc:
        deploy_rule = str(exc).removeprefix("ErpWebhookUrl ").split(" (got ")[0]
    assert refused_variables({"ERP_WEBHOOK_URL": url}).get("ERP_WEBHOOK_URL") == (
        None if deploy_rule is None else f"Value error, {deploy_rule}")

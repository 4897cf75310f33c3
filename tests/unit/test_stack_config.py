"""The local stack's parameters from the environment: what `make run` deploys with, and the
one line it ends with when a value is bad."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import deploy, run_local
from scripts.stack_config import (
    FRACTION_PROPERTIES,
    LOCAL_API_CONCURRENCY,
    LOG_RETENTION_CHOICES,
    VARIABLES,
    WHOLE_PROPERTIES,
    StackConfigError,
    boolean,
    check_parameters,
    check_webhook_signing,
    from_environment,
    local_api_ceiling,
    property_refs,
)
from tests.unit.test_deploy_stack import write_code

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s" * 32


def test_defaults_match_the_template():
    template = json.loads((ROOT / "infra" / "resources.json").read_text())["Parameters"]
    params = from_environment({}).as_parameters()
    assert "AuthSecret" not in params
    for name, value in params.items():
        assert name in template, name
        if name != "BlobRetentionDays":
            assert str(template[name].get("Default", "")) == value, name
    assert params["BlobRetentionDays"] == str(template["BlobRetentionDays"]["Default"])


def test_every_variable_maps_to_a_template_parameter():
    template = json.loads((ROOT / "infra" / "resources.json").read_text())["Parameters"]
    assert set(VARIABLES) <= set(template)


def test_the_log_retention_choices_are_the_templates():
    template = json.loads((ROOT / "infra" / "resources.json").read_text())["Parameters"]["LogRetentionDays"]
    assert tuple(template["AllowedValues"]) == LOG_RETENTION_CHOICES


def test_the_length_bounds_are_the_templates():
    from scripts.stack_config import SECRET_MAX_CHARS, SECRET_MIN_CHARS, WEBHOOK_URL_MAX_CHARS

    template = json.loads((ROOT / "infra" / "resources.json").read_text())["Parameters"]
    assert (template["AuthSecret"]["MinLength"], template["AuthSecret"]["MaxLength"]) == (
        SECRET_MIN_CHARS, SECRET_MAX_CHARS)
    assert template["ErpWebhookSecret"]["MaxLength"] == SECRET_MAX_CHARS
    assert template["ErpWebhookUrl"]["MaxLength"] == WEBHOOK_URL_MAX_CHARS


def test_environment_values_become_parameters():
    params = from_environment({
        "JOBPIPE_AUTH_SECRET": "a" * 40,
        "ERP_WEBHOOK_URL": "http://127.0.0.1:8099/erp",
        "ERP_WEBHOOK_SECRET": SECRET,
        "ERP_RECEIVER_DEDUPLICATES": "yes",
        "USE_TASK_QUEUE": "False",
        "PROGRESS_MIN_INTERVAL_S": "0.5",
        "RETENTION_DAYS": "30",
        "LOG_RETENTION_DAYS": "90",
    }).as_parameters()
    assert params == {
        "AuthSecret": "a" * 40,
        "ErpWebhookUrl": "http://127.0.0.1:8099/erp",
        "ErpWebhookSecret": SECRET,
        "ErpReceiverDeduplicates": "true",
        "UseTaskQueue": "false",
        "ProgressMinIntervalSeconds": "0.5",
        "RetentionDays": "30",
        "BlobRetentionDays": "400",  # past the retention plus a year of schedule
        "LogRetentionDays": "90",
    }


def test_the_function_concurrency_ceiling_is_left_to_the_caller_unless_set():
    assert "FunctionConcurrencyCeiling" not in from_environment({}).as_parameters()  # make run: 4, AWS: 0
    assert from_environment({"JOBPIPE_FUNCTION_CONCURRENCY": "0"}).as_parameters()["FunctionConcurrencyCeiling"] == "0"
    assert from_environment({"JOBPIPE_FUNCTION_CONCURRENCY": "4"}).as_parameters()["FunctionConcurrencyCeiling"] == "4"


def test_the_api_concurrency_ceiling_is_left_to_the_caller_unless_set():
    assert "ApiConcurrencyCeiling" not in from_environment({}).as_parameters()  # make run: 6, AWS: 0
    assert from_environment({"JOBPIPE_API_CONCURRENCY": "8"}).as_parameters()["ApiConcurrencyCeiling"] == "8"
    with pytest.raises(StackConfigError, match="^JOBPIPE_API_CONCURRENCY must be a whole number from 0 to 1,000"):
        from_environment({"JOBPIPE_API_CONCURRENCY": "2.5"})


def test_the_local_api_ceiling_follows_whether_functions_have_one():
    """make run and make bench share one rule: no function ceiling, no API ceiling either."""
    assert local_api_ceiling(4) == local_api_ceiling(1) == LOCAL_API_CONCURRENCY
    assert local_api_ceiling(0) == 0


def test_empty_variables_keep_the_defaults():
    assert from_environment({"ERP_WEBHOOK_URL": "", "RETENTION_DAYS": ""}).as_parameters()["RetentionDays"] == "7"


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"JOBPIPE_AUTH_SECRET": "too-short"}, "JOBPIPE_AUTH_SECRET must be at least 32 characters (it has 9)"),
        ({"JOBPIPE_AUTH_SECRET": " " + "x" * 40}, "JOBPIPE_AUTH_SECRET must not start or end with whitespace"),
        ({"ERP_WEBHOOK_URL": "https://erp.example/hook"},
         "ERP_WEBHOOK_SECRET must be at least 32 characters when ERP_WEBHOOK_URL is set (it has 0)"),
        ({"ERP_WEBHOOK_URL": "https://erp.example/hook", "ERP_WEBHOOK_SECRET": "short"},
         "ERP_WEBHOOK_SECRET must be at least 32 characters when ERP_WEBHOOK_URL is set (it has 5)"),
        ({"ERP_WEBHOOK_SECRET": "short"}, "ERP_WEBHOOK_SECRET must be at least 32 characters (it has 5)"),
        ({"ERP_WEBHOOK_URL": "erp.example/hook", "ERP_WEBHOOK_SECRET": SECRET}, "ERP_WEBHOOK_URL must be an http(s) URL"),
        ({"ERP_WEBHOOK_URL": "ftp://erp.example/", "ERP_WEBHOOK_SECRET": SECRET}, "ERP_WEBHOOK_URL must be an http(s) URL"),
        ({"ERP_WEBHOOK_URL": "http://", "ERP_WEBHOOK_SECRET": SECRET}, "ERP_WEBHOOK_URL must be an http(s) URL"),
        ({"ERP_WEBHOOK_URL": "http://h:99999/", "ERP_WEBHOOK_SECRET": SECRET}, "ERP_WEBHOOK_URL must be an http(s) URL"),
        ({"ERP_WEBHOOK_URL": "http://h/a b", "ERP_WEBHOOK_SECRET": SECRET}, "ERP_WEBHOOK_URL must be an http(s) URL"),
        ({"ERP_WEBHOOK_URL": "https://bücher.example/", "ERP_WEBHOOK_SECRET": SECRET},
         "ERP_WEBHOOK_URL must be in ASCII (a host's other characters in its xn-- form, a path's percent-encoded)"),
        ({"JOBPIPE_AUTH_SECRET": "x" * 129}, "JOBPIPE_AUTH_SECRET must be at most 128 characters (it has 129)"),
        ({"ERP_WEBHOOK_URL": "https://erp.example/hook", "ERP_WEBHOOK_SECRET": "x" * 200},
         "ERP_WEBHOOK_SECRET must be at most 128 characters (it has 200)"),
        ({"ERP_WEBHOOK_URL": "https://erp.example/" + "a" * 1010, "ERP_WEBHOOK_SECRET": SECRET},
         "ERP_WEBHOOK_URL must be at most 1,024 characters (it has 1,030)"),
        ({"USE_TASK_QUEUE": "maybe"}, "USE_TASK_QUEUE must be true or false (got 'maybe')"),
        ({"ERP_RECEIVER_DEDUPLICATES": "2"}, "ERP_RECEIVER_DEDUPLICATES must be true or false (got '2')"),
        ({"PROGRESS_MIN_INTERVAL_S": "301"}, "PROGRESS_MIN_INTERVAL_S must be a number from 0 to 300 (got '301')"),
        ({"PROGRESS_MIN_INTERVAL_S": "-1"}, "PROGRESS_MIN_INTERVAL_S must be a number from 0 to 300"),
        ({"PROGRESS_MIN_INTERVAL_S": "fast"}, "PROGRESS_MIN_INTERVAL_S must be a number from 0 to 300"),
        ({"PROGRESS_MIN_INTERVAL_S": "nan"}, "PROGRESS_MIN_INTERVAL_S must be a number from 0 to 300"),
        ({"RETENTION_DAYS": "0"}, "RETENTION_DAYS must be a whole number from 1 to 30 (got '0')"),
        ({"RETENTION_DAYS": "2.5"}, "RETENTION_DAYS must be a whole number from 1 to 30"),
        ({"RETENTION_DAYS": "9999"}, "RETENTION_DAYS must be a whole number from 1 to 30"),
        ({"RETENTION_DAYS": "10", "BLOB_RETENTION_DAYS": "10"}, "BLOB_RETENTION_DAYS must be a whole number from 400"),
        ({"LOG_RETENTION_DAYS": "10"}, "LOG_RETENTION_DAYS must be one of the periods CloudWatch Logs keeps: 1, 3,"),
        ({"LOG_RETENTION_DAYS": "30.0"}, "LOG_RETENTION_DAYS must be one of the periods CloudWatch Logs keeps"),
        ({"JOBPIPE_FUNCTION_CONCURRENCY": "-1"}, "JOBPIPE_FUNCTION_CONCURRENCY must be a whole number from 0 to 1,000"),
        ({"JOBPIPE_FUNCTION_CONCURRENCY": "1.5"}, "JOBPIPE_FUNCTION_CONCURRENCY must be a whole number from 0 to 1,000"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_rule(environ, expected):
    with pytest.raises(StackConfigError) as caught:
        from_environment(environ)
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_secrets_are_never_echoed():
    with pytest.raises(StackConfigError) as caught:
        from_environment({"JOBPIPE_AUTH_SECRET": "hunter2-secret"})
    assert "hunter2" not in str(caught.value)


def test_check_parameters_names_the_template_parameter():
    with pytest.raises(StackConfigError, match="^ErpWebhookSecret must be at least 32 characters when ErpWebhookUrl is set"):
        check_parameters({"AuthSecret": "a" * 40, "ErpWebhookUrl": "http://127.0.0.1:9/erp", "ErpWebhookSecret": "x"})
    check_parameters({"AuthSecret": "a" * 40, "ErpWebhookUrl": "http://127.0.0.1:9/erp", "ErpWebhookSecret": SECRET,
                      "CountAwsRequests": "true"})


def test_deploy_main_refuses_a_short_erp_secret_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(deploy, "deploy", lambda *a, **k: pytest.fail("must not deploy"))
    with pytest.raises(SystemExit) as exited:
        deploy.main(["build", "jobpipe", "AuthSecret=" + "a" * 40, "ErpWebhookUrl=http://h/erp", "ErpWebhookSecret=short"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deploy: ErpWebhookSecret must be at least 32 characters")


def _package(tmp_path: Path) -> Path:
    """A build folder whose sam.json declares the template's parameters."""
    parameters = json.loads((ROOT / "infra" / "resources.json").read_text())["Parameters"]
    (tmp_path / "sam.json").write_text(json.dumps({"Parameters": parameters, "Resources": {}}))
    write_code(tmp_path / "deployment.zip")
    return tmp_path


def deployed_by_main(monkeypatch, tmp_path: Path, *arguments: str) -> dict[str, str]:
    """The parameters `python -m scripts.deploy build jobpipe *arguments` deploys, on a build
    folder holding the whole template (no deploy made: what it would be given)."""
    deployed: dict[str, str] = {}
    monkeypatch.setattr(deploy, "deploy", lambda build, stack, parameters: deployed.update(parameters) or {})
    (tmp_path / "sam.json").write_text((ROOT / "infra" / "resources.json").read_text())
    write_code(tmp_path / "deployment.zip")
    deploy.main([str(tmp_path), "jobpipe", *arguments])
    return deployed


def test_deploy_main_deploys_the_values_as_checked(capsys, monkeypatch, tmp_path):
    deployed = {}
    _package(tmp_path)
    monkeypatch.setattr(deploy, "deploy", lambda build, stack, parameters: deployed.update(parameters) or {})
    deploy.main([str(tmp_path), "jobpipe", "UseTaskQueue=yes", "ErpReceiverDeduplicates=OFF", "RetentionDays= 14 ",
                 "CountAwsRequests=true"])
    # CloudFormation's AllowedValues take true/false only; the others pass unchanged;
    # parameters not given keep the stack's values (a new stack: the template's defaults)
    assert deployed == {"UseTaskQueue": "true", "ErpReceiverDeduplicates": "false", "RetentionDays": "14",
                        "CountAwsRequests": "true"}


def test_check_parameters_returns_only_what_it_was_given():
    assert check_parameters({}) == {}
    assert check_parameters({"RetentionDays": "30", "Other": " x "}) == {"RetentionDays": "30", "Other": " x "}


@pytest.mark.parametrize("value, expected", [("true", True), (" Yes", True), ("ON", True), ("1", True),
                                             ("false", False), ("no", False), ("Off ", False), ("0", False)])
def test_one_rule_for_switches(value, expected):
    assert boolean(value) is expected


def test_a_switch_that_is_neither_says_so():
    with pytest.raises(ValueError, match="^must be true or false \\(got 'maybe'\\)$"):
        boolean("maybe")


def test_bench_reads_its_switch_with_the_same_rule(monkeypatch):
    from bench.__main__ import _env_bool

    monkeypatch.setenv("BENCH_X", "yes")
    assert _env_bool("BENCH_X", False) is True
    monkeypatch.setenv("BENCH_X", " ")
    assert _env_bool("BENCH_X", True) is True
    monkeypatch.setenv("BENCH_X", "sometimes")
    with pytest.raises(SystemExit, match="^make bench: BENCH_X must be true or false"):
        _env_bool("BENCH_X", False)


def test_run_local_stops_before_starting_anything(capsys, monkeypatch):
    monkeypatch.setenv("JOBPIPE_AUTH_SECRET", "short")
    monkeypatch.setattr(run_local, "Emulator", lambda *a, **k: pytest.fail("must not start the emulator"))
    monkeypatch.setattr(run_local, "deploy", lambda *a, **k: pytest.fail("must not deploy"))
    with pytest.raises(SystemExit) as exited:
        run_local.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == "make run: JOBPIPE_AUTH_SECRET must be at least 32 characters (it has 5)\n"


@pytest.mark.parametrize("module", ["scripts.run_local", "scripts.stack_config"])
def test_as_a_process_one_line_exit_code_2_no_traceback(module):
    env = {"PATH": "/usr/bin:/bin", "JOBPIPE_AUTH_SECRET": "x" * 40,
           "ERP_WEBHOOK_URL": "http://127.0.0.1:9/erp", "ERP_WEBHOOK_SECRET": "short",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr == ("make run: ERP_WEBHOOK_SECRET must be at least 32 characters when ERP_WEBHOOK_URL "
                           "is set (it has 5)\n")
    assert "Traceback" not in done.stdout


def _template_refuses(parameters: dict[str, str]) -> list[str]:
    """What CloudFormation refuses in `parameters` by infra/resources.json's own constraints
    (AllowedPattern as a whole match, lengths, bounds, AllowedValues) and its Rules."""
    template = json.loads((ROOT / "infra" / "resources.json").read_text())
    declared = template["Parameters"]
    resolved = {**{k: str(d["Default"]) for k, d in declared.items() if "Default" in d}, **parameters}
    refused = []
    for name, value in parameters.items():
        spec = declared[name]
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            refused.append(name)
        elif spec["Type"] == "Number":
            number = float(value)
            if number < spec.get("MinValue", -math.inf) or number > spec.get("MaxValue", math.inf):
                refused.append(name)
        elif len(value) < spec.get("MinLength", 0) or \
                ("AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value)):
            refused.append(name)

    def holds(node):
        (function, args), = node.items()
        if function == "Ref":
            return resolved[args]
        if function == "Fn::Equals":
            return str(holds(args[0]) if isinstance(args[0], dict) else args[0]) == \
                str(holds(args[1]) if isinstance(args[1], dict) else args[1])
        if function == "Fn::Not":
            return not holds(args[0])
        if function == "Fn::And":
            return all(holds(a) for a in args)
        if function == "Fn::Or":
            return any(holds(a) for a in args)
        raise AssertionError(f"a rule function this check does not know: {function}")

    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" not in rule or holds(rule["RuleCondition"]):
            refused += [name for assertion in rule["Assertions"] if not holds(assertion["Assert"])]
    return refused


URL = "https://erp.example/hook"


@pytest.mark.parametrize("parameters", [
    {}, {"AuthSecret": "a" * 31}, {"AuthSecret": " " + "a" * 40}, {"AuthSecret": "a" * 40 + "\n"},
    {"AuthSecret": "a b" * 12},
    {"ErpWebhookUrl": URL, "ErpWebhookSecret": SECRET}, {"ErpWebhookUrl": URL}, {"ErpWebhookUrl": URL,
                                                                                 "ErpWebhookSecret": "short"},
    {"ErpWebhookSecret": "short"}, {"ErpWebhookSecret": SECRET},
    *[{"ErpWebhookUrl": url, "ErpWebhookSecret": SECRET} for url in (
        "http://127.0.0.1:8099/erp", "HTTPS://erp.example", "https://user:pw@erp.example:8443/x?y#z",
        "http://[::1]:8099/erp", "ftp://erp.example/hook", "erp.example/hook", "http://", "http:///path",
        "http://:80/x", "https://erp example/x", "http://erp.example:abc/", "https://bücher.example/hook",
        "https://xn--bcher-kva.example/hook", "https://erp.example/h%C3%A9", "https://erp.example/hé")],
    {"BlobRetentionDays": "3650"}, {"BlobRetentionDays": "3651"}, {"BlobRetentionDays": "399"},
    {"RetentionDays": "30"}, {"RetentionDays": "31"}, {"ProgressMinIntervalSeconds": "300.5"},
    {"FunctionConcurrencyCeiling": "1001"}, {"LogRetentionDays": "2"}, {"UseTaskQueue": "false"},
])
def test_the_template_refuses_what_make_run_and_deploy_refuse(parameters):
    """`aws cloudformation deploy` to AWS checks only the template: a stack it accepts with a
    webhook and no secret, or a short one, dead-letters or weakly signs every delivery."""
    given = {"AuthSecret": "a" * 40, **parameters}
    declared = json.loads((ROOT / "infra" / "resources.json").read_text())["Parameters"]
    try:  # a new stack: its parameters, then the webhook's URL and secret together (scripts/deploy.py)
        check_webhook_signing(declared, check_parameters(given), None, "jobpipe")
        accepted = True
    except StackConfigError:
        accepted = False
    assert (not _template_refuses(given)) == accepted, _template_refuses(given)


@pytest.mark.parametrize("argument, expected", [
    ("Retentiondays=14", "deploy: build/sam.json has no parameter Retentiondays (RetentionDays?)"),
    ("DispatchGraceSeconds=0", "deploy: DispatchGraceSeconds must be a number from 1 to 86,400 (got '0')"),
    ("TokenMaxLifetimeSeconds=1",
     "deploy: TokenMaxLifetimeSeconds must be a number from 60 to 2,592,000 (got '1')"),
    ("TenantMaxUnfinishedJobs=lots", "deploy: TenantMaxUnfinishedJobs must be a number from 0 (got 'lots')"),
    ("RedeliveryMaxSeconds=3600", "deploy: RedeliveryMaxSeconds must be a number from 1 to 900 (got '3600')"),
    ("DemoJobTypes=yes", "deploy: DemoJobTypes must be one of true, false (got 'yes')"),
    ("TokenIssuer=https://id.example/" + "x" * 120, "deploy: TokenIssuer must be at most 128 characters, "
                                                   "printable ASCII"),
    # a topic's name where its ARN goes: every dead-letter alarm failed after the upload
    ("AlarmTopicArn=jobpipe-alarms", "deploy: AlarmTopicArn must be empty or an SNS topic's ARN "
                                     "(arn:aws:sns:<region>:<account>:<topic name>) (got 'jobpipe-alarms')"),
    ("AlarmTopicArn=arn:aws:sqs:eu-west-1:123456789012:alarms", "deploy: AlarmTopicArn must be empty or an SNS "),
])
def test_deploy_main_refuses_what_the_template_refuses_before_anything_is_deployed(argument, expected, capsys,
                                                                                   monkeypatch, tmp_path):
    """Only the parameters `make run` sets were checked: any other went to CloudFormation after
    the artifact bucket and the code were uploaded, and an emulator that checks no constraint
    deployed it (a misspelt name was left out unseen, the stack keeping its default)."""
    monkeypatch.setattr(deploy, "deploy", lambda *a, **k: pytest.fail("must not deploy"))
    monkeypatch.setattr(deploy, "ROOT", tmp_path)
    (tmp_path / "build").mkdir()
    _package(tmp_path / "build")
    with pytest.raises(SystemExit) as exited:
        deploy.main(["build", "jobpipe", argument])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(expected), err


def test_deploy_main_never_echoes_a_secret_it_refuses(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(deploy, "deploy", lambda *a, **k: pytest.fail("must not deploy"))
    with pytest.raises(SystemExit):
        deploy.main([str(_package(tmp_path)), "jobpipe", "ErpWebhookSecret=" + "q" * 129])
    assert "qqqq" not in capsys.readouterr().err


@pytest.mark.parametrize("argument, expected", [
    ("RetryBaseSeconds=1.5", "deploy: RetryBaseSeconds would be refused by the functions, which read it as "
                             "JOBPIPE_RETRY_BASE_S: Input should be a valid integer"),
    ("TenantMaxUnfinishedJobs=100.5", "deploy: TenantMaxUnfinishedJobs would be refused by the functions, which "
                                      "read it as JOBPIPE_TENANT_MAX_UNFINISHED_JOBS: Input should be a valid integer"),
    ("MaxDispatches=2.5", "deploy: MaxDispatches would be refused by the functions, which read it as "
                          "JOBPIPE_MAX_DISPATCHES: Input should be a valid integer"),
])
def test_deploy_main_refuses_a_number_the_template_takes_but_the_functions_would_not(argument, expected, capsys,
                                                                                     monkeypatch, tmp_path):
    """CloudFormation's Number takes 1.5 within its bounds; the functions read a whole number of
    seconds, days or jobs, so such a stack deployed and then refused every call (500
    `misconfigured`, every job message failed) until it was deployed again."""
    monkeypatch.setattr(deploy, "deploy", lambda *a, **k: pytest.fail("must not deploy"))
    (tmp_path / "sam.json").write_text((ROOT / "infra" / "resources.json").read_text())
    write_code(tmp_path / "deployment.zip")
    with pytest.raises(SystemExit) as exited:
        deploy.main([str(tmp_path), "jobpipe", argument])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(expected), err


@pytest.mark.parametrize("arguments, expected", [
    (["RedeliveryBaseSeconds=600", "RedeliveryMaxSeconds=60"],
     "deploy: RedeliveryMaxSeconds would be refused by the functions, which read it as JOBPIPE_REDELIVERY_MAX_S: "
     "Value error, must be at least JOBPIPE_REDELIVERY_BASE_S (600), the first wait before a redelivery (got '60')"),
    (["RedeliveryMaxSeconds=10"],  # below the default first wait, 30 s
     "deploy: RedeliveryMaxSeconds would be refused by the functions, which read it as JOBPIPE_REDELIVERY_MAX_S: "
     "Value error, must be at least JOBPIPE_REDELIVERY_BASE_S (30)"),
    (["HealthCheckSchedule=every hour"], "deploy: HealthCheckSchedule must be an EventBridge schedule expression: "
                                         "rate(1 minute), rate(5 minutes)"),
    (["CleanupRunsSchedule=rate(2 hour)"], "deploy: CleanupRunsSchedule must be an EventBridge schedule expression"),
    (["LogStatisticsSchedule=cron(15 3 * * ?)"], "deploy: LogStatisticsSchedule must be an EventBridge schedule"),
    # EventBridge takes a cron with `?` in exactly one of day-of-month and day-of-week.
    (["CleanupRunsSchedule=cron(15 3 * * * *)"], "deploy: CleanupRunsSchedule must be an EventBridge schedule"),
    (["CleanupTempFilesSchedule=cron(45 3 ? * ? *)"], "deploy: CleanupTempFilesSchedule must be an EventBridge"),
    (["ReconcilerSchedule=cron(0/5 * 1 * MON *)"], "deploy: ReconcilerSchedule must be an EventBridge schedule"),
    (["ReconcilerSchedule="], "deploy: ReconcilerSchedule must be an EventBridge schedule expression"),
    # ReconcilerSilentAlarm would go off between two passes.
    (["ReconcilerSchedule=rate(1 hour)"], "deploy: ReconcilerSilentAlarmSeconds 600 is less than twice "
                                          "ReconcilerSchedule's period (rate(1 hour): 3,600 s), so its alarm would "
                                          "go off between two passes: set it to at least 7,200"),
    (["ReconcilerSchedule=rate(10 minutes)", "ReconcilerSilentAlarmSeconds=900"],
     "deploy: ReconcilerSilentAlarmSeconds 900 is less than twice ReconcilerSchedule's period (rate(10 minutes): "
     "600 s)"),
    (["ReconcilerSilentAlarmSeconds=300"], "deploy: ReconcilerSilentAlarmSeconds must be one of 0, 600, 900"),
])
def test_deploy_main_refuses_redelivery_and_schedule_settings_that_cannot_work(arguments, expected, capsys,
                                                                              monkeypatch, tmp_path):
    """Each passed its own check: a cap under the first wait made every redelivery wait the cap,
    and a schedule that is no rate(...) or cron(...) reached CloudFormation after the upload (an
    empty ReconcilerSchedule would leave no pass to resend lost messages)."""
    monkeypatch.setattr(deploy, "deploy", lambda *a, **k: pytest.fail("must not deploy"))
    (tmp_path / "sam.json").write_text((ROOT / "infra" / "resources.json").read_text())
    write_code(tmp_path / "deployment.zip")
    with pytest.raises(SystemExit) as exited:
        deploy.main([str(tmp_path), "jobpipe", *arguments])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(expected), err


@pytest.mark.parametrize("schedule", [
    "cron(15 3 * * ? *)", "cron(0 12 ? * MON-FRI *)", "cron(0/5 * 1 * ? *)", "cron(0 8 ? * 6#3 2027)",
    "cron(0 0 L * ? *)", "rate(1 minute)", "rate(12 hours)", "cron(59 23 31 12 ? 2199)", "cron(0 0 1 1 ? 1970)",
    "cron(0,15,30,45 8-17 ? * MON-FRI *)", "cron(0/15 */2 ? jan-dec sun-sat *)", "cron(0 0 LW * ? *)",
    "cron(0 0 15W * ? *)", "cron(0 0 ? * 6L *)", "cron(0 0 ? * 7#5 2027-2030)", "cron(0 0 L-3 * ? *)",
])
def test_deploy_main_passes_the_schedules_eventbridge_takes(schedule, monkeypatch, tmp_path):
    deployed = deployed_by_main(monkeypatch, tmp_path, f"CleanupRunsSchedule={schedule}",
                                f"ReconcilerSchedule={schedule}", "ReconcilerSilentAlarmSeconds=86400",
                                f"AuthSecret={SECRET}")
    assert deployed["CleanupRunsSchedule"] == deployed["ReconcilerSchedule"] == schedule


@pytest.mark.parametrize("arguments", [
    ["ReconcilerSchedule=rate(1 hour)", "ReconcilerSilentAlarmSeconds=7200"],
    ["ReconcilerSchedule=rate(1 hour)", "ReconcilerSilentAlarmSeconds=0"],  # no such alarm
    ["ReconcilerSchedule=rate(5 minutes)"],  # the default 600 s: two periods
    ["ReconcilerSchedule=cron(0 3 * * ? *)"],  # a cron's period is the operator's to fit
])
def test_deploy_main_passes_a_silent_reconciler_alarm_that_outlasts_two_passes(arguments, monkeypatch, tmp_path):
    deployed = deployed_by_main(monkeypatch, tmp_path, *arguments, f"AuthSecret={SECRET}")
    assert deployed["ReconcilerSchedule"] == arguments[0].split("=", 1)[1]


def test_deploy_main_passes_whole_numbers_written_as_the_template_takes_them(capsys, monkeypatch, tmp_path):
    given = {"RetryBaseSeconds": "1.0", "TenantMaxUnfinishedJobs": "0", "ProgressMinIntervalSeconds": "0.5",
             "FaultClaimFailureRate": "0.1", "TokenIssuer": "", "AuthSecret": SECRET}
    assert deployed_by_main(monkeypatch, tmp_path, *(f"{k}={v}" for k, v in given.items())) == given


@pytest.mark.parametrize("url, shown", [
    ("ftp://user:hunter2@erp.example/hook?token=abc", "'ftp://erp.example/hook'"),
    ("https://erp.example:0/hook#x", "'https://erp.example:0/hook'"),
    ("erp.example/hook", "'erp.example/hook'"),
])
def test_a_refused_webhook_url_is_shown_without_its_credentials_or_query(url, shown):
    """The refusal shows what was typed, so a typo can be found, but never the user:password
    or the query, where a URL carries its credentials: a terminal or a CI log keeps the line."""
    with pytest.raises(StackConfigError) as raised:
        check_parameters({"ErpWebhookUrl": url, "ErpWebhookSecret": SECRET})
    message = str(raised.value)
    assert message.endswith(f"(got {shown})")
    assert "hunter2" not in message and "token" not in message and "user" not in message


def test_bench_serves_the_emulator_as_every_stack_unless_asked_for_ministacks_own(monkeypatch):
    from bench.__main__ import _env_server

    monkeypatch.delenv("BENCH_EMULATOR_SERVER", raising=False)
    assert _env_server() == "uvicorn"
    monkeypatch.setenv("BENCH_EMULATOR_SERVER", " hypercorn ")
    assert _env_server() == "hypercorn"
    monkeypatch.setenv("BENCH_EMULATOR_SERVER", "gunicorn")
    with pytest.raises(SystemExit, match="^make bench: BENCH_EMULATOR_SERVER must be one of uvicorn, hypercorn, "
                                         "not 'gunicorn'$"):
        _env_server()


def _whole_package(tmp_path: Path) -> Path:
    """A build folder whose sam.json is infra/resources.json, resources and all."""
    (tmp_path / "sam.json").write_text((ROOT / "infra" / "resources.json").read_text())
    write_code(tmp_path / "deployment.zip")
    return tmp_path


def _main_deploys(argv: list[str], monkeypatch) -> dict[str, str]:
    """The parameters `python -m scripts.deploy argv` deploys (SystemExit when it refuses)."""
    deployed: dict[str, str] = {}
    monkeypatch.setattr(deploy, "deploy", lambda build, stack, parameters: deployed.update(parameters) or {})
    deploy.main(argv)
    return deployed


def test_deploy_main_refuses_a_fraction_where_aws_takes_a_whole_number_before_anything_is_uploaded(
        tmp_path, capsys, monkeypatch):
    """ApiThrottleBurstLimit=1.5 passed every check (the template's Number takes it) and
    CloudFormation failed the stack's API after the code was uploaded: API Gateway's burst
    limit is an integer. Its requests a second take a fraction."""
    build = str(_whole_package(tmp_path))
    with pytest.raises(SystemExit) as exited:
        _main_deploys([build, "jobpipe", "ApiThrottleBurstLimit=1.5"], monkeypatch)
    assert exited.value.code == 2
    assert capsys.readouterr().err == ("deploy: ApiThrottleBurstLimit must be a whole number, as RestAPI's "
                                       "ThrottlingBurstLimit takes it (got '1.5')\n")
    assert _main_deploys([build, "jobpipe", "ApiThrottleBurstLimit=2000.0", "ApiThrottleRateLimit=12.5"],
                         monkeypatch) == {"ApiThrottleBurstLimit": "2000", "ApiThrottleRateLimit": "12.5"}


def test_every_number_the_template_gives_a_resource_is_known_whole_or_not_and_a_fraction_refused(
        tmp_path, capsys, monkeypatch):
    """Each Number parameter infra/resources.json gives a resource property goes where AWS takes
    an integer (WHOLE_PROPERTIES) or a fraction (FRACTION_PROPERTIES): a property in neither is
    one to look up. A fraction where AWS takes an integer is refused, naming the parameter."""
    template = json.loads((ROOT / "infra" / "resources.json").read_text())
    numbers = {k for k, d in template["Parameters"].items() if d["Type"] == "Number"}
    given = {name: targets for name, targets in property_refs(template).items() if name in numbers}
    assert {prop for targets in given.values() for _, prop in targets} <= WHOLE_PROPERTIES | FRACTION_PROPERTIES
    whole = sorted(name for name, targets in given.items() if any(p in WHOLE_PROPERTIES for _, p in targets))
    assert {"ApiThrottleBurstLimit", "BlobRetentionDays", "FunctionConcurrencyCeiling"} <= set(whole)
    build = str(_whole_package(tmp_path))
    for name in whole:
        spec = template["Parameters"][name]
        low = float((spec.get("AllowedValues") or [spec.get("MinValue", 0)])[-1])
        with pytest.raises(SystemExit) as exited:
            _main_deploys([build, "jobpipe", f"{name}={low + 0.5:g}"], monkeypatch)
        err = capsys.readouterr().err
        assert exited.value.code == 2 and err.startswith(f"deploy: {name} ") and err.count("\n") == 1, err


@pytest.mark.parametrize("arn", ["", "arn:aws:sns:eu-west-1:123456789012:jobpipe-alarms",
                                 "arn:aws-us-gov:sns:us-gov-west-1:123456789012:ops_alarms"])
def test_deploy_main_takes_an_sns_topics_arn_for_the_alarms(arn, tmp_path, monkeypatch):
    assert _main_deploys([str(_whole_package(tmp_path)), "jobpipe", f"AlarmTopicArn={arn}"],
                         monkeypatch) == {"AlarmTopicArn": arn}


@pytest.mark.parametrize("argument, name", [
    ("TenantMaxUnfinishedJobs=1_000", "TenantMaxUnfinishedJobs"),      # a function's setting
    ("ApiThrottleRateLimit=1_000", "ApiThrottleRateLimit"),            # a resource's property
    ("TokenMaxLifetimeSeconds=86_400", "TokenMaxLifetimeSeconds"),
    ("FaultClaimFailureRate=0.1_0", "FaultClaimFailureRate"),
    ("FunctionConcurrencyCeiling=1_0", "FunctionConcurrencyCeiling"),  # make run's too
    ("RetentionDays=1_4", "RetentionDays"),
    ("DispatchGraceSeconds=١٢٠", "DispatchGraceSeconds"),              # digits of another script
    ("TenantMaxUnfinishedJobs=infinity", "TenantMaxUnfinishedJobs"),
])
def test_deploy_main_refuses_a_number_python_reads_but_cloudformation_does_not_before_anything_is_uploaded(
        argument, name, tmp_path, capsys, monkeypatch):
    """Python's float() and int() take `1_000` as 1000 (and digits of any script, and `infinity`):
    such a value passed every check and CloudFormation refused the Number after the code was
    uploaded. It is one line naming the parameter and how a number is written, exit 2."""
    with pytest.raises(SystemExit) as exited:
        _main_deploys([str(_whole_package(tmp_path)), "jobpipe", argument], monkeypatch)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"deploy: {name} must be ") and err.count("\n") == 1, err
    assert "written in the digits 0-9, without _ or separators" in err


def test_make_run_refuses_a_number_written_with_underscores():
    with pytest.raises(StackConfigError, match=r"^RETENTION_DAYS must be a whole number from 1 to 30, written in "
                                               r"the digits 0-9, without _ or separators \(got '1_4'\)$"):
        from_environment({"RETENTION_DAYS": "1_4"})


@pytest.mark.parametrize("schedule, problem", [
    ("cron(0 25 * * ? *)", "its hours must be 0 to 23, not '25'"),
    ("cron(60 3 * * ? *)", "its minutes must be 0 to 59, not '60'"),
    ("cron(0 3 32 * ? *)", "its day-of-month must be 1 to 31, not '32'"),
    ("cron(0 3 0 * ? *)", "its day-of-month must be 1 to 31, not '0'"),
    ("cron(0 3 1 13 ? *)", "its month must be 1 to 12 or JAN to DEC, not '13'"),
    ("cron(0 3 ? * 8 *)", "its day-of-week must be 1 to 7 or SUN to SAT, not '8'"),
    ("cron(0 3 ? * MON-SUNDAY *)", "its day-of-week must be 1 to 7 or SUN to SAT, with , - * /, not 'MON-SUNDAY'"),
    ("cron(0 3 ? * 2#6 *)", "its day-of-week's #n must be #1 to #5, not '2#6'"),
    ("cron(0 3 * * ? 1969)", "its year must be 1970 to 2199, not '1969'"),
    ("cron(0,15,75 3 * * ? *)", "its minutes must be 0 to 59, not '75'"),
    ("cron(0 20-24 * * ? *)", "its hours must be 0 to 23, not '20-24'"),
    ("cron(0/0 3 * * ? *)", "the increment of its minutes must be 1 to 59, not '0/0'"),
    ("cron(0 */24 * * ? *)", "the increment of its hours must be 1 to 23, not '*/24'"),
])
def test_deploy_main_refuses_a_cron_schedule_with_a_field_out_of_its_range_before_anything_is_uploaded(
        schedule, problem, tmp_path, capsys, monkeypatch):
    """The template's pattern checks a cron(...)'s shape, six fields with one `?`: an hour of 25,
    a minute of 60, a 32nd day or a 13th month passed it and every check of the deploy, and
    EventBridge refused the rule after the code was uploaded. Each field's range is checked."""
    for name in ("ReconcilerSchedule", "CleanupRunsSchedule", "HealthCheckSchedule"):
        with pytest.raises(SystemExit) as exited:
            _main_deploys([str(_whole_package(tmp_path)), "jobpipe", f"{name}={schedule}",
                           "ReconcilerSilentAlarmSeconds=0"], monkeypatch)
        assert exited.value.code == 2
        assert capsys.readouterr().err == (f"deploy: {name} is no schedule EventBridge takes ({schedule!r}): "
                                           f"{problem}\n")


def test_deploy_main_refuses_a_rate_of_none_before_anything_is_uploaded(tmp_path, capsys, monkeypatch):
    for schedule in ("rate(0 minutes)", "rate(0 minute)", "rate(00 hours)"):
        with pytest.raises(SystemExit) as exited:
            _main_deploys([str(_whole_package(tmp_path)), "jobpipe", f"CleanupRunsSchedule={schedule}"], monkeypatch)
        assert exited.value.code == 2
        assert capsys.readouterr().err.startswith("deploy: CleanupRunsSchedule must be an EventBridge schedule")


def test_deploy_main_refuses_a_schedule_longer_than_eventbridge_takes_before_anything_is_uploaded(
        tmp_path, capsys, monkeypatch):
    """EventBridge's PutRule takes a schedule of at most 256 characters: a cron(...) listing its
    minutes one by one matched the template's pattern and was refused after the upload."""
    minutes = ",".join(str(m) for m in range(0, 60))
    days = ",".join(str(d) for d in range(1, 32))
    schedule = f"cron({minutes} 0,2,4,6,8,10,12,14,16,18,20,22 {days} * ? *)"
    assert len(schedule) > 256
    with pytest.raises(SystemExit) as exited:
        _main_deploys([str(_whole_package(tmp_path)), "jobpipe", f"HealthCheckSchedule={schedule}"], monkeypatch)
    assert exited.value.code == 2
    assert capsys.readouterr().err == (f"deploy: HealthCheckSchedule is no schedule EventBridge takes: must be at most "
                                       f"256 characters (it has {len(schedule)}) ({schedule[:40]!r}...)\n")
    shorter = "cron(0/1 0,2,4,6,8,10,12,14,16,18,20,22 ? * MON-FRI *)"
    assert _main_deploys([str(_whole_package(tmp_path)), "jobpipe", f"HealthCheckSchedule={shorter}"],
                         monkeypatch) == {"HealthCheckSchedule": shorter}

"""The packaged template (build/sam.json) gives each secret to the one function that uses it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.infra import packaged_template

ROOT = Path(__file__).resolve().parents[2]

# secret environment variable -> the only function that may carry it
SECRETS = {
    "JOBPIPE_AUTH_SECRET": {"APIHandler"},
    "ERP_WEBHOOK_SECRET": {"ErpBridge"},
}
SECRET_PARAMETERS = {"AuthSecret": "JOBPIPE_AUTH_SECRET", "ErpWebhookSecret": "ERP_WEBHOOK_SECRET"}


@pytest.fixture(scope="module")
def template():
    return packaged_template()


def environment(template, function: str) -> dict:
    own = template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    shared = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    return {**shared, **own}


def functions(template) -> list[str]:
    return [k for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"]


def test_each_secret_reaches_only_the_function_that_uses_it(template):
    assert {"APIHandler", "ErpBridge", "JobWorker"} <= set(functions(template))
    carried = {name: {f for f in functions(template) if name in environment(template, f)} for name in SECRETS}
    assert carried == SECRETS


def test_no_secret_sits_in_globals(template):
    shared = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    assert not set(SECRETS) & set(shared)
    assert not any(v == {"Ref": p} for p in SECRET_PARAMETERS for v in shared.values())


def test_secret_parameters_are_referenced_only_where_they_belong(template):
    """No other variable name, of any resource, smuggles a secret parameter's value."""
    for parameter, variable in SECRET_PARAMETERS.items():
        users = {(f, name) for f in functions(template) for name, value in environment(template, f).items()
                 if value == {"Ref": parameter}}
        assert users == {(f, variable) for f in SECRETS[variable]}, parameter
        assert template["Parameters"][parameter].get("NoEcho") is True


def test_every_variable_the_template_gives_a_function_is_read_by_its_settings(template):
    """A variable the template sets and no setting reads (its name mistyped, or its line gone
    from chalicelib/settings.py's _ENV) leaves the function on a default without a word: the
    stats table unnamed, the artifacts bucket unknown, events put on the default bus. Only
    Powertools' own variables are read elsewhere."""
    from chalicelib.settings import _ENV

    given = {name for function in functions(template) for name in environment(template, function)}
    assert {"JOBPIPE_STATS_TABLE", "JOBPIPE_BUCKET", "JOBPIPE_EVENT_BUS"} <= given
    unread = {name for name in given - set(_ENV.values()) if not name.startswith("POWERTOOLS_")}
    assert not unread, f"set by the template, read by no setting: {sorted(unread)}"


def test_demo_types_are_off_unless_the_stack_turns_them_on(template):
    assert template["Parameters"]["DemoJobTypes"]["Default"] == "false"


def test_a_claimed_message_stays_hidden_longer_than_any_attempt_can_run(template):
    """The worker does not re-hide a message it claimed: the queue's visibility timeout must
    outlast the worker's invocation (which outlasts any attempt it takes: a claim needs the
    type's timeout + a margin left), or a live attempt's message would reappear mid-run."""
    from chalicelib.job_types import build_registry
    from chalicelib.defaults import INVOCATION_MARGIN_S, WORKER_TIMEOUT_S

    workers = {name: resource for name, resource in template["Resources"].items()
               if resource["Type"] == "AWS::Serverless::Function" and name.startswith("JobWorker")}
    assert len(workers) == 3
    registry = build_registry(demo_types=True)
    longest_job_s = max(registry.get(name).timeout_s for name in registry.names())
    for name, worker in workers.items():
        (source,) = worker["Properties"]["Events"].values()
        queue = source["Properties"]["Queue"]["Fn::Sub"].removeprefix("${").removesuffix(".Arn}")
        visibility = template["Resources"][queue]["Properties"]["VisibilityTimeout"]
        assert visibility >= worker["Properties"]["Timeout"] >= longest_job_s + INVOCATION_MARGIN_S, name
        assert worker["Properties"]["Timeout"] == WORKER_TIMEOUT_S, name  # what the registry bounds types by


def test_the_erp_bridge_reaches_its_ledger_only_when_the_erp_does_not_deduplicate(template):
    """ErpReceiverDeduplicates=true drops the bridge's delivery ledger, and with it every grant
    on the idempotency table; the default keeps exactly-once delivery on the ledger."""
    assert template["Parameters"]["ErpReceiverDeduplicates"]["Default"] == "false"
    assert environment(template, "ErpBridge")["ERP_RECEIVER_DEDUPLICATES"] == {"Ref": "ErpReceiverDeduplicates"}
    assert template["Conditions"]["ErpKeepsLedger"] == {"Fn::Equals": [{"Ref": "ErpReceiverDeduplicates"}, "false"]}
    (policy,) = template["Resources"]["ErpBridgeRole"]["Properties"]["Policies"]
    on_ledger = [s for s in policy["PolicyDocument"]["Statement"] if "IdempotencyTable" in str(s)]
    assert on_ledger and all(s.get("Fn::If", [None])[0] == "ErpKeepsLedger" and s["Fn::If"][2] == {"Ref": "AWS::NoValue"}
                             for s in on_ledger)


def test_the_erp_bridge_can_park_a_refused_event_on_its_dead_letter_queue_and_nowhere_else(template):
    """An event the ERP refuses for good goes to ErpWebhookDeadLetterQueue at once: the bridge
    knows the queue and may send to it (and to no other queue)."""
    assert environment(template, "ErpBridge")["JOBPIPE_ERP_WEBHOOK_DLQ_URL"] == {"Ref": "ErpWebhookDeadLetterQueue"}
    (policy,) = template["Resources"]["ErpBridgeRole"]["Properties"]["Policies"]
    sends = [s for s in policy["PolicyDocument"]["Statement"] if "sqs:SendMessage" in s.get("Action", [])]
    assert [s["Resource"] for s in sends] == [{"Fn::GetAtt": ["ErpWebhookDeadLetterQueue", "Arn"]}]


def test_each_function_logs_to_its_own_group_which_the_stack_keeps_for_a_bounded_time(template):
    """A function's log lines go to a group the stack creates, one per function, kept
    LogRetentionDays (CloudWatch Logs keeps a group Lambda creates by itself for ever, billed
    by the GB-month); the role may write only there, so no function writes into another's."""
    resources = template["Resources"]
    groups = {}
    for function in functions(template):
        group = resources[function]["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
        assert group and resources[group]["Type"] == "AWS::Logs::LogGroup", f"{function} has no log group of its own"
        assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        groups[function] = group
    assert len(set(groups.values())) == len(groups), "two functions share a log group"
    retention = template["Parameters"]["LogRetentionDays"]
    assert retention["Default"] in retention["AllowedValues"]
    for function, group in groups.items():
        role = resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
        statements = resources[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        written = [s for s in statements if any(a.startswith("logs:") for a in s.get("Action", []))]
        targets = [r["Fn::GetAtt"][0] for s in written for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
        assert group in targets
        assert all(resources[f]["Properties"]["Role"]["Fn::GetAtt"][0] == role
                   for f, g in groups.items() if g in targets), f"{role} may write another role's function's logs"


def chosen(value, arrivals: bool):
    """`value` as the stack resolves it, with LetterArrivalAlarms true or false."""
    if isinstance(value, dict) and list(value) == ["Fn::If"] and value["Fn::If"][0] == "LetterArrivalAlarms":
        value = value["Fn::If"][1 if arrivals else 2]
    return None if value == {"Ref": "AWS::NoValue"} else value


def alarm_dimensions(alarm: dict, arrivals: bool = True) -> list[dict]:
    """The dimensions an alarm watches: its metric's, or those of the metrics its math reads."""
    metrics = chosen(alarm.get("Metrics"), arrivals) or []
    return (chosen(alarm.get("Dimensions"), arrivals) or []) + [
        dimension for query in metrics if "MetricStat" in query
        for dimension in query["MetricStat"]["Metric"].get("Dimensions", [])]


@pytest.mark.parametrize("arrivals", [True, False])
def test_the_jobs_dead_letter_alarms_notify_of_new_letters_not_of_letters_kept(template, arrivals):
    """A job that fails for good parks its letter on its priority's DLQ by design, where it stays
    until purged: an alarm on the letters waiting would stay in ALARM after the first failure and
    notify of no later one. The jobs DLQs' alarms watch the letters that arrived in a period; with
    LetterArrivalAlarms=false (an emulator without metric-math alarms) the letters waiting."""
    resources = template["Resources"]
    for queue in ("JobsDeadLetterQueueHigh", "JobsDeadLetterQueue", "JobsDeadLetterQueueLow"):
        (alarm,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
                    and {"Fn::GetAtt": [queue, "QueueName"]} in [d["Value"] for d in alarm_dimensions(r["Properties"], arrivals)]]
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
        if not arrivals:
            assert chosen(alarm["MetricName"], arrivals) == "ApproximateNumberOfMessagesVisible"
            assert chosen(alarm.get("Metrics"), arrivals) is None
            continue
        metrics = chosen(alarm["Metrics"], arrivals)
        (watched,) = [query for query in metrics if query["ReturnData"]]
        (read,) = [query for query in metrics if "MetricStat" in query]
        assert watched["Expression"] == f"DIFF(FILL({read['Id']}, 0))", watched
        assert read["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert all(chosen(alarm.get(key), arrivals) is None for key in ("MetricName", "Namespace", "Dimensions", "Period"))


def test_every_queue_function_reads_a_queue_of_the_stack_that_dead_letters_under_an_alarm(template):
    """A function on `@on_sqs_message` alone reads the placeholder queue its name gives (no queue
    the stack makes) and, without ReportBatchItemFailures, a batch answered with failures is
    deleted whole: its event source is bound in infra/resources.json (as CacheInvalidation's) to
    a queue of the stack, which parks what keeps failing on a dead-letter queue whose alarm
    tells an operator (docs/reliability.md) and which the operator's routes peek and redrive
    (docs/operations.md)."""
    resources = template["Resources"]
    alarmed = {dimension["Value"]["Fn::GetAtt"][0] for alarm in resources.values()
               if alarm["Type"] == "AWS::CloudWatch::Alarm"
               for dimension in alarm_dimensions(alarm["Properties"]) if dimension["Name"] == "QueueName"}
    for function in functions(template):
        for event in resources[function]["Properties"].get("Events", {}).values():
            if event["Type"] != "SQS":
                continue
            source = event["Properties"]
            own = re.fullmatch(r"\$\{(\w+)\.Arn\}", source["Queue"].get("Fn::Sub", ""))
            queue = own.group(1) if own else None
            assert queue and resources.get(queue, {}).get("Type") == "AWS::SQS::Queue", (
                f"{function} reads {source['Queue']}, no queue of the stack: bind its event source in "
                "infra/resources.json")
            assert source.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], (
                f"{function}'s event source does not report batch item failures: a failed record is deleted")
            redrive = resources[queue]["Properties"].get("RedrivePolicy", {})
            assert "deadLetterTargetArn" in redrive, f"{queue} ({function}) has no dead-letter queue"
            dead_letters = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert dead_letters in alarmed, f"{dead_letters} ({function}'s) has no alarm on its messages"
            assert {"Ref": dead_letters} in environment(template, "APIHandler").values(), (
                f"the API function is not given {dead_letters}'s URL: GET /api/system/dlq cannot show it "
                "(a JOBPIPE_..._DLQ_URL variable, read in chalicelib/settings.py)")


def test_every_consumed_queue_alarms_when_a_message_waits_unreceived(template):
    """A queue whose consumer stopped receiving (paused with scripts.consumers and forgotten, its
    event source mapping disabled or deleted) holds its messages without a sign: its jobs stay
    queued, the reconciler sends no copies there (`unconsumed`), nothing is dead-lettered, and
    after the queue's 14 days the messages are gone. Every queue a function reads has an alarm on
    the age of its oldest message, past QUEUE_WAITING_ALARM_S."""
    from chalicelib.defaults import QUEUE_WAITING_ALARM_S

    resources = template["Resources"]
    consumed = set()
    for function in functions(template):
        for event in resources[function]["Properties"].get("Events", {}).values():
            if event["Type"] == "SQS":
                consumed.add(re.fullmatch(r"\$\{(\w+)\.Arn\}", event["Properties"]["Queue"]["Fn::Sub"]).group(1))
    assert {"JobsQueueHigh", "JobsQueue", "JobsQueueLow", "ErpWebhookQueue", "CacheInvalidationQueue"} <= consumed
    for queue in consumed:
        (alarm,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
                    and r["Properties"].get("MetricName") == "ApproximateAgeOfOldestMessage"
                    and r["Properties"]["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]]
        assert (alarm["Namespace"], alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
            "AWS/SQS", "Maximum", "GreaterThanThreshold", QUEUE_WAITING_ALARM_S), queue
        # SQS counts a message in flight as waiting: one a worker died holding stays hidden for
        # the queue's visibility timeout, its job retried meanwhile. No alarm for that.
        hidden_s = resources[queue]["Properties"]["VisibilityTimeout"]
        assert alarm["Threshold"] >= hidden_s + 1800, (queue, hidden_s)
        assert alarm["Period"] * alarm["EvaluationPeriods"] <= 600, "it says so within minutes of the hour"
        assert alarm["TreatMissingData"] == "notBreaching", "an empty queue sends no age"
        assert alarm["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}


def _sends_to(rule: dict, queue: str) -> bool:
    """Whether one of the rule's targets is `queue`, or dead-letters to it."""
    arn = {"Fn::GetAtt": [queue, "Arn"]}
    return any(t["Arn"] == arn or t.get("DeadLetterConfig", {}).get("Arn") == arn
               for t in rule["Properties"]["Targets"])


def _source_rules(source) -> dict:
    """rule -> the stack condition it is named under (None: always) in an aws:SourceArn value."""
    named = {}
    for entry in source if isinstance(source, list) else [source]:
        condition = None
        if "Fn::If" in entry:
            condition, entry, otherwise = entry["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}, source
        assert set(entry) == {"Fn::GetAtt"} and entry["Fn::GetAtt"][1] == "Arn", f"not a rule's ARN: {entry}"
        named[entry["Fn::GetAtt"][0]] = condition
    return named


def test_events_may_send_to_a_queue_only_for_the_rules_that_send_there(template):
    """A queue's policy lets EventBridge send for the stack's rules that target the queue or
    dead-letter to it, each by its ARN: the event delivery DLQ was open to any rule of the
    account (`rule/*`), then to any rule of the stack's bus (`rule/<bus>/*`, one an operator or
    another stack adds included), and whatever lands there an operator's redrive forwards to the
    ERP and cache invalidation queues its TARGET_ARN names. A rule made only under a stack
    condition is named under that condition (its ARN does not exist otherwise)."""
    resources = template["Resources"]
    policies = {k: v for k, v in resources.items() if v["Type"] == "AWS::SQS::QueuePolicy"}
    assert "EventDeliveryDeadLetterQueuePolicy" in policies
    for name, policy in policies.items():
        (queue,) = [q["Ref"] for q in policy["Properties"]["Queues"]]
        senders = {k: v.get("Condition") for k, v in resources.items()
                   if v["Type"] == "AWS::Events::Rule" and _sends_to(v, queue)}
        assert senders, name
        expected = {rule: (None if condition == policy.get("Condition") else condition)
                    for rule, condition in senders.items()}
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}, name
        assert statement["Action"] == "sqs:SendMessage", name
        assert statement["Resource"] == {"Fn::GetAtt": [queue, "Arn"]}, name
        assert set(statement["Condition"]) == {"ArnEquals"}, (name, statement["Condition"])
        assert _source_rules(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == expected, name


def test_the_reconciler_waits_for_a_backlog_no_longer_than_the_jobs_queues_keep_messages(template):
    from chalicelib.defaults import JOBS_QUEUE_RETENTION_S

    queues = {name for name, resource in template["Resources"].items()
              if name.startswith("JobsQueue") and resource["Type"] == "AWS::SQS::Queue"}
    assert len(queues) == 3, queues
    for name in queues:
        assert template["Resources"][name]["Properties"]["MessageRetentionPeriod"] == JOBS_QUEUE_RETENTION_S, name


def test_every_condition_compares_strings_with_strings(template):
    """CloudFormation's Ref of a parameter is a string, a Number parameter's too, and Fn::Equals
    takes string values: a literal compared with one is written as a string ("0", not 0)."""
    def literals(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Fn::Equals":
                    yield from (v for v in value if not isinstance(v, dict))
                yield from literals(value)
        elif isinstance(node, list):
            for item in node:
                yield from literals(item)

    compared = list(literals(template["Conditions"])) + list(literals(template["Resources"]))
    assert compared and all(isinstance(v, str) for v in compared), compared


def test_the_gateway_responses_are_part_of_the_apis_deployment(template):
    """API Gateway answers with the gateway responses of the stage's deployment. Declared as
    AWS::ApiGateway::GatewayResponse resources, they raced the deployment SAM generates (a stack
    answered an unknown route 403 `Missing Authentication Token`) and a change to one never
    reached the stage; on the API's GatewayResponses they are in its body, so in every deployment."""
    resources = template["Resources"]
    assert not [k for k, v in resources.items() if v["Type"] == "AWS::ApiGateway::GatewayResponse"]
    responses = resources["RestAPI"]["Properties"]["GatewayResponses"]
    unknown = responses["MISSING_AUTHENTICATION_TOKEN"]
    assert unknown["StatusCode"] == "404"
    assert json.loads(unknown["ResponseTemplates"]["application/json"])["error"]["code"] == "route_not_found"
    refused = responses["DEFAULT_4XX"]
    assert '"code": "gateway_refused"' in refused["ResponseTemplates"]["application/json"]
    for response in responses.values():
        assert response["ResponseParameters"]["Headers"] == {"Content-Type": "'application/json'"}


# Lambda refuses a function whose environment (every name and value) passes 4 KB, in bytes: the
# deploy fails. scripts/lambda_environment.py counts each value at the longest it can be: the
# stack's name as given (in the service name, the bus's name, and each table's and queue's name
# CloudFormation generates from it), a parameter at its value or its MaxLength in 4-byte
# characters, UTF-8's longest, unless its AllowedPattern admits ASCII only (a sample each,
# below, shows its pattern takes the sample and refuses it with one non-ASCII character).
ASCII_ONLY_SAMPLES = {
    "ErpWebhookUrl": "https://erp.example/hook",
    "TokenIssuer": "https://issuer.example/",
    "TokenAudience": "jobpipe-api",
}
# A region name as long as any (ap-southeast-2, cn-northwest-1, us-isob-east-1): in every queue URL.
LONGEST_REGION = "cn-northwest-1"


def longest_values(template) -> dict[str, str]:
    """Every parameter with a MaxLength at it, in 4-byte characters where it takes them."""
    return {name: ("a" if name in ASCII_ONLY_SAMPLES else "\U0001f600") * spec["MaxLength"]
            for name, spec in template["Parameters"].items() if "MaxLength" in spec}


def test_the_parameters_counted_as_ascii_refuse_any_other_character(template):
    import re

    parameters = template["Parameters"]
    for name, sample in ASCII_ONLY_SAMPLES.items():
        pattern = parameters[name]["AllowedPattern"]
        assert re.fullmatch(pattern, sample), (name, sample)
        for other in ("é", "\u00a0", "€", "\U0001f600"):
            assert not re.fullmatch(pattern, sample + other), (name, other)
            assert not re.fullmatch(pattern, sample[:9] + other + sample[9:]), (name, other)


def test_every_function_environment_fits_lambdas_4_kb_on_the_default_stack_whatever_the_parameters(template):
    """`jobpipe` (the deploy's default name; `jobpipe-production` too) in any region, every
    parameter at its longest: each function's environment fits, with room to spare for a longer
    name. A parameter reaching an environment with no bound on its length fails the count."""
    from scripts.lambda_environment import LAMBDA_ENVIRONMENT_BYTES, environment_bytes, longest_stack_name

    values = longest_values(template)
    for stack in ("jobpipe", "jobpipe-production"):
        sizes = environment_bytes(template, stack, LONGEST_REGION, values)
        assert set(sizes) == set(functions(template))
        assert max(sizes.values()) <= LAMBDA_ENVIRONMENT_BYTES, (stack, sizes)
    assert longest_stack_name(template, LONGEST_REGION, values) >= 40


def test_a_stack_name_as_long_as_cloudformation_takes_can_pass_4_kb_and_the_deploy_refuses_it(template):
    """A 128-character name (CloudFormation's most, which the deploy's name check takes) with
    the longest parameters gives the API function more than Lambda takes: the deploy's check,
    not the template, is what holds that stack to 4 KB, and its line says what fits."""
    from scripts.lambda_environment import environment_bytes, environment_problem, longest_stack_name

    values = longest_values(template)
    stack = "j" * 128
    assert environment_bytes(template, stack, LONGEST_REGION, values)["APIHandler"] > 4096
    fits = longest_stack_name(template, LONGEST_REGION, values)
    assert f"a stack name of at most {fits} characters fits" in environment_problem(template, stack, LONGEST_REGION,
                                                                                    values)
    assert environment_problem(template, stack[:fits], LONGEST_REGION, values) is None
    assert environment_problem(template, stack[:fits + 1], LONGEST_REGION, values) is not None


def lambda_alarms(template) -> dict[tuple[str, str], dict]:
    """(function, metric) -> the alarm's properties, for each alarm on a function's AWS/Lambda metric."""
    resources = template["Resources"]
    watched = {}
    for alarm in resources.values():
        properties = alarm["Properties"]
        if alarm["Type"] != "AWS::CloudWatch::Alarm" or properties.get("Namespace") != "AWS/Lambda":
            continue
        (dimension,) = properties["Dimensions"]
        assert dimension["Name"] == "FunctionName"
        function = dimension["Value"]["Ref"]
        assert resources[function]["Type"] == "AWS::Serverless::Function", function
        assert properties["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}],
                                                         {"Ref": "AWS::NoValue"}]}
        watched[(function, properties["MetricName"])] = {**properties, "Condition": alarm.get("Condition")}
    return watched


def test_the_reconciler_is_watched_for_going_silent_and_for_failing_every_pass(template):
    """What looks after stuck jobs is looked after too: a reconciler whose schedule is disabled or
    whose function fails every invocation strands each lost message and ended lease without a
    sign, where a dead-letter alarm only sees what it parks. It is alarmed when it was not
    invoked for ReconcilerSilentAlarmSeconds (missing data counts: no invocation is no data),
    and when its invocations failed in each of three periods in a row."""
    watched = lambda_alarms(template)
    silent = watched[("Reconciler", "Invocations")]
    assert (silent["Statistic"], silent["ComparisonOperator"], silent["Threshold"]) == ("Sum", "LessThanThreshold", 1)
    assert silent["TreatMissingData"] == "breaching"
    assert silent["Period"] == {"Ref": "ReconcilerSilentAlarmSeconds"} and silent["EvaluationPeriods"] == 1
    assert silent["Condition"] == "HasReconcilerSilentAlarm"
    assert template["Conditions"]["HasReconcilerSilentAlarm"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ReconcilerSilentAlarmSeconds"}, "0"]}]}
    silence = template["Parameters"]["ReconcilerSilentAlarmSeconds"]
    assert all(value == 0 or (value % 60 == 0 and value <= 86400) for value in silence["AllowedValues"]), (
        "CloudWatch takes a period of whole minutes, at most a day")
    assert silence["Default"] >= 2 * 60, "the default schedule is rate(1 minute)"
    assert template["Parameters"]["ReconcilerSchedule"]["Default"] == "rate(1 minute)"
    assert ("Reconciler", "Errors") in watched


def test_each_function_but_the_apis_is_watched_for_failing_whole_invocations(template):
    """A function that fails whole invocations (its settings refused, an import error, its time
    run out) strands what it takes without a sign for hours: a jobs queue's message comes back
    after its visibility timeout and is dead-lettered only after 10 receives, a subscriber's
    after about a day. Each is alarmed when its invocations failed in three 5-minute periods in a
    row; a failure reported per message or record is no function error. The API's failures are
    its callers' 5xx answers."""
    watched = lambda_alarms(template)
    for function in functions(template):
        if function == "APIHandler":
            continue
        failing = watched[(function, "Errors")]
        assert (failing["Statistic"], failing["ComparisonOperator"], failing["Threshold"]) == (
            "Sum", "GreaterThanThreshold", 0), function
        assert (failing["Period"], failing["EvaluationPeriods"], failing["DatapointsToAlarm"]) == (300, 3, 3), function
        assert failing["TreatMissingData"] == "notBreaching", function


def test_the_event_publisher_is_watched_for_falling_behind_the_stream(template):
    """A stream batch the publisher keeps retrying, or a publisher throttled or failing, holds
    every later status event of its shard back; nothing reaches a dead-letter queue until its
    retries are spent. Its iterator age says how far behind it reads."""
    behind = lambda_alarms(template)[("EventPublisher", "IteratorAge")]
    assert (behind["Statistic"], behind["ComparisonOperator"]) == ("Maximum", "GreaterThanThreshold")
    assert behind["Threshold"] == 600_000  # milliseconds: ten minutes behind
    assert behind["TreatMissingData"] == "notBreaching"


def test_each_stacks_metrics_and_log_lines_carry_its_own_name(template):
    """The metrics' `service` dimension (and every log line's `service`) is the stack's name: with
    one fixed name, two stacks in one account (staging and production) summed into one series,
    and an alarm on one stack's failures counted the other's."""
    for function in functions(template):
        assert environment(template, function)["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}, function


def test_every_function_that_admits_jobs_bounds_them_by_the_stacks_parameter(template):
    """A tenant's bound on unfinished jobs is checked where a job is admitted: at POST /jobs (the
    API) and at `ctx.spawn` (each priority's worker). Each must read it from
    TenantMaxUnfinishedJobs: a worker without it would bound children by the code's default
    whatever the stack set (0, no bound, included)."""
    workers = [f for f in functions(template)
               for event in template["Resources"][f]["Properties"].get("Events", {}).values()
               if event["Type"] == "SQS" and re.fullmatch(r"\$\{JobsQueue(High|Low)?\.Arn\}",
                                                          event["Properties"]["Queue"].get("Fn::Sub", ""))]
    assert sorted(workers) == ["JobWorker", "JobWorkerHigh", "JobWorkerLow"]
    for function in ["APIHandler", *workers]:
        assert environment(template, function).get("JOBPIPE_TENANT_MAX_UNFINISHED_JOBS") == \
            {"Ref": "TenantMaxUnfinishedJobs"}, function


def test_what_a_stack_keeps_when_deleted_is_kept_but_not_after_its_first_create_rolled_back(template):
    """The jobs table, and the bucket holding its jobs' payloads, results and artifacts, outlive
    the stack's deletion (and an update's rollback), together: a record kept without its objects
    is half a job, and a bucket left to be deleted fails the deletion while it holds an object.
    A first create that rolled back made no job: `Retain` kept its empty table all the same, and
    each deploy run again (scripts/deploy.py deletes a ROLLBACK_COMPLETE stack and creates it
    anew) left one more; `RetainExceptOnCreate` deletes what that create made."""
    kept = {name: (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy"))
            for name, resource in template["Resources"].items()
            if resource.get("DeletionPolicy") not in (None, "Delete")}
    assert kept == {"JobsTable": ("RetainExceptOnCreate", "Retain"), "JobsBucket": ("RetainExceptOnCreate", "Retain")}
    operations = " ".join((ROOT / "docs" / "operations.md").read_text().split())
    assert "(`JobsTable` and `JobsBucket`, `DeletionPolicy: RetainExceptOnCreate`) are kept" in operations


def test_each_event_source_deploys_with_the_settings_its_handler_declares(template):
    """infra/resources.json's event sources are merged over Chalice's, so a batch size changed
    in a handler's decorator alone would not reach the stack, while the code that budgets a
    batch's time from it (a worker's lease, a subscriber's timeout) would reckon with it: each
    function's decorator and the stack it deploys name one batch size, batching window,
    starting position and schedule."""
    import app

    resources = template["Resources"]
    for source in app.app.event_sources:
        logical = "".join(part.capitalize() for part in source.name.split("_"))
        events = resources[logical]["Properties"]["Events"]
        if hasattr(source, "schedule_expression"):
            (event,) = events.values()
            assert template["Parameters"][event["Properties"]["Schedule"]["Ref"]]["Default"] == (
                source.schedule_expression), f"{source.name}'s schedule"
            continue
        (event,) = [e["Properties"] for e in events.values() if e["Type"] in ("SQS", "DynamoDB")]
        declared = {"BatchSize": source.batch_size,
                    "MaximumBatchingWindowInSeconds": source.maximum_batching_window_in_seconds,
                    "StartingPosition": getattr(source, "starting_position", None)}
        assert {key: event.get(key) for key in declared} == declared, f"{source.name}'s event source"


def test_each_table_expires_its_records_on_the_attribute_the_code_writes_their_expiry_to(template):
    """DynamoDB's TTL deletes only by the one attribute the table names: an expiry the code
    writes under another name is never acted on, and the table keeps every record for good
    (the health check would say so, but only once deployed)."""
    from chalicelib.adapters.dynamodb_keys import TTL_ATTRIBUTE
    from chalicelib.adapters.health import EXPIRY_ATTRIBUTE

    resources = template["Resources"]
    expiring = {name: resource["Properties"].get("TimeToLiveSpecification") for name, resource in resources.items()
                if resource["Type"] == "AWS::DynamoDB::Table"}
    assert expiring == {"JobsTable": {"AttributeName": EXPIRY_ATTRIBUTE, "Enabled": True},
                        "StatsTable": {"AttributeName": EXPIRY_ATTRIBUTE, "Enabled": True},
                        "IdempotencyTable": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}}

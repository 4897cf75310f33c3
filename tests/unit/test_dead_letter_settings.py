"""Every dead-letter queue is one the operator's routes and the reconciler see: GET /api/system/dlq,
its redrive and the reconciler's pass read the jobs queues' DLQs from `Settings.dead_letter_urls`
and every other one from `Settings.other_dead_letters` (chalicelib/settings.py), so a DLQ added
to the stack or to the settings and not named there would fill up unseen."""
from __future__ import annotations

import json
from typing import Any, Iterator, Optional

import pytest

from chalicelib.settings import _ENV, Settings, load_settings
from tests.support.infra import TEMPLATE, resources

# The keys under which a template names a dead-letter queue: a queue's RedrivePolicy, an event
# rule target's DeadLetterConfig, a function's DeadLetterQueue, an event source's OnFailure.
DEAD_LETTER_KEYS = ("deadLetterTargetArn", "DeadLetterConfig", "DeadLetterQueue", "OnFailure")
# The settings of the jobs queues' DLQs (per priority); every other DLQ setting ends in _dlq_url.
JOBS_DEAD_LETTER_FIELDS = ("dead_letter_url", "dead_letter_url_high", "dead_letter_url_low")
FIX = ("name it in Settings.other_dead_letters (chalicelib/settings.py) with the queue a redrive "
       "returns its messages to, so GET /api/system/dlq, its redrive and the reconciler see it")


def named_resources(node: Any) -> Iterator[str]:
    """The logical ids `node` refers to (Ref, Fn::GetAtt, ${X.Arn} in Fn::Sub), anywhere in it."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                yield value[0] if isinstance(value, list) else value.split(".")[0]
            elif key == "Fn::Sub" and isinstance(value, str):
                yield from (part.split("}")[0].split(".")[0] for part in value.split("${")[1:])
            else:
                yield from named_resources(value)
    elif isinstance(node, list):
        for item in node:
            yield from named_resources(item)


def dead_letter_queues(template: dict[str, Any]) -> dict[str, Optional[str]]:
    """Logical id of each queue the template makes a dead-letter queue -> the queue whose
    RedrivePolicy sends it messages (None: a rule target's, a function's, a stream's)."""
    found: dict[str, Optional[str]] = {}

    def walk(node: Any, owner: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in DEAD_LETTER_KEYS:
                    for name in named_resources(value):
                        if template.get(name, {}).get("Type") == "AWS::SQS::Queue":
                            source = owner if key == "deadLetterTargetArn" else None
                            found[name] = found.get(name) or source
                else:
                    walk(value, owner)
        elif isinstance(node, list):
            for item in node:
                walk(item, owner)

    for logical_id, resource in template.items():
        walk(resource, logical_id)
    return found


def api_environment() -> dict[str, Any]:
    """The API function's variables: the template's Globals and its own."""
    template = json.loads(TEMPLATE.read_text())
    shared = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own = template["Resources"]["APIHandler"]["Properties"].get("Environment", {}).get("Variables", {})
    return {**shared, **own}


def variable_of(queue: str) -> Optional[str]:
    """The API function's variable that carries `queue`'s URL (a Ref to it), if any."""
    return next((name for name, value in api_environment().items() if value == {"Ref": queue}), None)


def field_of(variable: Optional[str]) -> Optional[str]:
    """The setting `variable` is read into (chalicelib/settings.py's _ENV), if any."""
    return next((field for field, name in _ENV.items() if name == variable), None)


def every_url_set() -> Settings:
    """Settings with each URL field (`*_url`, `*_url_*`) a URL of its own naming it, the rest default."""
    base = load_settings({"JOBPIPE_TABLE": "jobs", "JOBPIPE_IDEMPOTENCY_TABLE": "idem", "JOBPIPE_QUEUE_URL_HIGH": "h",
                          "JOBPIPE_QUEUE_URL_NORMAL": "n", "JOBPIPE_QUEUE_URL_LOW": "l", "JOBPIPE_DLQ_URL": "d"})
    urls = {name: url_of(name) for name in Settings.model_fields if name.endswith("_url") or "_url_" in name}
    return base.model_copy(update=urls)


def url_of(field: str) -> str:
    return f"https://sqs.eu-west-1.amazonaws.com/123456789012/{field}"


def seen(settings: Settings) -> dict[str, Optional[str]]:
    """DLQ URL -> the queue URL a redrive returns its messages to, for every DLQ the routes see."""
    jobs = {settings.dead_letter_urls[p]: settings.queue_urls[p] for p in settings.queue_urls}
    return {**jobs, **{dead: source for dead, source in settings.other_dead_letters.values()}}


def dead_letter_fields() -> set[str]:
    return set(JOBS_DEAD_LETTER_FIELDS) | {name for name in Settings.model_fields if name.endswith("_dlq_url")}


def test_the_settings_name_the_jobs_dead_letter_fields_that_exist():
    assert set(JOBS_DEAD_LETTER_FIELDS) <= set(Settings.model_fields)


@pytest.mark.parametrize("field", sorted(dead_letter_fields()))
def test_every_dead_letter_setting_is_seen_by_the_operators_routes(field):
    assert url_of(field) in seen(every_url_set()), f"Settings.{field} is a dead-letter queue no route sees: {FIX}"


def test_every_dead_letter_queue_of_the_stack_is_given_to_the_api_and_seen_by_its_routes():
    """From infra/resources.json: each queue the stack dead-letters to reaches the API function as
    a variable the settings read, and the settings field it fills is one the routes see, paired
    with the queue it is the dead-letter queue of (what a redrive sends to)."""
    template = resources()
    dead_letters = dead_letter_queues(template)
    assert {"JobsDeadLetterQueue", "ErpWebhookDeadLetterQueue", "EventDeliveryDeadLetterQueue",
            "StreamFailureQueue"} <= set(dead_letters)  # each kind of reference is read
    settings = every_url_set()
    for queue, source in sorted(dead_letters.items(), key=lambda pair: pair[0]):
        variable = variable_of(queue)
        assert variable, (f"{queue} is a dead-letter queue the API function is not given: add a "
                          f"JOBPIPE_..._DLQ_URL variable {{'Ref': '{queue}'}} to APIHandler's Environment "
                          "in infra/resources.json, read as a *_dlq_url setting, and " + FIX)
        field = field_of(variable)
        assert field, f"{variable} ({queue}'s URL) is read by no setting: add it to _ENV in chalicelib/settings.py"
        assert url_of(field) in seen(settings), f"Settings.{field} ({queue}) is seen by no route: {FIX}"
        if source is not None:
            source_field = field_of(variable_of(source))
            assert source_field, (f"{source}, whose messages {queue} keeps, is not given to the API function "
                                  "as a setting: a redrive could not send them back")
            assert seen(settings)[url_of(field)] == url_of(source_field), (
                f"a redrive of {queue} ({field}) would not send its messages back to {source} ({source_field})")


def test_a_redrive_of_undelivered_events_may_return_each_to_the_queue_its_rule_sends_to():
    """An event EventBridge could not deliver to a rule's queue lands on the rule target's
    DeadLetterConfig queue naming that queue (TARGET_ARN); a redrive sends it only to a queue of
    `Settings.targeted_dead_letters`, so a subscriber queue missing there keeps its events parked."""
    template = resources()
    settings = every_url_set()
    name_of = {dead: name for name, (dead, _) in settings.other_dead_letters.items()}
    targets = [(rule, target) for rule, resource in template.items() if resource.get("Type") == "AWS::Events::Rule"
               for target in resource["Properties"].get("Targets", []) if "DeadLetterConfig" in target]
    assert len(targets) >= 3  # the ERP outbound, ERP webhook and cache invalidation rules
    for rule, target in targets:
        (queue,) = named_resources(target["Arn"])
        (dead,) = named_resources(target["DeadLetterConfig"])
        name = name_of[url_of(field_of(variable_of(dead)))]
        queue_field = field_of(variable_of(queue))
        assert queue_field, f"{queue} ({rule}'s target) is not given to the API function as a setting"
        assert url_of(queue_field) in settings.targeted_dead_letters.get(name, []), (
            f"a redrive of {dead} ({name}) cannot send {rule}'s events back to {queue}: add "
            f"{queue_field} to Settings.targeted_dead_letters['{name}'] (chalicelib/settings.py)")

"""Every IAM grant of every function role, pinned: the packaged template (build/sam.json) must
grant each role exactly the (action, resource) pairs listed here, so an added grant fails this
test as surely as a removed one. The list is what the code needs (see the notes); change it
only together with the code path that needs the change, and re-check it against
tests/functional/test_iam.py, which proves each recorded call is still allowed.

A resource is written as a logical id, with `/index/<name>` for an index, `/<prefix>*` for
objects, `.StreamArn` for a table's stream, `*`
for all. A grant present only under a stack condition ends ` if <Condition>`, one limited
to items by their partition key ` where LeadingKeys like <pattern>`, and a listing limited to
key prefixes ` where prefix like <patterns>`."""
from __future__ import annotations

import re
from typing import Any, Optional

import pytest

from tests.support.infra import packaged_template

# Each function writes to its own log group, which the stack creates (with its retention): no
# logs:CreateLogGroup, and no other function's group.
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def ddb(*actions: str) -> set[str]:
    return {f"dynamodb:{a}" for a in actions}


def sqs(*actions: str) -> set[str]:
    return {f"sqs:{a}" for a in actions}


def s3(*actions: str) -> set[str]:
    return {f"s3:{a}" for a in actions}


JOBS_QUEUES = ("JobsQueueHigh", "JobsQueue", "JobsQueueLow")
JOBS_DLQS = ("JobsDeadLetterQueueHigh", "JobsDeadLetterQueue", "JobsDeadLetterQueueLow")
# Their messages can be redriven to their source queues (an undelivered event to the queue its
# TARGET_ARN names): the API deletes what it moved.
REDRIVABLE_DLQS = ("ErpWebhookDeadLetterQueue", "ErpOutboundDeadLetterQueue", "CacheInvalidationDeadLetterQueue",
                   "EventDeliveryDeadLetterQueue")
# Never redriven by the API (peek, depth, delete): descriptions of stream batches, which the
# reconciler replays and removes; the API deletes what an operator gives up (a parked record, a
# hand-made body: DELETE /api/system/dlq/letters/{id}?queue=stream_failure).
REPLAYED_DLQS = ("StreamFailureQueue",)
INLINE = " if InlineMaintenance"
# The stats table's counters (stats.py): the markers, the status and hourly counts, the tenants'
# unfinished jobs. Not RECONCILER (reconciler_log.py) nor PARKED#* (parked_record_drops.py).
COUNTERS = " where LeadingKeys like SEEN#* STATUS HOUR#* TENANT#*"  # UseTaskQueue=false: maintenance tasks run in the API function
# Listings only under a job's objects (retention.py lists jobs/<id>/ before it deletes them) and
# the scratch objects (cleanup-temp-files and the health check's bucket probe list tmp/).
LISTED_PREFIXES = " where prefix like jobs/* tmp/*"
# What each publisher may put on the bus, by the entries' Source and DetailType: the stream's
# publishers (and the reconciler's replay) the job status events only, cache invalidation its
# announcement only. The ERP rules forward every `job.status.*` event of the bus to the ERP,
# signed: no other function may put one there.
STATUS_EVENTS = " where StringEquals events:source jobpipe where StringLike events:detail-type job.status.*"
CACHE_EVENTS = " where StringEquals events:detail-type cache.invalidated where StringEquals events:source jobpipe"


def each(resources: tuple[str, ...], actions: set[str]) -> dict[str, set[str]]:
    """The same actions on each resource (a resource appears once in a role's dict: a later
    entry would replace an earlier one, so each resource's actions are listed together)."""
    return {r: actions for r in resources}


# The three priority workers run the same code on their own queues. What they share is one
# managed policy (JobWorkersPolicy) their three roles hold: what a job's run uses, on any of them.
# Each role alone may take, delete and hide messages of its own queue (its event source mapping
# and its hand-backs) and write its logs; and it holds what the maintenance tasks of its priority
# use (each task type runs at one priority, maintenance.TASKS): no other worker runs them.
JOB_WORKERS = {"JobWorkerHigh": "JobsQueueHigh", "JobWorker": "JobsQueue", "JobWorkerLow": "JobsQueueLow"}
# A worker dead-letters only what its own queue delivered: a failed job's letter goes to the job's
# priority's DLQ, and a job runs on its priority's queue; a message that is no job message to
# the DLQ of the queue it came from. The reconciler parks owed letters of every priority.
WORKER_DLQS = {"JobWorkerHigh": "JobsDeadLetterQueueHigh", "JobWorker": "JobsDeadLetterQueue",
               "JobWorkerLow": "JobsDeadLetterQueueLow"}
JOB_WORKERS_SHARED: dict[str, set[str]] = {
    "*": XRAY,
    # Claims, progress, completions, runs, artifacts (each checked against its attempt: a
    # ConditionCheck on the job's item), spawned children.
    "JobsTable": ddb("GetItem", "PutItem", "UpdateItem", "ConditionCheckItem"),
    # A spawned child is admitted like a submitted job: before the quota refuses it, the
    # tenant's unfinished jobs are counted in the status index (quota.py, count_unfinished).
    "JobsTable/index/by_status": ddb("Query"),
    # Its delivery ledger (dynamodb_ledger.py), for a message that is no job message only:
    # a conditional Put before it is parked, a Put once it is.
    "IdempotencyTable where LeadingKeys like DELIVERY#job_worker#*": ddb("PutItem"),
    # A spawned child goes to the queue of its own priority (ctx.spawn's, else its parent's).
    **each(JOBS_QUEUES, sqs("SendMessage")),
    "StatsTable": ddb("GetItem"),  # the tenant's count, a spawned child's admission
    # Claim-checked payloads and results, artifacts; an object whose record write failed is deleted.
    "JobsBucket/jobs/*": s3("GetObject", "PutObject", "DeleteObject"),
}
# What each priority's maintenance tasks use, on its worker's role alone.
JOB_WORKER_TASKS: dict[str, dict[str, set[str]]] = {
    # cleanup_runs: the finished-day index, a job's partition, its items deleted in batches, its
    # objects listed; cleanup_temp_files: the scratch objects listed and deleted.
    "JobWorkerLow": {
        "JobsTable": ddb("Query"),
        # A purge deletes one job's partition (retention.py): never a scope's cache or completions,
        # which a handler on this worker could otherwise wipe for every tenant in one request.
        "JobsTable where LeadingKeys like JOB#*": ddb("BatchWriteItem"),
        "JobsTable/index/by_finished_day": ddb("Query"),
        "JobsBucket" + LISTED_PREFIXES: s3("ListBucket"),
        "JobsBucket/tmp/*": s3("DeleteObject"),  # never read or written there
    },
    # health_check: the probes (health.py) and every jobs queue's and DLQ's depth.
    "JobWorker": {
        "JobsTable": ddb("DescribeTable", "DescribeTimeToLive"),
        "StatsTable": ddb("DescribeTable", "DescribeTimeToLive"),
        "IdempotencyTable": ddb("DescribeTable", "DescribeTimeToLive"),
        "JobEventsBus": {"events:DescribeEventBus"},
        "JobsBucket where prefix like tmp/*": s3("ListBucket"),
        **each(JOBS_QUEUES + JOBS_DLQS, sqs("GetQueueAttributes")),
    },
    # log_statistics: the hours of the window.
    "JobWorkerHigh": {"StatsTable": ddb("BatchGetItem")},
}


def job_worker(worker: str, queue: str) -> dict[str, set[str]]:
    grants = {**JOB_WORKERS_SHARED, f"{worker}LogGroup": LOGS}
    for resource, actions in JOB_WORKER_TASKS[worker].items():
        grants[resource] = grants.get(resource, set()) | actions
    grants[queue] = grants.get(queue, set()) | sqs("ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility",
                                                   "GetQueueAttributes")
    grants[WORKER_DLQS[worker]] = grants.get(WORKER_DLQS[worker], set()) | sqs("SendMessage")
    return grants


GRANTS: dict[str, dict[str, set[str]]] = {
    "ApiHandlerRole": {
        **each(("APIHandlerLogGroup",), LOGS),
        "*": XRAY,
        # Jobs, runs, artifacts, scope caches (and their completions' invalidations); no deletes.
        "JobsTable": ddb("GetItem", "BatchGetItem", "PutItem", "UpdateItem", "Query"),
        # Listings (dynamodb_reads.py list_jobs) and the admission recount (count_unfinished).
        "JobsTable/index/by_tenant": ddb("Query"),
        "JobsTable/index/by_status": ddb("Query"),
        "JobsTable/index/by_type": ddb("Query"),
        # Idempotency-Key records only (dynamodb_keys.py), never the subscribers' delivery records.
        "IdempotencyTable where LeadingKeys like submit#*": ddb("GetItem", "PutItem"),
        "StatsTable": ddb("GetItem", "BatchGetItem"),
        # An operator's drop of a parked stream record the reconciler holds hidden, and its
        # removal once deleted (parked_record_drops.py): those entries only, never a counter.
        "StatsTable where LeadingKeys like PARKED#*": ddb("UpdateItem"),
        **each(JOBS_QUEUES, sqs("SendMessage", "GetQueueAttributes")),
        **each(JOBS_DLQS, sqs("GetQueueAttributes", "ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility")),
        **each(REDRIVABLE_DLQS, sqs("GetQueueAttributes", "ReceiveMessage", "ChangeMessageVisibility", "DeleteMessage")),
        **each(REPLAYED_DLQS, sqs("GetQueueAttributes", "ReceiveMessage", "ChangeMessageVisibility", "DeleteMessage")),
        **each(("ErpWebhookQueue", "ErpOutboundQueue", "CacheInvalidationQueue"), sqs("SendMessage")),
        "JobsBucket/jobs/*": s3("GetObject", "PutObject", "DeleteObject"),
        # Inline cleanup-runs: the finished-day index, then each job's items in batches.
        "JobsTable" + INLINE: ddb("DescribeTable", "DescribeTimeToLive"),
        "JobsTable" + INLINE + " where LeadingKeys like JOB#*": ddb("BatchWriteItem"),
        "JobsTable/index/by_finished_day" + INLINE: ddb("Query"),
        # Inline health-check: the probes (health.py); cleanup-temp-files: list and delete tmp/.
        "StatsTable" + INLINE: ddb("DescribeTable", "DescribeTimeToLive"),
        "IdempotencyTable" + INLINE: ddb("DescribeTable", "DescribeTimeToLive"),
        "JobsBucket" + INLINE + LISTED_PREFIXES: s3("ListBucket"),
        "JobsBucket/tmp/*" + INLINE: s3("DeleteObject"),
        "JobEventsBus" + INLINE: {"events:DescribeEventBus"},
    },
    **{f"{worker}Role": job_worker(worker, queue) for worker, queue in JOB_WORKERS.items()},
    "EventPublisherRole": {
        **each(("EventPublisherLogGroup",), LOGS),
        "*": XRAY,
        "JobsTable.StreamArn": ddb("GetRecords", "GetShardIterator", "DescribeStream", "ListStreams"),
        "JobEventsBus" + STATUS_EVENTS: {"events:PutEvents"},
        "StreamFailureQueue": sqs("SendMessage"),  # the event source mapping's on-failure destination
        # stats.py: one transaction of Puts (the once-only markers) and ADDs (the counters); never
        # the reconciler's record nor a parked stream record's entry, whose drop deletes its events.
        "StatsTable" + COUNTERS: ddb("PutItem", "UpdateItem"),
    },
    "ErpBridgeRole": {
        **each(("ErpBridgeLogGroup",), LOGS),
        "*": XRAY,
        "ErpWebhookQueue": sqs("ReceiveMessage", "DeleteMessage", "GetQueueAttributes", "ChangeMessageVisibility"),
        "ErpWebhookDeadLetterQueue": sqs("SendMessage"),  # an event the ERP refused for good is parked there
        # The delivery ledger (dynamodb_ledger.py): conditional Puts, then Puts and Deletes in a batch.
        "IdempotencyTable if ErpKeepsLedger where LeadingKeys like DELIVERY#erp_bridge#*": ddb("PutItem",
                                                                                              "BatchWriteItem"),
    },
    "CacheInvalidationRole": {
        **each(("CacheInvalidationLogGroup",), LOGS),
        "*": XRAY,
        "CacheInvalidationQueue": sqs("ReceiveMessage", "DeleteMessage", "GetQueueAttributes",
                                      "ChangeMessageVisibility"),
        "JobEventsBus" + CACHE_EVENTS: {"events:PutEvents"},
        # Scope caches and completions only (dynamodb_cache.py), never a job's items.
        "JobsTable where LeadingKeys like SCOPE#*": ddb("UpdateItem"),
    },
    "ReconcilerRole": {
        **each(("ReconcilerLogGroup",), LOGS),
        "*": XRAY,
        # Jobs and their runs only: it completes no job, so it never writes a scope's items.
        "JobsTable where LeadingKeys like JOB#*": ddb("GetItem", "BatchGetItem", "PutItem", "UpdateItem"),
        "JobsTable/index/by_due": ddb("Query"),
        # Its pass's summary (reconciler_log.py); a replayed stream batch's counts (stats.py); the
        # takes and removals of parked stream records, which keep operators' drops (parked_record_drops.py).
        "StatsTable": ddb("PutItem", "UpdateItem"),
        # Depths (the queue's only; never its DLQ's): a job whose resends are spent is not failed
        # while its queue still holds a line of messages no worker received (lifecycle.reconcile).
        **each(JOBS_QUEUES, sqs("SendMessage", "GetQueueAttributes")),
        # A lost attempt's last failure parks its message; dead letters are peeked and left in
        # place, but for those of jobs retention removed, deleted (reconciler._delete_orphans).
        **each(JOBS_DLQS, sqs("SendMessage", "ReceiveMessage", "ChangeMessageVisibility", "DeleteMessage")),
        "JobsBucket/jobs/*": s3("GetObject"),  # reads claim-checked jobs; its own submissions are tiny
        # Failed stream batches (events/replay.py): their descriptions taken, held and removed,
        # their records read back by sequence number, their events published again; a record
        # of one that this version cannot read is parked there whole (events/stream.py).
        "StreamFailureQueue": sqs("ReceiveMessage", "ChangeMessageVisibility", "DeleteMessage", "SendMessage"),
        "JobsTable.StreamArn": ddb("GetShardIterator", "GetRecords"),
        "JobEventsBus" + STATUS_EVENTS: {"events:PutEvents"},
    },
}


def resource_name(entry: Any) -> str:
    if entry == "*":
        return "*"
    if isinstance(entry, dict) and "Fn::GetAtt" in entry:
        logical, attribute = entry["Fn::GetAtt"]
        return logical if attribute == "Arn" else f"{logical}.{attribute}"
    if isinstance(entry, dict) and isinstance(entry.get("Fn::Sub"), str):
        text = entry["Fn::Sub"]
        own = re.fullmatch(r"\$\{(\w+)\.Arn\}(/.+)?", text)
        if own:
            return own.group(1) + (own.group(2) or "")
        written = re.fullmatch(r"arn:\$\{AWS::Partition\}:(\w+):\$\{AWS::Region\}:\$\{AWS::AccountId\}:(.+)", text)
        if written:
            return f"{written.group(1)}:{written.group(2)}"
    raise AssertionError(f"a resource this test cannot name: {entry!r}")


def condition_text(condition: Optional[dict[str, Any]]) -> str:
    out = ""
    for operator, keys in sorted((condition or {}).items()):
        for key, values in sorted(keys.items()):
            values = values if isinstance(values, list) else [values]
            if operator == "ForAllValues:StringLike" and key == "dynamodb:LeadingKeys":
                out += f" where LeadingKeys like {' '.join(values)}"
            elif operator == "StringLike" and key == "s3:prefix":
                out += f" where prefix like {' '.join(values)}"
            else:
                out += f" where {operator} {key} {' '.join(map(str, values))}"
    return out


def policies(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """The role's own policies and the stack's managed policies it holds."""
    resources = template["Resources"]
    held = resources[role]["Properties"].get("ManagedPolicyArns", [])
    assert all(set(arn) == {"Ref"} and resources[arn["Ref"]]["Type"] == "AWS::IAM::ManagedPolicy" for arn in held), (
        f"{role} holds a policy this stack does not make: its grants would be pinned nowhere")
    return resources[role]["Properties"].get("Policies", []) + [resources[arn["Ref"]]["Properties"] for arn in held]


def grants(template: dict[str, Any], role: str) -> set[tuple[str, str]]:
    """(action, resource) of every Allow statement of the role's policies, conditions written out."""
    out = set()
    for policy in policies(template, role):
        for statement in policy["PolicyDocument"]["Statement"]:
            stack_conditions = ""
            while "Fn::If" in statement:
                condition, statement, otherwise = statement["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}, f"{role}: an Fn::If with two grants"
                stack_conditions += f" if {condition}"
            assert statement["Effect"] == "Allow" and not {"NotAction", "NotResource"} & set(statement), statement
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            suffix = stack_conditions + condition_text(statement.get("Condition"))
            out |= {(a, resource_name(r) + suffix) for a in actions for r in resources}
    return out


def pinned(role: str) -> set[tuple[str, str]]:
    return {(action, resource) for resource, actions in GRANTS[role].items() for action in actions}


@pytest.fixture(scope="module")
def template():
    return packaged_template()


def test_every_role_of_the_template_is_pinned(template):
    roles = {name for name, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert roles - set(GRANTS) == set(), (f"pin the grants of {sorted(roles - set(GRANTS))} in GRANTS: "
                                          "its policy in infra/resources.json, each grant what its code needs")
    assert set(GRANTS) - roles == set(), f"GRANTS pins {sorted(set(GRANTS) - roles)}, no role of the template"
    functions = {r["Properties"]["Role"]["Fn::GetAtt"][0] for r in template["Resources"].values()
                 if r["Type"] == "AWS::Serverless::Function"}
    assert functions == set(GRANTS)


@pytest.mark.parametrize("role", sorted(GRANTS))
def test_a_role_grants_exactly_its_pinned_actions_on_its_pinned_resources(template, role):
    granted = grants(template, role)
    expected = pinned(role)
    assert not granted - expected, f"{role} grants what is not pinned: {sorted(granted - expected)}"
    assert not expected - granted, f"{role} no longer grants: {sorted(expected - granted)}"


def test_every_index_a_role_names_is_an_index_of_its_table(template):
    named = {resource.split(" ")[0] for role in GRANTS for resource in GRANTS[role] if "/index/" in resource}
    assert named
    for resource in named:
        table, index = resource.split("/index/")
        indexes = {i["IndexName"] for i in template["Resources"][table]["Properties"]["GlobalSecondaryIndexes"]}
        assert index in indexes, resource


class Recorder:
    """A DynamoDB client that records the partition key of every item a request names, by
    table, and succeeds."""

    HASH_KEYS = {"jobs": "pk", "idempotency": "id", "stats": "pk"}  # infra/resources.json KeySchema

    def __init__(self) -> None:
        self.keys: dict[str, list[str]] = {}

    def _record(self, table: str, *items: dict[str, Any]) -> None:
        self.keys.setdefault(table, []).extend(item[self.HASH_KEYS[table]]["S"] for item in items)

    def transact_write_items(self, TransactItems, **_):
        for entry in TransactItems:
            (request,) = entry.values()
            self._record(request["TableName"], request.get("Key") or request["Item"])
        return {}

    def batch_write_item(self, RequestItems, **_):
        for table, requests in RequestItems.items():
            self._record(table, *[r.get("PutRequest", {}).get("Item") or r["DeleteRequest"]["Key"] for r in requests])
        return {}

    def put_item(self, TableName, Item, **_):
        self._record(TableName, Item)
        return {}

    def update_item(self, TableName, Key, **_):
        self._record(TableName, Key)
        return {"Attributes": {"generation": {"N": "1"}}}

    def get_item(self, TableName, Key, **_):
        self._record(TableName, Key)
        return {}

    def query(self, TableName, ExpressionAttributeValues, **_):
        """A partition's items (a job, a run, an artifact): what a purge reads before it deletes."""
        partition = ExpressionAttributeValues[":pk"]
        return {"Items": [{"pk": partition, "sk": {"S": sk}} for sk in ("JOB", "RUN#0001", "ART#summary.txt")]}


def like(value: str, pattern: str) -> bool:
    """IAM's StringLike: `*` any run of characters, `?` one."""
    return re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
                        value) is not None


def leading_keys(role: str, table: Optional[str] = None) -> list[str]:
    """The patterns of `role`'s one LeadingKeys condition (on `table`, where it has more)."""
    (resource,) = [r for r in GRANTS[role] if "LeadingKeys" in r and (table is None or r.startswith(f"{table} "))]
    return resource.split(" where LeadingKeys like ", 1)[1].split(" where ", 1)[0].split(" ")


def within(key: str, patterns: list[str]) -> bool:
    """IAM's ForAllValues:StringLike for one key: it matches one of the patterns."""
    return any(like(key, p) for p in patterns)


def test_each_writer_held_to_a_key_prefix_names_only_items_within_it():
    """The code behind each LeadingKeys condition names no item outside its pattern: the
    conditions above are the code's key prefixes, not a guess at them."""
    from chalicelib.adapters.dynamodb import DynamoJobStore
    from chalicelib.adapters.dynamodb_cache import DynamoCacheStore
    from chalicelib.adapters.dynamodb_ledger import DynamoDeliveryLedger
    from chalicelib.adapters.parked_record_drops import DynamoParkedRecordDrops
    from chalicelib.domain.job import Job
    from chalicelib.ports import SubmissionKey, TaskCompletion
    from chalicelib.subscribers.handlers import ERP_BRIDGE
    from chalicelib.worker.handlers import UNREADABLE_LEDGER

    api = Recorder()  # a keyed submit, and the read of its key when the quota refuses a replay
    store = DynamoJobStore(api, "jobs", keys_table="idempotency")
    job = Job(id="j-1", type="demo.steps", payload={}, tenant="acme", user="ann", priority="normal",
              max_attempts=1, timeout_s=1, created_at="2026-01-01T00:00:00Z")
    store.create_keyed(job, SubmissionKey("acme", "k-1", "j-1", "h", 2_000_000_000), now=1_000_000_000)
    store.submission_key("acme", "k-1", now=1_000_000_000)
    assert len(api.keys["idempotency"]) == 2
    assert all(within(k, leading_keys("ApiHandlerRole", "IdempotencyTable")) for k in api.keys["idempotency"]), api.keys

    operator = Recorder()  # an operator's drop of a parked stream record, and its removal once deleted
    drops = DynamoParkedRecordDrops(operator, "stats")
    drops.request("5fa1c3e2-0000-4000-8000-000000000001")
    drops.removed("5fa1c3e2-0000-4000-8000-000000000001")
    assert list(operator.keys) == ["stats"] and len(operator.keys["stats"]) == 2
    assert all(within(k, leading_keys("ApiHandlerRole", "StatsTable")) for k in operator.keys["stats"]), operator.keys

    bridge = Recorder()  # the ERP bridge's ledger: opened, then closed (one done, one failed)
    ledger = DynamoDeliveryLedger(bridge, "idempotency", ERP_BRIDGE, ttl_s=60)
    ledger.begin(["e-1", "e-2"], 30)
    ledger.finish(["e-1"], ["e-2"])
    assert list(bridge.keys) == ["idempotency"] and len(bridge.keys["idempotency"]) == 4
    assert all(within(k, leading_keys("ErpBridgeRole")) for k in bridge.keys["idempotency"]), bridge.keys

    worker = Recorder()  # a worker parks a message that is no job message on its ledger
    ledger = DynamoDeliveryLedger(worker, "idempotency", UNREADABLE_LEDGER, ttl_s=60)
    ledger.begin_parking("m-1")
    ledger.parked("m-1")
    assert list(worker.keys) == ["idempotency"] and len(worker.keys["idempotency"]) == 2
    assert all(within(k, leading_keys("JobWorkerRole")) for k in worker.keys["idempotency"]), worker.keys

    cleanup = Recorder()  # cleanup-runs' purge of a job: its items deleted in a batch (low worker, inline API)
    from chalicelib.adapters.retention import DynamoFinishedJobs

    DynamoFinishedJobs(cleanup, "jobs").purge("j-1")
    assert sorted(cleanup.keys["jobs"]) == ["JOB#j-1"] * 4, cleanup.keys  # its mark, then the batch of three
    for role in ("JobWorkerLowRole", "ApiHandlerRole"):
        assert all(within(k, leading_keys(role, "JobsTable")) for k in cleanup.keys["jobs"]), (role, cleanup.keys)

    invalidation = Recorder()  # the cache-invalidation consumer's writes
    cache = DynamoCacheStore(invalidation, "jobs")
    cache.record_completion("acme", "p-1", TaskCompletion("demo.steps", "2026-01-01T00:00:00Z", "j-1"))
    cache.invalidate("acme", "p-1", "steps-summary", "j-1", "2026-01-01T00:00:00Z")
    assert list(invalidation.keys) == ["jobs"] and len(invalidation.keys["jobs"]) == 2
    assert all(within(k, leading_keys("CacheInvalidationRole")) for k in invalidation.keys["jobs"]), invalidation.keys

    publisher = Recorder()  # the event publisher's counts of a batch: markers, status, hour, tenant
    from chalicelib.adapters.stats import DynamoStatsStore
    from chalicelib.domain.stats import StatDelta

    DynamoStatsStore(publisher, "stats").record_batch([
        StatDelta("j-1#1", status={"queued": 1}, hour="2026-01-01T00", events={"t:demo.steps:submitted": 1},
                  tenant="acme", unfinished=1),
        StatDelta("j-1#2", status={"queued": -1, "completed": 1}, hour="2026-01-01T00",
                  events={"t:demo.steps:completed": 1}, tenant="globex", unfinished=1),
    ])
    assert sorted(publisher.keys["stats"]) == ["HOUR#2026-01-01T00", "SEEN#j-1#1", "SEEN#j-1#2", "STATUS",
                                               "TENANT#acme", "TENANT#globex"], publisher.keys
    patterns = leading_keys("EventPublisherRole", "StatsTable")
    assert all(within(k, patterns) for k in publisher.keys["stats"]), publisher.keys
    # What the publisher never writes: the reconciler's record, a parked record's entry (whose
    # drop requested there makes the reconciler delete the record unpublished).
    assert not within("RECONCILER", patterns) and not within(operator.keys["stats"][0], patterns)


def test_each_publisher_puts_only_the_events_its_grant_names():
    """The Source and DetailType of every entry each publisher writes match its role's
    conditions on PutEvents: the conditions above are the code's events, not a guess at them."""
    from chalicelib.adapters.eventbridge import EventBridgePublisher
    from chalicelib.domain.events import CacheInvalidatedEvent, JobEvent

    class Bus:
        def __init__(self) -> None:
            self.entries: list[dict[str, Any]] = []

        def put_events(self, Entries, **_):
            self.entries.extend(Entries)
            return {"FailedEntryCount": 0, "Entries": [{"EventId": "e"} for _ in Entries]}

    def conditions(role: str) -> list[tuple[str, str]]:
        (resource,) = [r for r in GRANTS[role] if r.startswith("JobEventsBus ")]
        return re.findall(r" where (StringEquals|StringLike) events:(\S+) (\S+)", resource)

    def allowed(role: str, entry: dict[str, Any]) -> bool:
        fields = {"source": entry["Source"], "detail-type": entry["DetailType"]}
        return all(like(fields[key], value) if operator == "StringLike" else fields[key] == value
                   for operator, key, value in conditions(role))

    common = {"timestamp": "2026-01-01T00:00:00.000Z", "job_id": "j-1", "tenant": "acme", "type": "demo.steps",
              "scope": "p-1", "version": 2}
    status = [JobEvent(event_id="e-1", event_type=kind, status="running", progress=50, attempt=1,
                       previous_status="running", previous_progress=40, step=None, message=None, error=None,
                       finished_at=None, **common)
              for kind in ("job.status.changed", "job.status.progress")]
    announcement = CacheInvalidatedEvent(event_id="e-2", namespaces=["steps-summary"],
                                         **{k: common[k] for k in ("timestamp", "job_id", "tenant", "scope", "type")})
    stream, cache = Bus(), Bus()
    EventBridgePublisher(stream, "job-events").publish(status)
    EventBridgePublisher(cache, "job-events").publish([announcement])
    assert len(stream.entries) == 2 and len(cache.entries) == 1
    for role in ("EventPublisherRole", "ReconcilerRole"):
        assert conditions(role), f"{role} may put any event on the bus"
        assert all(allowed(role, e) for e in stream.entries), (role, stream.entries)
        assert not any(allowed(role, e) for e in cache.entries), (role, cache.entries)
    assert conditions("CacheInvalidationRole"), "CacheInvalidationRole may put any event on the bus"
    assert all(allowed("CacheInvalidationRole", e) for e in cache.entries), cache.entries
    assert not any(allowed("CacheInvalidationRole", e) for e in stream.entries), stream.entries

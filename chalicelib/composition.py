"""The composition root: the one place that reads settings, builds AWS clients (through
adapters/aws_clients.py) and wires the adapters into the lifecycle, once per process (reused
across warm invocations)."""
from __future__ import annotations

import difflib
import threading
from functools import cached_property
from typing import Any, Callable, Optional

from chalicelib.adapters.aws_clients import AwsClients
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.lifecycle import JobLifecycle
from chalicelib.settings import Settings, SettingsError, load_settings


class Container:
    def __init__(self, settings: Settings, *, session: Any = None) -> None:
        self.settings = settings
        self._aws = AwsClients(connect_timeout_s=settings.aws_connect_timeout_s,
                               read_timeout_s=settings.aws_read_timeout_s,
                               max_attempts=settings.aws_max_attempts,
                               count_requests=settings.count_aws_requests, session=session)
        # Subscriber name -> its DeliveryLedger, built on first use (tests put their own here).
        self.delivery_ledgers: dict[str, Any] = {}

    def client(self, service: str, *, single_try: bool = False) -> Any:
        """The process's boto3 client for `service` (AwsClients.client): the one every adapter
        built here is given; `single_try`, the one whose calls are never tried again."""
        return self._aws.client(service, single_try=single_try)

    def sending_while(self, time_left_s: Optional[Callable[[], float]], keep_s: float) -> Any:
        """A context in which no AWS request is started once `time_left_s()` is under `keep_s`
        (AwsClients.sending_while): each is refused unsent, as a request that did not answer."""
        return self._aws.sending_while(time_left_s, keep_s)

    def take_aws_requests(self) -> Optional[dict[str, int]]:
        """The AWS requests counted since the last call, by operation (None: not counting)."""
        return self._aws.take_requests()

    @cached_property
    def token_policy(self) -> Any:
        """How API tokens are checked; raises SettingsError where the auth secret is not deployed."""
        from chalicelib.domain.tokens import TokenPolicy

        settings = self.settings
        return TokenPolicy(
            settings.require_auth_secret(),
            max_lifetime_s=settings.token_max_lifetime_s,
            issuer=settings.token_issuer or None,
            audience=settings.token_audience or None,
        )

    @cached_property
    def registry(self) -> JobTypeRegistry:
        """The deployment's job types (demo types only where DemoJobTypes is on), with the
        maintenance types running this container's tasks."""
        from chalicelib.job_types import build_registry
        from chalicelib.job_types.maintenance import with_maintenance

        return with_maintenance(build_registry(demo_types=self.settings.demo_job_types), lambda: self.maintenance,
                                submit=lambda **job: self.lifecycle.submit(**job))

    @cached_property
    def blobs(self) -> Optional[Any]:
        """The jobs bucket, or None when no bucket is configured (everything stays inline)."""
        if not self.settings.bucket_name:
            return None
        from chalicelib.adapters.s3 import S3BlobStore

        return S3BlobStore(self.client("s3"), self.settings.bucket_name)

    @cached_property
    def store(self) -> Any:
        from chalicelib.adapters.dynamodb import DynamoJobStore

        client = self.client("dynamodb")
        if self.settings.fault_claim_failure_rate > 0:
            from chalicelib.adapters.faults import FailingClaims

            client = FailingClaims(client, self.settings.fault_claim_failure_rate)
        return DynamoJobStore(
            client,
            self.settings.table_name,
            blobs=self.blobs,
            inline_limit=self.settings.inline_limit_bytes,
            keys_table=self.settings.idempotency_table_name,
            on_unreadable=_log_unreadable,
        )

    @cached_property
    def reads(self) -> Any:
        from chalicelib.job_reads import JobReads

        return JobReads(self.store)

    @cached_property
    def artifacts(self) -> Optional[Any]:
        if self.blobs is None:
            return None
        from chalicelib.adapters.artifacts import DynamoArtifactStore

        return DynamoArtifactStore(
            self.client("dynamodb"),
            self.settings.table_name,
            self.blobs,
            inline_limit=self.settings.inline_limit_bytes,
        )

    @cached_property
    def finished_jobs(self) -> Any:
        from chalicelib.adapters.retention import DynamoFinishedJobs

        return DynamoFinishedJobs(self.client("dynamodb"), self.settings.table_name, self.blobs)

    @cached_property
    def queue(self) -> Any:
        from chalicelib.adapters.sqs import SqsJobQueue

        def sqs(single_try: bool = False) -> Any:
            client = self.client("sqs", single_try=single_try)
            if self.settings.fault_send_message_failure_rate > 0:
                from chalicelib.adapters.faults import FailingSendMessage

                client = FailingSendMessage(client, self.settings.fault_send_message_failure_rate)
            return client

        # A dead letter is sent once: its single-try client is built when the first is sent.
        return SqsJobQueue(sqs(), self.settings.queue_urls, self.settings.dead_letter_urls,
                           letters=lambda: sqs(single_try=True))

    def _stats_table(self, what: str) -> str:
        """The stats table's name; raises SettingsError naming `what` is unavailable without it."""
        if not self.settings.stats_table_name:
            raise SettingsError(f"JOBPIPE_STATS_TABLE is not set; {what}")
        return self.settings.stats_table_name

    @cached_property
    def stats(self) -> Any:
        from chalicelib.adapters.stats import DynamoStatsStore

        return DynamoStatsStore(self.client("dynamodb"), self._stats_table("statistics are unavailable"))

    @cached_property
    def quota(self) -> Any:
        """Admission at submit, or None when the stack sets no bound."""
        if not self.settings.tenant_max_unfinished_jobs:
            return None
        from chalicelib.quota import TenantQuota

        return TenantQuota(self.stats, self.settings.tenant_max_unfinished_jobs, recount=self.store.count_unfinished)

    @cached_property
    def queue_operations(self) -> Any:
        from chalicelib.adapters.sqs_operations import SqsQueueOperations

        return SqsQueueOperations(self.client("sqs"), self.settings.queue_urls, self.settings.dead_letter_urls,
                                  self.settings.other_dead_letters, targeted=self.settings.targeted_dead_letters)

    @cached_property
    def maintenance(self) -> Any:
        from chalicelib.adapters import health
        from chalicelib.adapters.dynamodb_keys import TTL_ATTRIBUTE
        from chalicelib.maintenance import TEMP_PREFIX, MaintenanceTasks
        from chalicelib.observability import logger

        settings = self.settings
        probes = {"jobs_table": health.table_probe(self.client("dynamodb"), settings.table_name)}
        if settings.stats_table_name:
            probes["stats_table"] = health.table_probe(self.client("dynamodb"), settings.stats_table_name)
        probes["idempotency_table"] = health.table_probe(self.client("dynamodb"), settings.idempotency_table_name,
                                                         expires_on=TTL_ATTRIBUTE)
        if settings.bucket_name:
            # Under the prefix the clean-up lists: the roles may list the bucket there.
            probes["bucket"] = health.bucket_probe(self.client("s3"), settings.bucket_name, TEMP_PREFIX)
        # Always one: the events go to `default` when JOBPIPE_EVENT_BUS names no bus.
        probes["event_bus"] = health.event_bus_probe(self.client("events"), settings.event_bus_name)
        return MaintenanceTasks(
            finished=self.finished_jobs,
            stats=self.stats,
            queues=self.queue_operations,
            blobs=self.blobs,
            probes=probes,
            observe=lambda message, extra: logger.warning(message, extra=extra),
        )

    @cached_property
    def task_runs(self) -> Any:
        """The maintenance routes' starts: inline in the API function when USE_TASK_QUEUE=false."""
        from chalicelib.maintenance import TaskRuns

        return TaskRuns(lambda: self.maintenance, lambda: self.lifecycle, inline=not self.settings.use_task_queue)

    @cached_property
    def lifecycle(self) -> JobLifecycle:
        return JobLifecycle(
            self.store,
            self.queue,
            self.registry,
            retention_s=self.settings.retention_days * 86400,
            retry_base_s=self.settings.retry_base_s,
            dispatch_grace_s=self.settings.dispatch_grace_s,
            max_dispatches=self.settings.max_dispatches,
            caches_of=self.cache_rules.namespaces_for,
            key_ttl_s=self.settings.idempotency_ttl_s,
        )

    @cached_property
    def cache_rules(self) -> Any:
        """The rules file, checked (checked_cache_rules); raises SettingsError for a bad one."""
        from chalicelib.subscribers.cache import load_rules

        return checked_cache_rules(load_rules)

    @cached_property
    def reconciler(self) -> Any:
        from chalicelib.observability import logger
        from chalicelib.reconciler import Reconciler

        return Reconciler(self.lifecycle, self.queue_operations, replay=self.stream_replay,
                          observe=lambda message, extra: logger.info(message, extra=extra))

    @cached_property
    def stream_replay(self) -> Optional[Any]:
        """Replays the change-stream function's failed batches; None where StreamFailureQueue
        is not configured."""
        if not self.settings.stream_failure_queue_url:
            return None
        from chalicelib.adapters.dynamodb_stream import DynamoChangeStream
        from chalicelib.events.replay import StreamReplay

        return StreamReplay(
            self.stream_failures,
            DynamoChangeStream(self.client("dynamodbstreams"), self.settings.table_name),
            self.stream_consumer,
            drops=self.parked_record_drops,
        )

    @cached_property
    def parked_record_drops(self) -> Optional[Any]:
        """Operators' drops of parked stream records the reconciler holds hidden, kept in the
        stats table; None without StreamFailureQueue or the stats table (a hidden record is then
        found only once it shows)."""
        if not (self.settings.stream_failure_queue_url and self.settings.stats_table_name):
            return None
        from chalicelib.adapters.parked_record_drops import DynamoParkedRecordDrops

        return DynamoParkedRecordDrops(self.client("dynamodb"), self.settings.stats_table_name)

    @cached_property
    def stream_failures(self) -> Optional[Any]:
        """StreamFailureQueue: failed batches' descriptions and parked records; None where it is
        not configured."""
        if not self.settings.stream_failure_queue_url:
            return None
        from chalicelib.adapters.sqs_stream_failures import SqsFailedStreamBatches

        return SqsFailedStreamBatches(self.client("sqs"), self.settings.stream_failure_queue_url,
                                      on_foreign=_log_foreign_stream_failure)

    @cached_property
    def reconciler_log(self) -> Any:
        from chalicelib.adapters.reconciler_log import DynamoReconcilerLog

        return DynamoReconcilerLog(self.client("dynamodb"), self._stats_table("the reconciler's passes are not kept"))

    @cached_property
    def clock(self) -> Any:
        """The worker's Clock: a batch's turns, hand-back and lease extensions read it, and so does
        its runner (each attempt's progress window, cancel polls and remaining time); tests put a
        ManualClock here."""
        from chalicelib.adapters.clocks import SystemClock

        return SystemClock()

    @cached_property
    def runner(self) -> Any:
        from chalicelib.observability import end_process, job_event
        from chalicelib.worker.runner import JobRunner

        return JobRunner(
            self.lifecycle,
            self.registry,
            clock=self.clock,
            observe=job_event,
            artifacts=self.artifacts,
            progress_interval_s=self.settings.progress_min_interval_s,
            admit=self.quota.admit if self.quota is not None else None,  # spawned jobs count too
            end_process=end_process,
        )

    @cached_property
    def publisher(self) -> Any:
        from chalicelib.adapters.eventbridge import EventBridgePublisher

        client = self.client("events")
        if self.settings.fault_put_events_failure_rate > 0:
            from chalicelib.adapters.faults import FailingPutEvents

            client = FailingPutEvents(client, self.settings.fault_put_events_failure_rate)
        return EventBridgePublisher(client, self.settings.event_bus_name)

    @cached_property
    def stream_consumer(self) -> Any:
        """Counts and publishes the jobs table's stream; no counting without a stats table, and
        an unreadable record parked on StreamFailureQueue (failing its batch without one)."""
        from chalicelib.adapters.dynamodb_stream import job_change
        from chalicelib.events.stream import StreamConsumer

        stats = self.stats if self.settings.stats_table_name else None
        # Its SQS client built on the first record to park, not with every cold start.
        park = (lambda record, reason: self.stream_failures.park(record, reason)) \
            if self.settings.stream_failure_queue_url else None
        return StreamConsumer(job_change, self.publisher, stats, park=park, on_parked=_log_parked_record)

    @cached_property
    def cache_store(self) -> Any:
        from chalicelib.adapters.dynamodb_cache import DynamoCacheStore

        return DynamoCacheStore(self.client("dynamodb"), self.settings.table_name)

    @cached_property
    def cache_invalidator(self) -> Any:
        from chalicelib.observability import logger
        from chalicelib.subscribers.cache import CacheInvalidator

        return CacheInvalidator(
            self.cache_store, self.cache_rules, self.publisher,
            log=lambda message, extra: logger.info(message, extra=extra),
        )

    @cached_property
    def erp_bridge(self) -> Any:
        from chalicelib.adapters.webhook import HttpWebhookSender
        from chalicelib.subscribers.erp import ErpBridge

        url, secret = self.settings.require_webhook()
        return ErpBridge(HttpWebhookSender(), url, secret)

    @cached_property
    def erp_dead_letters(self) -> Any:
        """ErpWebhookDeadLetterQueue, where the ERP bridge parks an event the ERP refused for
        good; None without its URL (a refused event is then retried like any failure)."""
        from chalicelib.adapters.sqs import SqsDeadLetterQueue

        url = self.settings.erp_webhook_dlq_url
        return SqsDeadLetterQueue(self.client("sqs"), url) if url else None

    def delivery_ledger(self, consumer: str) -> Any:
        """The delivery records of subscriber `consumer`, in the idempotency table (one
        adapter per consumer, built once per process)."""
        ledger = self.delivery_ledgers.get(consumer)
        if ledger is None:
            from chalicelib.adapters.dynamodb_ledger import DynamoDeliveryLedger
            from chalicelib.defaults import DELIVERY_RECORD_TTL_S

            ledger = self.delivery_ledgers[consumer] = DynamoDeliveryLedger(
                self.client("dynamodb"), self.settings.idempotency_table_name, consumer, ttl_s=DELIVERY_RECORD_TTL_S
            )
        return ledger


_container: Optional[Container] = None
_refused: Optional[SettingsError] = None  # this process's settings, refused once and for all
_lock = threading.Lock()
_reported: set[str] = set()


def report_misconfiguration(error: SettingsError) -> None:
    """Log `error` (its variable and rule, never a value) as one line, once per process:
    a function deployed with a bad setting fails every call, and says why once."""
    from chalicelib.observability import logger

    message = str(error)
    with _lock:
        if message in _reported:
            return
        _reported.add(message)
    logger.error(message)


def container() -> Container:
    """The process's container; raises SettingsError (logged once, on the first call) when the
    environment breaks a setting's rule: every call after fails the same way, without reading
    the environment again (it does not change within a process)."""
    global _container, _refused
    if _container is None:
        with _lock:
            if _container is None and _refused is None:
                try:
                    built = Container(load_settings())
                    built.cache_rules  # noqa: B018 - a bad rules file refused at cold start, as a bad setting is
                    _container = built
                except SettingsError as exc:
                    _refused = exc
        if _container is None:
            assert _refused is not None
            report_misconfiguration(_refused)
            # the pydantic error it was made from is left out: it says no more, in a traceback
            raise SettingsError(str(_refused)) from None
    return _container


# Where the cache invalidation rules live in the code (and in the deployment's zip).
RULES_SOURCE = "chalicelib/cache_invalidation_rules.json"


def known_job_types() -> list[str]:
    """The job types a cache invalidation rule may name: every type this code registers for jobs
    to be submitted as, whatever a deployment's DemoJobTypes (a rule for a demo type where it is
    off names a real type that simply never completes there). Not the built-in maintenance
    types: their jobs have no scope, so their completions invalidate no cache."""
    from chalicelib.job_types import build_registry

    return build_registry(demo_types=True).names(public=True)


def checked_cache_rules(read: Callable[[], Any], source: str = RULES_SOURCE) -> Any:
    """The InvalidationRules `read` returns, each of their job types one known_job_types names.
    Raises SettingsError, one line naming `source` and what is wrong: a file missing or
    unreadable, not JSON, a rule its model refuses, or a key that is no such job type (a typo, a
    type renamed since, a maintenance type): no completion of it invalidates anything, so the
    caches of the namespaces its rule names would serve stale values."""
    from pydantic import ValidationError

    from chalicelib.domain.registry import MAINTENANCE_PREFIX

    try:
        rules = read()
    except ValidationError as exc:
        problems = "; ".join(_where(e["loc"]) + " ".join(str(e["msg"]).removeprefix("Value error, ").split())
                             for e in exc.errors(include_url=False))
        raise SettingsError(f"invalid cache invalidation rules in {source}: {problems}") from None
    except (OSError, ValueError) as exc:
        raise SettingsError(f"invalid cache invalidation rules in {source}: {' '.join(str(exc).split())}") from None
    known = known_job_types()
    unknown = rules.unknown_types(known)
    if unknown:
        def named(name: str) -> str:
            if name.startswith(MAINTENANCE_PREFIX):
                return f"{name!r} ({MAINTENANCE_PREFIX}* are the built-in maintenance types, whose jobs have no scope)"
            return f"{name!r}" + "".join(f" ({close}?)" for close in difflib.get_close_matches(name, known, 1))

        raise SettingsError(
            f"invalid cache invalidation rules in {source}: keys name no registered job type: "
            f"{', '.join(map(named, unknown))} (no completion of theirs would invalidate the namespaces of their "
            f"rules, whose caches would serve stale values); the registered job types are: {', '.join(known)}")
    return rules


def _where(loc: tuple[Any, ...]) -> str:
    """Where in the rules file a refused value is, as a prefix: `demo.steps[1]: `, or none for
    the whole file (or a rule whose own message names its job type)."""
    if not loc:
        return ""
    return str(loc[0]) + "".join(f"[{step}]" for step in loc[1:]) + ": "


def take_aws_requests() -> Optional[dict[str, int]]:
    """End of an invocation: the AWS requests it sent, by operation; None unless the process
    built its container with JOBPIPE_COUNT_AWS_REQUESTS on."""
    return None if _container is None else _container.take_aws_requests()


def use(replacement: Optional[Container]) -> None:
    """Swap the process's container (tests); `None` rebuilds from the environment on next use."""
    global _container, _refused
    _container, _refused = replacement, None
    _reported.clear()


def _log_foreign_stream_failure(message_id: str, body: str, held_s: int) -> None:
    """A StreamFailureQueue message that describes no batch, hidden from the reconciler's next
    passes and so from GET /api/system/dlq too: a WARNING line naming it."""
    from chalicelib.observability import logger

    logger.warning("StreamFailureQueue message describes no stream batch: held for an operator",
                   extra={"message_id": message_id, "body": body, "held_s": held_s})


def _log_parked_record(sequence_number: str, reason: str) -> None:
    """A stream record the change-stream function could not read, parked on StreamFailureQueue:
    an ERROR line naming it (its events wait for a version that reads it)."""
    from chalicelib.observability import logger

    logger.error("stream record unreadable: parked on StreamFailureQueue",
                 extra={"sequence_number": sequence_number, "error": reason})


def _log_unreadable(job_id: str, exc: Exception) -> None:
    """A job item a page read left out (JobStore.get_many): an ERROR line naming it."""
    from chalicelib.domain.errors import describe
    from chalicelib.observability import logger

    logger.error("job record unreadable: left out", extra={"job_id": job_id, "error": describe(exc)[:500]})

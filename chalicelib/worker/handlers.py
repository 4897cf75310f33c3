"""SQS-triggered worker functions. Batches go through Powertools' BatchProcessor; failed
records are reported back (ReportBatchItemFailures) so only they are delivered again. How a
batch runs (its order, the batch-mates' short lease and hand-back) is chalicelib/worker/batch.py;
here it gets its services from the container."""
from __future__ import annotations

from typing import Any, Optional

from chalice import Blueprint

from chalicelib.composition import Container, container
from chalicelib.defaults import WORKER_BATCH_SIZE
from chalicelib.invocation import entry_point
from chalicelib.worker.batch import BatchServices, job_batch

worker = Blueprint(__name__)


# Placeholder names: the deployment template binds each function to its real queue ARN.
# One queue, worker function and concurrency limit per priority, so a flood of low-priority
# jobs waits behind its own limit instead of in front of high-priority ones.
JOBS_QUEUE = "jobpipe-jobs"
JOBS_QUEUE_HIGH = "jobpipe-jobs-high"
JOBS_QUEUE_LOW = "jobpipe-jobs-low"
# The delivery ledger (records DELIVERY#job_worker#parked:<message id> in the idempotency table)
# on which the three workers park a message that is no job message once.
UNREADABLE_LEDGER = "job_worker"


def process_jobs_batch(event: dict[str, Any], context: Any, priority: str = "normal") -> dict[str, Any]:
    """Run every record of `priority`'s queue, those delivered most often first; returns
    {"batchItemFailures": [...]} for those to deliver again."""
    # Imported on the first batch: every function loads app.py; only the SQS consumers batch.
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    services = container()
    started = services.clock.monotonic()  # before the queue's client is built (a fresh process's first batch)
    with job_batch(event.get("Records") or [], _batch_services(services), time_left_s=lambda: _seconds_left(context),
                   priority=priority, started=started) as (records, record_handler):
        return process_partial_response(
            event={**event, "Records": records},
            record_handler=record_handler,
            processor=BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False),
            context=context,
        )


def _batch_services(services: Container) -> BatchServices:
    """The container's services a batch runs on; the runner and the ledger are built when a
    record first needs them."""
    return BatchServices(
        queue=services.queue,
        clock=services.clock,
        runner=lambda: services.runner,
        unreadable_ledger=lambda: services.delivery_ledger(UNREADABLE_LEDGER),
        redelivery_wait_s=services.settings.redelivery_wait_s,
    )


def _seconds_left(context: Any) -> Optional[float]:
    """What is left of the invocation, or None when the context does not say."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return None
    return context.get_remaining_time_in_millis() / 1000


@worker.on_sqs_message(queue=JOBS_QUEUE, batch_size=WORKER_BATCH_SIZE, name="job_worker")
@entry_point
def job_worker(event: Any) -> dict[str, Any]:
    """Normal priority."""
    return process_jobs_batch(event.to_dict(), event.context, "normal")


@worker.on_sqs_message(queue=JOBS_QUEUE_HIGH, batch_size=WORKER_BATCH_SIZE, name="job_worker_high")
@entry_point
def job_worker_high(event: Any) -> dict[str, Any]:
    return process_jobs_batch(event.to_dict(), event.context, "high")


@worker.on_sqs_message(queue=JOBS_QUEUE_LOW, batch_size=WORKER_BATCH_SIZE, name="job_worker_low")
@entry_point
def job_worker_low(event: Any) -> dict[str, Any]:
    return process_jobs_batch(event.to_dict(), event.context, "low")

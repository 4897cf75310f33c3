"""SQS-triggered worker functions. Batches go through Powertools' BatchProcessor; failed
records are reported back (ReportBatchItemFailures) so only they are delivered again."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from chalice import Blueprint

from chalicelib.composition import Container, container
from chalicelib.defaults import redelivery_wait_s
from chalicelib.invocation import entry_point
from chalicelib.observability import logger, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

worker = Blueprint(__name__)


# Placeholder names: the deployment template binds each function to its real queue ARN.
# One queue, worker function and concurrency limit per priority, so a flood of low-priority
# jobs waits behind its own limit instead of in front of high-priority ones.
JOBS_QUEUE = "jobpipe-jobs"
JOBS_QUEUE_HIGH = "jobpipe-jobs-high"
JOBS_QUEUE_LOW = "jobpipe-jobs-low"
# One job per invocation. In a batch, a job that kills the process (out of memory, a crash)
# takes its batch-mates down unprocessed: they stay hidden for the queue's visibility timeout
# and each such crash counts as a receive, until the redrive policy dead-letters a job that
# never ran and its record stays queued for good. Alone, a message is received once per
# attempt (twice when its worker died), and the lease alone decides when it is retried.
WORKER_BATCH_SIZE = 1


class RecordRunner:
    """Runs one SQS record of a batch within the invocation's remaining time."""

    def __init__(self, lambda_context: Any, services: Container) -> None:
        self._context = lambda_context
        self._services = services

    def _time_left_s(self) -> Optional[float]:
        if self._context is None or not hasattr(self._context, "get_remaining_time_in_millis"):
            return None
        return self._context.get_remaining_time_in_millis() / 1000

    @tracer.capture_method
    def __call__(self, record: SQSRecord) -> None:
        # The runner (job context, progress, timeouts) is the workers' alone: not in app.py's imports.
        from chalicelib.worker.runner import DeferredDelivery, parse_message

        message = parse_message(record.body)
        queue = self._services.queue

        def hold(seconds: int) -> None:
            queue.set_visibility(record.event_source_arn, record.receipt_handle, seconds)

        logger.append_keys(job_id=message.job_id, attempt=message.attempt, message_id=record.message_id)
        try:
            self._services.runner.run(message, time_left_s=self._time_left_s(), hold=hold)
        except DeferredDelivery as deferred:
            if deferred.retry_after_s is not None:
                hold(deferred.retry_after_s)
            logger.info("delivery deferred", extra={"reason": str(deferred)})
            raise
        except Exception as exc:
            # Failed before the handler's outcome was written (throttling, a store or blob
            # error): deliver again soon rather than after the queue's visibility timeout.
            receives = int(record.attributes.approximate_receive_count or 1)
            wait = redelivery_wait_s(receives, self._services.settings.redelivery_base_s,
                                     self._services.settings.redelivery_max_s)
            logger.warning("delivery failed; retrying", extra={"error": f"{type(exc).__name__}: {exc}"[:500],
                                                                 "retry_in_s": wait, "receive_count": receives})
            try:
                hold(wait)
            except Exception:  # the queue is unreachable too: its visibility timeout applies
                logger.warning("could not shorten the failed delivery's visibility")
            raise
        finally:
            logger.remove_keys(["job_id", "attempt", "message_id"])


def process_jobs_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run every record; returns {"batchItemFailures": [...]} for those to deliver again."""
    # Imported on the first batch: every function loads app.py; only the SQS consumers batch.
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    return process_partial_response(
        event=event,
        record_handler=RecordRunner(context, container()),
        processor=BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False),
        context=context,
    )


@worker.on_sqs_message(queue=JOBS_QUEUE, batch_size=WORKER_BATCH_SIZE, name="job_worker")
@entry_point
def job_worker(event: Any) -> dict[str, Any]:
    """Normal priority."""
    return process_jobs_batch(event.to_dict(), event.context)


@worker.on_sqs_message(queue=JOBS_QUEUE_HIGH, batch_size=WORKER_BATCH_SIZE, name="job_worker_high")
@entry_point
def job_worker_high(event: Any) -> dict[str, Any]:
    return process_jobs_batch(event.to_dict(), event.context)


@worker.on_sqs_message(queue=JOBS_QUEUE_LOW, batch_size=WORKER_BATCH_SIZE, name="job_worker_low")
@entry_point
def job_worker_low(event: Any) -> dict[str, Any]:
    return process_jobs_batch(event.to_dict(), event.context)

"""What a running attempt writes without changing its job's status, each conditioned on that
attempt still running: its progress (monotonic; a cancel request answered, not refused), and
the children it spawns, each listed on the parent in the child's own transaction."""
from __future__ import annotations

from typing import Any, Optional

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.dynamodb_batch import transact_write
from chalicelib.adapters.dynamodb_items import attribute_value, item_to_job, job_key
from chalicelib.adapters.dynamodb_reads import JobReads
from chalicelib.adapters.dynamodb_table import answer, error_code, not_written, too_large
from chalicelib.adapters.dynamodb_writes import JobWrites
from chalicelib.domain.errors import (
    AttemptEndedError,
    JobCancelledError,
    JobNotFoundError,
    JobpipeError,
    ProgressRejectedError,
    RecordTooLargeError,
    StaleJobError,
    StoreUnavailableError,
)
from chalicelib.domain.job import Job, Progress
from chalicelib.domain.progress import progress_refusal
from chalicelib.domain.status import JobStatus


class AttemptWrites(JobWrites, JobReads):
    """What a running attempt writes without changing the job's status: its progress and its children."""

    def record_progress(self, job_id: str, attempt: int, progress: Progress, *, announce: bool = False,
                        mark: Optional[float] = None) -> Job:
        announced, on_mark = "", ""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        if announce:  # moves the attempt's mark it was decided from, and only that one (Job.event_mark)
            announced = ", #event_percent = :percent, #event_attempt = :attempt"
            names.update({"#event_percent": "event_percent", "#event_attempt": "event_attempt"})
            on_mark = (" AND (attribute_not_exists(#event_percent)"
                       " OR (attribute_exists(#event_attempt) AND #event_attempt <> :attempt))")
            if mark is not None:
                on_mark = (" AND #event_percent = :mark"
                           " AND (attribute_not_exists(#event_attempt) OR #event_attempt = :attempt)")
                values[":mark"] = attribute_value(mark)
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key=job_key(job_id),
                UpdateExpression=f"SET #progress = :progress{announced} ADD #version :one",
                ConditionExpression=(
                    "#status = :running AND #attempts = :attempt AND #progress.#percent <= :percent"
                    f" AND (attribute_not_exists(#cancel) OR #cancel = :false){on_mark}"
                ),
                ExpressionAttributeNames={
                    "#progress": "progress",
                    "#percent": "percent",
                    "#status": "status",
                    "#attempts": "attempts",
                    "#version": "version",
                    "#cancel": "cancel_requested",
                    **names,
                },
                ExpressionAttributeValues={
                    ":progress": attribute_value(progress),
                    ":running": attribute_value(JobStatus.RUNNING.value),
                    ":attempt": attribute_value(attempt),
                    ":percent": attribute_value(progress.percent),
                    ":one": attribute_value(1),
                    ":false": attribute_value(False),
                    **values,
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                stored = answer(exc).get("Item")
                current = (item_to_job(stored) if stored is not None
                           else self.get(job_id, consistent=True, fetch=(), mark_gone=False))
                if current is not None and current.cancel_requested and current.status == JobStatus.RUNNING \
                        and current.attempts == attempt:
                    return current  # a cancel was requested: nothing written, the caller stops
                if announce and _moved_mark(current, attempt, progress.percent, mark):
                    raise StaleJobError(f"job {job_id}'s event mark moved since it was read") from exc
                raise progress_refusal(job_id, attempt, progress.percent, current) from exc
            if too_large(exc):
                raise ProgressRejectedError(  # the report is what is wrong, not the store
                    f"progress of job {job_id} does not fit its record (400 KB with its payload): "
                    "send a shorter message or smaller details") from exc
            raise StoreUnavailableError(f"could not record progress of job {job_id}") from exc
        return item_to_job(response["Attributes"])

    def create_child(self, child: Job, attempt: int) -> None:
        item, ref = self._new_item(child)
        link = self._link(child.parent_id or "", child.id, attempt, listed_already_fails=False, canceled_fails=True)
        transaction = [
            {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": link},
        ]
        try:  # a TransactionConflict is the parent's own progress write, at the same moment: tried again
            transact_write(self._ddb, transaction)
        except (ClientError, BotoCoreError) as exc:
            reasons = [r.get("Code") for r in answer(exc).get("CancellationReasons") or []]
            if reasons[:1] == ["ConditionalCheckFailed"]:  # its payload object is the existing child's
                raise StaleJobError(f"job {child.id} already exists") from exc
            if ref is not None and not_written(exc):  # after a lost answer the child may be stored
                self._blobs.delete([ref["key"]])
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                raise self._not_linked(child.parent_id or "", child.id, attempt) from exc
            if too_large(exc):
                raise RecordTooLargeError(
                    f"job {child.parent_id}'s record has no room to list child {child.id} (400 KB)") from exc
            raise StoreUnavailableError(f"could not spawn child {child.id} of job {child.parent_id}") from exc

    def add_child(self, parent_id: str, child_id: str, attempt: int) -> None:
        try:
            self._ddb.update_item(**self._link(parent_id, child_id, attempt, listed_already_fails=True))
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise StoreUnavailableError(f"could not link child {child_id} to job {parent_id}") from exc
            # the rare path: tell a listed child from a refusal
            parent = self.get(parent_id, fetch=(), mark_gone=False)
            if parent is None or child_id not in parent.children:
                raise self._not_linked(parent_id, child_id, attempt, parent) from exc

    def _link(self, parent_id: str, child_id: str, attempt: int, *, listed_already_fails: bool,
              canceled_fails: bool = False) -> dict[str, Any]:
        """The update appending `child_id` to the parent's children while `attempt` runs (and,
        `canceled_fails`, while no cancel was requested: a new child of a canceled fan-out)."""
        condition = "#status = :running AND #attempts = :attempt"
        names = {"#children": "children", "#version": "version", "#status": "status", "#attempts": "attempts"}
        values = {":empty": {"L": []}, ":child": {"L": [{"S": child_id}]}, ":one": {"N": "1"},
                  ":running": attribute_value(JobStatus.RUNNING.value), ":attempt": attribute_value(attempt)}
        if listed_already_fails:
            condition += " AND NOT contains(#children, :child_id)"
            values[":child_id"] = {"S": child_id}
        if canceled_fails:
            condition += " AND (attribute_not_exists(#cancel) OR #cancel = :false)"
            names["#cancel"] = "cancel_requested"
            values[":false"] = {"BOOL": False}
        return {
            "TableName": self._table,
            "Key": job_key(parent_id),
            "UpdateExpression": "SET #children = list_append(if_not_exists(#children, :empty), :child) ADD #version :one",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def _not_linked(self, parent_id: str, child_id: str, attempt: int, parent: Optional[Job] = None) -> JobpipeError:
        """Why the parent refused to list the child: it does not exist, `attempt` is over, or
        its cancel was requested: the record decides, no object of the parent is read."""
        parent = parent or self.get(parent_id, fetch=(), mark_gone=False)
        if parent is None:
            return JobNotFoundError(f"job {parent_id} does not exist; cannot list child {child_id}")
        if parent.status == JobStatus.RUNNING and parent.attempts == attempt and parent.cancel_requested:
            return JobCancelledError(f"job {parent_id} was canceled: child {child_id} is not spawned")
        return AttemptEndedError.refusing(parent_id, attempt, f"child {child_id} is not spawned")


def _moved_mark(current: Optional[Job], attempt: int, percent: float, mark: Optional[float]) -> bool:
    """Whether an announcing progress write was refused only for its mark: `current`, the job
    that refused it, runs `attempt` below `percent` with another mark than `mark` (Job.event_mark)."""
    return (current is not None and current.status == JobStatus.RUNNING and current.attempts == attempt
            and current.progress.percent <= percent and current.event_mark != mark)

"""Artifacts a job writes through `ctx.artifact(...)`.

Small text artifacts live inline as `pk=JOB#<id>, sk=ART#<name>` items in the job's partition
(one Query lists them with the job's runs' neighbours, no index); binary or large ones go to S3
at `jobs/<id>/artifacts/<attempt>/<name>` (`0002/report.pdf`) and the item keeps the key. Every
item carries `expires_at` (RECORD_PART_KEEP_S after its write) so DynamoDB TTL removes it after
the job's own record (the job's end moves it later when it must: JobStore.keep_parts). Only text that
reads back exactly as UTF-8 is kept inline (the API serves it as text); any other encoding goes
to S3 too.

An attempt's artifact is written in one transaction with a check that the attempt is still the
job's running one: a worker that lost its lease (the next attempt took over, or the job ended)
and woke to write replaces nothing. Its S3 object sits under a key of that write's own (its
attempt's number, and which of the attempt's writes of the name it is), so the upload that
comes before that check cannot overwrite the object the job's item names, even one the same
attempt stored before it lost its lease."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Callable, Collection, Optional

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.cursors import read_cursor, write_cursor
from chalicelib.adapters.dynamodb_batch import transact_write
from chalicelib.adapters.dynamodb_items import ARTIFACT_PREFIX, artifact_key, job_key, job_partition
from chalicelib.defaults import ARTIFACT_PAGE, MAX_CONTENT_TYPE_CHARS, RECORD_PART_KEEP_S
from chalicelib.domain.errors import (
    ArtifactNotFoundError,
    AttemptEndedError,
    InvalidArtifactError,
    StoreUnavailableError,
)
from chalicelib.domain.job import isoformat, utcnow
from chalicelib.domain.media_types import is_media_type
from chalicelib.domain.status import JobStatus
from chalicelib.ports import Artifact, ArtifactInfo, ArtifactPage, BlobStore

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")
_TEXT = re.compile(r"(text/[\w.+\-]+|application/([\w.\-]+\+)?(json|xml))(;.*)?")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidArtifactError(
            "artifact names are 1-128 characters of letters, digits, '.', '_' and '-', "
            f"starting with a letter or digit, not {name!r:.150}"
        )
    return name


def check_content_type(content_type: str) -> str:
    if not is_media_type(content_type):
        raise InvalidArtifactError(
            f"an artifact's content type is a media type of at most {MAX_CONTENT_TYPE_CHARS} characters, "
            f"type/subtype with optional '; name=value' parameters (text/csv; charset=utf-8), not {content_type!r:.300}"
        )
    return content_type


def is_text(content_type: str) -> bool:
    return bool(_TEXT.fullmatch(content_type.lower()))


def blob_key(job_id: str, name: str, attempt: Optional[int] = None, write: int = 1) -> str:
    """An artifact's S3 object; an attempt's under its own number (a name holds no '/'), and
    the attempt's later writes of the name (`write` 2, 3, ...) each under a key of its own
    (`0001-2/<name>`), so no write overwrites the object an earlier one stored."""
    if attempt is None:
        return f"jobs/{job_id}/artifacts/{name}"
    return f"jobs/{job_id}/artifacts/{attempt:04d}{'' if write == 1 else f'-{write}'}/{name}"


def discard_replaced(blobs: BlobStore, job_id: str, name: str, attempt: Optional[int],
                     replaces: Collection[int]) -> None:
    """Delete the objects of `attempt`'s writes `replaces` of artifact `name`, which its write
    that landed replaced (one may hold none: refused before its upload); one that stays is only
    bytes no item names, which the job's purge removes with its prefix."""
    if attempt is None or not replaces:
        return
    try:
        blobs.delete([blob_key(job_id, name, attempt, write) for write in replaces])
    except StoreUnavailableError:  # the artifact is stored: a left-over object is no failure
        pass


def keeps_inline(data: bytes, content_type: str, inline_limit: int) -> bool:
    """Small text that reads back exactly: the API serves an inline artifact as UTF-8 text, so
    text in another encoding (latin-1 bytes under `charset=iso-8859-1`) goes to S3, whose
    presigned URL serves the bytes as written."""
    return is_text(content_type) and len(data) <= inline_limit and _is_utf8(data)


# What a cursor of a job's artifact listing starts with: no job listing's cursor does.
_CURSOR_TAG = "art"


def page_cursor(job_id: str, name: str) -> str:
    """The cursor of a page of job `job_id`'s artifacts that ended at artifact `name`."""
    return write_cursor([_CURSOR_TAG, job_id, name])


def read_page_cursor(cursor: str, job_id: str) -> str:
    """The artifact name a page of `job_id`'s listing ended at; InvalidRequestError for a
    cursor that is not one (another job's, another listing's, made by hand)."""

    def after(plain: Any) -> str:
        if not (isinstance(plain, list) and len(plain) == 3 and plain[0] == _CURSOR_TAG):
            raise ValueError("cursor is no artifact listing's")
        if plain[1] != job_id:
            raise ValueError("cursor belongs to another job's listing")
        if not (isinstance(plain[2], str) and NAME.fullmatch(plain[2])):
            raise ValueError("cursor names no artifact")
        return plain[2]

    return read_cursor(cursor, after)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class DynamoArtifactStore:
    def __init__(
        self,
        client: Any,
        table_name: str,
        blobs: BlobStore,
        *,
        inline_limit: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._ddb = client
        self._table = table_name
        self._blobs = blobs
        self._inline_limit = inline_limit
        self._clock = clock

    def put(self, job_id: str, name: str, data: bytes, content_type: str, *,
            attempt: Optional[int] = None, write: int = 1, replaces: Collection[int] = ()) -> ArtifactInfo:
        check_name(name)
        check_content_type(content_type)
        now = self._clock()
        inline = keeps_inline(data, content_type, self._inline_limit)
        info = ArtifactInfo(job_id, name, content_type, len(data), isoformat(now), "inline" if inline else "s3")
        item: dict[str, Any] = {
            **artifact_key(job_id, name),
            "name": {"S": name},
            "content_type": {"S": content_type},
            "size": {"N": str(len(data))},
            "created_at": {"S": info.created_at},
            "expires_at": {"N": str(int(now.timestamp()) + RECORD_PART_KEEP_S)},
        }
        key = None if inline else blob_key(job_id, name, attempt, write)
        if key is None:
            item["data"] = {"B": data}
        else:
            self._blobs.put(key, data, content_type)
            item["blob_key"] = {"S": key}
        try:
            if attempt is None:
                self._ddb.put_item(TableName=self._table, Item=item)
            else:
                self._put_while_running(job_id, attempt, name, item, key)
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise StoreUnavailableError(f"could not record artifact {name} of job {job_id}") from exc
        discard_replaced(self._blobs, job_id, name, attempt, replaces)
        return info

    def _put_while_running(self, job_id: str, attempt: int, name: str, item: dict[str, Any],
                           key: Optional[str]) -> None:
        """Put `item` if `attempt` is the job's running one; AttemptEndedError (its object
        deleted) if it is not."""
        check = {"ConditionCheck": {
            "TableName": self._table,
            "Key": job_key(job_id),
            "ConditionExpression": "#status = :running AND #attempts = :attempt",
            "ExpressionAttributeNames": {"#status": "status", "#attempts": "attempts"},
            "ExpressionAttributeValues": {":running": {"S": JobStatus.RUNNING.value}, ":attempt": {"N": str(attempt)}},
        }}
        try:  # a TransactionConflict is the attempt's own progress write, at the same moment: tried again
            transact_write(self._ddb, [check, {"Put": {"TableName": self._table, "Item": item}}])
        except ClientError as exc:
            reasons = [r.get("Code") for r in (exc.response or {}).get("CancellationReasons") or []]
            if reasons[:1] != ["ConditionalCheckFailed"]:
                raise
            if key is not None:
                self._blobs.delete([key])
            raise AttemptEndedError.refusing(job_id, attempt, f"artifact {name} is not stored") from exc

    def list(self, job_id: str, *, limit: int = ARTIFACT_PAGE, cursor: Optional[str] = None) -> ArtifactPage:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :art)",
            "ExpressionAttributeValues": {":pk": {"S": job_partition(job_id)}, ":art": {"S": ARTIFACT_PREFIX}},
            "ProjectionExpression": "#n, content_type, #s, created_at, blob_key",
            "ExpressionAttributeNames": {"#n": "name", "#s": "size"},
            # One item more than the page: DynamoDB ends a page that fills its Limit with a
            # LastEvaluatedKey whether or not anything follows, and the item past the page tells.
            "Limit": limit + 1,
        }
        if cursor:
            request["ExclusiveStartKey"] = artifact_key(job_id, read_page_cursor(cursor, job_id))
        items: list[dict[str, Any]] = []
        try:
            while len(items) <= limit:  # a call reads at most 1 MB: inline artifacts are read whole
                response = self._ddb.query(**request)
                items.extend(response.get("Items", []))
                if "LastEvaluatedKey" not in response:
                    break
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
                request["Limit"] = limit + 1 - len(items)
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise StoreUnavailableError(f"could not list artifacts of job {job_id}") from exc
        infos = [_info(job_id, i) for i in items[:limit]]
        return ArtifactPage(infos, page_cursor(job_id, infos[-1].name) if len(items) > limit else None)

    def get(self, job_id: str, name: str) -> Artifact:
        if not NAME.fullmatch(name):
            raise ArtifactNotFoundError.of(job_id, name)
        try:
            item = self._ddb.get_item(
                TableName=self._table, Key=artifact_key(job_id, name)
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise StoreUnavailableError(f"could not read artifact {name} of job {job_id}") from exc
        if item is None:
            raise ArtifactNotFoundError.of(job_id, name)
        info = _info(job_id, item)
        if "data" in item:
            return Artifact(info, content=bytes(item["data"]["B"]))
        return Artifact(info, blob_key=item["blob_key"]["S"])


def _info(job_id: str, item: dict[str, Any]) -> ArtifactInfo:
    return ArtifactInfo(
        job_id=job_id,
        name=item["name"]["S"],
        content_type=item["content_type"]["S"],
        size=int(item["size"]["N"]),
        created_at=item["created_at"]["S"],
        location="s3" if "blob_key" in item else "inline",
    )

"""JobStore.create_keyed / submission_key: a job and its Idempotency-Key record, written together."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.domain.errors import StaleJobError
from chalicelib.ports import SubmissionKey
from tests.contract.conftest import INLINE_LIMIT
from tests.contract.test_job_store import big, make_job

NOW = 1_800_000_000


def record(job, *, key="order-1", tenant="acme", request_hash="h1", expires_at=NOW + 3600) -> SubmissionKey:
    return SubmissionKey(tenant=tenant, key=key, job_id=job.id, request_hash=request_hash, expires_at=expires_at)


def test_a_keyed_create_writes_the_job_and_the_record_together(adapters):
    job = make_job(1)
    assert adapters.store.submission_key("acme", "order-1", now=NOW) is None
    assert adapters.store.create_keyed(job, record(job), now=NOW) is None
    assert adapters.store.get(job.id, mark_gone=False) == job
    assert adapters.store.submission_key("acme", "order-1", now=NOW) == record(job)


def test_a_record_keeps_its_request_as_taken_beside_its_request_as_sent(adapters):
    """`taken_hash` is stored and returned, with a create refused on the key too; a record
    written without one (before it was kept) reads back with None."""
    first, second, third = make_job(1), make_job(2), make_job(3)
    taken = SubmissionKey("acme", "order-1", first.id, "h1", NOW + 3600, taken_hash="t1")
    assert adapters.store.create_keyed(first, taken, now=NOW) is None
    assert adapters.store.submission_key("acme", "order-1", now=NOW) == taken
    assert adapters.store.create_keyed(second, record(second, request_hash="h2"), now=NOW) == taken
    assert adapters.store.create_keyed(third, record(third, key="order-2"), now=NOW) is None
    assert adapters.store.submission_key("acme", "order-2", now=NOW).taken_hash is None


def test_a_second_create_under_a_kept_key_writes_nothing_and_returns_the_first_record(adapters):
    first, second = make_job(1), make_job(2)
    adapters.store.create_keyed(first, record(first), now=NOW)
    again = adapters.store.create_keyed(second, record(second, request_hash="h2"), now=NOW + 3600)
    assert again == record(first)  # the first job's id and hash, not the second's
    assert adapters.store.get(second.id, mark_gone=False) is None
    assert adapters.store.submission_key("acme", "order-1", now=NOW) == record(first)


def test_an_expired_record_is_replaced_and_no_longer_answers(adapters):
    first, second = make_job(1), make_job(2)
    adapters.store.create_keyed(first, record(first, expires_at=NOW + 10), now=NOW)
    assert adapters.store.submission_key("acme", "order-1", now=NOW + 11) is None
    fresh = record(second, request_hash="h2", expires_at=NOW + 3611)
    assert adapters.store.create_keyed(second, fresh, now=NOW + 11) is None
    assert adapters.store.get(second.id, mark_gone=False) == second
    assert adapters.store.get(first.id, mark_gone=False) == first
    assert adapters.store.submission_key("acme", "order-1", now=NOW + 11) == fresh


def test_keys_belong_to_their_tenant(adapters):
    ours, theirs = make_job(1), make_job(2, tenant="globex")
    adapters.store.create_keyed(ours, record(ours), now=NOW)
    assert adapters.store.create_keyed(theirs, record(theirs, tenant="globex"), now=NOW) is None
    assert adapters.store.submission_key("globex", "order-1", now=NOW).job_id == theirs.id
    assert adapters.store.submission_key("acme", "order-1", now=NOW).job_id == ours.id
    assert adapters.store.submission_key("acme", "order-2", now=NOW) is None


def test_keys_of_two_tenants_that_read_alike_run_together_stay_apart(adapters):
    """Tenant `ac` with key `me-1` and tenant `acme` with key `-1` spell the same text run
    together: each keeps its own record, not the other's job."""
    ours, theirs = make_job(1, tenant="ac"), make_job(2, tenant="acme")
    assert adapters.store.create_keyed(ours, record(ours, tenant="ac", key="me-1"), now=NOW) is None
    assert adapters.store.create_keyed(theirs, record(theirs, tenant="acme", key="-1"), now=NOW) is None
    assert adapters.store.submission_key("ac", "me-1", now=NOW).job_id == ours.id
    assert adapters.store.submission_key("acme", "-1", now=NOW).job_id == theirs.id


def test_a_keyed_create_of_an_existing_job_id_is_refused_and_keeps_no_record(adapters):
    job = make_job(1)
    adapters.store.create(job)
    with pytest.raises(StaleJobError):
        adapters.store.create_keyed(job.model_copy(update={"payload": {"other": True}}), record(job), now=NOW)
    assert adapters.store.get(job.id, mark_gone=False) == job
    assert adapters.store.submission_key("acme", "order-1", now=NOW) is None


def test_a_keyed_job_with_a_large_payload_is_claim_checked_like_any_other(adapters):
    job = make_job(1, payload=big(INLINE_LIMIT + 1))
    adapters.store.create_keyed(job, record(job), now=NOW)
    assert adapters.store.get(job.id, mark_gone=False) == job


def test_a_refused_keyed_create_leaves_no_payload_object_behind(adapters):
    first, second = make_job(1), make_job(2, payload=big(INLINE_LIMIT + 1))
    adapters.store.create_keyed(first, record(first), now=NOW)
    assert adapters.store.create_keyed(second, record(second), now=NOW) == record(first)
    assert list(adapters.blobs.keys_older_than("jobs/", datetime(9999, 1, 1, tzinfo=timezone.utc))) == [[]]

"""Storage keys: built in one place, from parts that cannot reach into another's prefix."""
from __future__ import annotations

import zlib

import pytest

from chalicelib.adapters import dynamodb_items as keys
from chalicelib.domain.errors import InvalidRequestError


@pytest.mark.parametrize("build", [
    lambda v: keys.tenant_partition(v),
    lambda v: keys.status_key(v, "queued"),
    lambda v: keys.status_key("acme", v),
    lambda v: keys.type_partition("acme", v),
    lambda v: keys.type_partition(v, "demo.steps"),
    lambda v: keys.scope_partition(v, "p-1"),
    lambda v: keys.scope_partition("acme", v),
    lambda v: keys.cache_sort_key(v),
    lambda v: keys.task_sort_key(v),
    lambda v: keys.job_key(v),
    lambda v: keys.run_key(v, 1),
    lambda v: keys.artifact_key("j1", v),
    lambda v: keys.artifact_key(v, "a.txt"),
    lambda v: keys.tenant_counter_key(v),
    lambda v: keys.finished_partition(v, 1),
])
# Beside the separator: the control characters at both ends of their ranges (NUL and US, DEL),
# and a value that is no text at all: each refused as a bad request, never a TypeError.
@pytest.mark.parametrize("value", ["a#Y#x", "a#", "", "a\nb", "a\x00", "a\x1f", "a\x7f", 5])
def test_no_key_part_may_hold_the_separator_or_control_characters(build, value):
    with pytest.raises(InvalidRequestError):
        build(value)


def test_a_tenant_cannot_name_another_tenants_type_listing():
    assert keys.type_partition("a", "x") == "T#a#Y#x"
    with pytest.raises(InvalidRequestError):
        keys.tenant_partition("a#Y#x")


def test_keys_keep_their_layout():
    assert keys.job_key("j1") == {"pk": {"S": "JOB#j1"}, "sk": {"S": "JOB"}}
    assert keys.run_key("j1", 3)["sk"] == {"S": "RUN#0003"}
    assert keys.status_key("acme", "running") == "T#acme#S#running"
    assert keys.scope_partition("acme", "p/1@x") == "SCOPE#acme#p/1@x"
    assert keys.finished_partition("2026-01-02", 5) == "FIN#2026-01-02#5"
    assert keys.job_id_of(keys.job_partition("j-1")) == "j-1"


def test_the_finished_and_due_indexes_keep_their_sharding():
    """A job's entries in by_finished_day and by_due sit in shard crc32(id) % 8 of their
    partition, under its finish day and due time: the items already in the table were written
    there, and a read over another layout would pass them by (a finished job never cleaned up,
    a due job never reconciled)."""
    at = "2026-01-02T03:04:05.000Z"
    shards = set()
    for job_id in (f"j-{n}" for n in range(32)):
        shard = zlib.crc32(job_id.encode()) % 8
        shards.add(shard)
        assert keys.finished_keys(job_id, at) == (f"FIN#2026-01-02#{shard}", f"{at}#{job_id}")
        assert keys.due_keys(job_id, at) == (f"DUE#{shard}", f"{at}#{job_id}")
    assert shards == set(range(8))

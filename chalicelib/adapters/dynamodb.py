"""DynamoDB adapter of the JobStore port.

Key design (one table, see docs/data-model.md):

    job      pk=JOB#<id>  sk=JOB          get by id: one GetItem; poll 100: one BatchGetItem
    run      pk=JOB#<id>  sk=RUN#<0001>   a job's runs: one Query on pk, begins_with(sk, RUN#)
    artifact pk=JOB#<id>  sk=ART#<name>   a job's artifacts: one Query on pk, begins_with(sk, ART#)

    GSI by_tenant  gsi1pk=T#<tenant>            gsi1sk=<created_at>#<id>   newest first
    GSI by_status  gsi2pk=T#<tenant>#S#<status> gsi2sk=<created_at>#<id>   status filter
    GSI by_type    gsi3pk=T#<tenant>#Y#<type>   gsi3sk=<created_at>#<id>   type filter

    GSI by_finished_day  gsi4pk=FIN#<yyyy-mm-dd>#<shard>  gsi4sk=<finished_at>#<id>   sparse: finished jobs only
    GSI by_due           gsi5pk=DUE#<shard>               gsi5sk=<due_at>#<id>        sparse: unfinished jobs, failed ones owing a letter

by_finished_day lets clean-up find old finished jobs across tenants without a Scan: one
Query per (day, shard) partition, oldest first. The shard (0-7, from the id) spreads a busy
day's finishes over eight partitions. by_due is how the reconciler finds, with one Query per
shard, the queued jobs no worker claimed in time, held jobs whose start is near, and running
jobs past their lease; a job leaves it when it finishes.

Claim-check: a payload or result whose JSON exceeds `inline_limit` is written to S3
(`jobs/<id>/payload.json`, `result-0001.json` per attempt) and the item keeps `payload_ref`/`result_ref`; get()
reads it back, so callers never see the difference. Listings (get_many) do not fetch those
objects: they show `{"claim_check": {"bytes": n}}` in place of the value, and GET /jobs/<id>
returns it whole. Runs get `expires_at` too, so TTL removes a job's whole partition.

The indexes project keys only: progress writes (the most frequent write) change no indexed
attribute, so they cost one write unit, not four. A listing is one Query plus one
BatchGetItem of the page. Only job items carry gsi keys, so runs and artifacts stay out of
the indexes. `expires_at` is the table's TTL attribute. Nothing on a request path scans.

The store is one class, `DynamoJobStore`, composed of a module per part: `dynamodb_table.py`
(the client and tables, the claim-check, what a refusal says), `dynamodb_writes.py` (a new job,
and each conditional write that changes one), `dynamodb_attempts.py` (a running attempt's
progress and children), `dynamodb_reads.py` (a job, a page of jobs, the listings, the due jobs,
a job's runs); `dynamodb_items.py` lays out the items they write and read.
"""
from __future__ import annotations

from chalicelib.adapters.dynamodb_attempts import AttemptWrites
from chalicelib.adapters.dynamodb_reads import JobReads
from chalicelib.adapters.dynamodb_writes import JobWrites


class DynamoJobStore(AttemptWrites, JobWrites, JobReads):
    """The JobStore on DynamoDB: built as `JobTable` takes its client and tables."""

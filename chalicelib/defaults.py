"""Limits and intervals the pipeline's behaviour rests on, each with why."""
from __future__ import annotations

# SQS delays a message by at most this much; a job scheduled further ahead is held in the
# store (no message) and released by the reconciler once its start is this close.
SQS_MAX_DELAY_S = 900
# SQS hides a received message at most 12 hours from its receive, in all, and refuses a
# ChangeMessageVisibility that would pass that; a hold is set within the invocation that
# received the message (15 minutes at most), so 11 hours from then stays inside.
SQS_MAX_HOLD_S = 11 * 3600
# What one AWS request takes at most, for every module that fills one: TransactWriteItems'
# items, and PutEvents' entries and bytes (an entry's Source, DetailType and Detail in UTF-8).
TRANSACT_WRITE_MAX_ITEMS = 100
PUT_EVENTS_MAX_ENTRIES = 10
PUT_EVENTS_MAX_BYTES = 256 * 1024
# How far ahead a job may be scheduled (run_at / delay_seconds): a year, like a yearly report.
MAX_SCHEDULE_S = 365 * 24 * 3600
# A failed attempt's retry waits between half and all of 2^(n-1) x this after attempt n, up to
# SQS_MAX_DELAY_S: a flaky call gets a second try within seconds. The stack's RetryBaseSeconds
# (JOBPIPE_RETRY_BASE_S) overrides it.
JOB_RETRY_BASE_S = 2
# How long after its start a queued job may wait for a worker before the reconciler sends its
# message again (a lost or dead message). Doubled after each resend, up to the cap, so a long
# backlog is not flooded with duplicates. A stack parameter overrides the grace.
DISPATCH_GRACE_S = 120
# The worker functions' timeout (Lambda's maximum; .chalice/config.json): an attempt runs inside
# one invocation, which keeps this margin after the handler's timeout to record the outcome.
# A claim needs the timeout plus the margin still left in the invocation, and a fresh invocation
# never has all 900 s by the time it claims (its start, the batch's earlier claims): so a type's
# timeout also leaves CLAIM_HEADROOM_S, else its attempts would be deferred on every delivery
# and never claimed. MAX_JOB_TIMEOUT_S is what `register` accepts.
WORKER_TIMEOUT_S = 900
INVOCATION_MARGIN_S = 10
CLAIM_HEADROOM_S = 20
MAX_JOB_TIMEOUT_S = WORKER_TIMEOUT_S - INVOCATION_MARGIN_S - CLAIM_HEADROOM_S
MAX_DISPATCH_BACKOFF_S = 3600
# A worker invocation takes up to this many messages (the most an SQS event source mapping
# hands over without a batching window) and runs them one after another: under a backlog, a
# tenth of the invocations.
WORKER_BATCH_SIZE = 10
# The messages after a batch's first are hidden this long only, not the queue's visibility
# timeout: a job that kills its process gives its batch-mates back this soon.
BATCH_MATE_LEASE_S = 30
# The batch-mates not started once the batch has run this long are handed back to their queue
# for another invocation: a quick job behind a long one starts this late, not after it.
BATCH_MATE_WAIT_S = 2.0
# A handler whose timeout fired is interrupted again every HANDLER_REINTERRUPT_S while it goes
# on (one that catches the timeout and keeps working in a loop); once it went on for
# HANDLER_GIVE_UP_S its attempt is failed `timeout` and the worker's process ends, short of the
# attempt's lease grace (LEASE_GRACE_S, 30 s, in lifecycle.py): the next attempt, started once
# the lease lapses, never runs beside it. HANDLER_GIVE_UP_WRITE_S bounds that last write.
HANDLER_REINTERRUPT_S = 1.0
HANDLER_GIVE_UP_S = 15.0
HANDLER_GIVE_UP_WRITE_S = 5.0
# A queued or retrying job whose next attempt was sent this many times without any worker
# claiming it fails `undeliverable` (its event goes out): every message for it was lost or
# dead-lettered. With the default grace the sends are 2, 2, 4, 8, 16, 32 minutes apart, then an
# hour: about 20 hours in all. The bound holds whatever the dead-letter queues hold ...
MAX_DISPATCHES = 24
# ... unless its queue still holds messages no worker has received yet (a backlog: jobs of
# five minutes behind a worker's five slots make 20 hours of 1,200 jobs), where its messages may
# well be waiting their turn: it is looked at again every MAX_DISPATCH_BACKOFF_S, no more sent,
# for as long as its last one can still be in the line, the jobs queues' MessageRetentionPeriod
# (infra/resources.json) counted from its start.
JOBS_QUEUE_RETENTION_S = 14 * 24 * 3600
# A failed delivery (a worker failing before the handler ran, a webhook or cache store that
# did not answer) hides its message this long, doubling per receive up to 15 minutes, instead of
# the queue's visibility timeout. With the consumer queues' maxReceiveCount of 100 an ERP event
# is retried for about 24 hours before it is dead-lettered.
DELIVERY_RETRY_BASE_S = 30
DELIVERY_RETRY_MAX_S = 900


def redelivery_wait_s(receives: int, base_s: int = DELIVERY_RETRY_BASE_S, max_s: int = DELIVERY_RETRY_MAX_S) -> int:
    """The wait before the next delivery of a message received `receives` times: 30 s, 60 s,
    120 s ... at most 15 minutes (stack parameters change both ends: the test stacks)."""
    return min(max_s, base_s * 2 ** min(10, max(0, receives - 1)))
# A subscriber keeps the record of a delivered event this long (the DynamoDB TTL): longer than
# an event can still come back (the consumer queues' ~24 h of retries, the stream's 24 h), so a
# late duplicate finds it and is skipped.
DELIVERY_RECORD_TTL_S = 7 * 24 * 3600
# The lease of an in-progress delivery record when the invocation's remaining time is unknown:
# the subscriber functions' timeout, so a live delivery is never taken over.
DELIVERY_LEASE_S = 60
# One webhook POST has this long, wall clock, to be answered (status line and headers; the body
# is read only from a 4xx, within the same time): 10 deliveries of an SQS batch then fit the ERP
# bridge's 60 s timeout.
WEBHOOK_TIMEOUT_S = 5.0
# The 4xx answers that say "not now" rather than "not this" (Request Timeout, Too Early, Too Many
# Requests): retried like a 5xx. Any other 4xx refuses the event for good: it is parked on the
# bridge's dead-letter queue at once instead of being retried for a day.
WEBHOOK_TRANSIENT_4XX = frozenset({408, 425, 429})
# How much of a 4xx answer's body is read and kept with the parked event: what the ERP said
# was wrong, for the operator (a message attribute holds 1,000 characters of reason in all).
WEBHOOK_ANSWER_TEXT_BYTES = 600
# The ERP bridge keeps this much of its invocation for closing the batch's delivery records:
# a POST is cut to end before it, and none starts with less than WEBHOOK_MIN_TIMEOUT_S to go.
# An invocation that timed out would leave its delivered events' records to lapse, and the
# redelivered batch would POST them a second time.
DELIVERY_CLOSE_MARGIN_S = 10.0
WEBHOOK_MIN_TIMEOUT_S = 1.0
# A failed POST whose answer carried Retry-After (a 429, a 503) comes back no sooner than it
# asked, up to an hour: beyond, the wait is the ERP's to shorten by answering again, and 100
# tries an hour apart still end well inside the queue's 14 days of retention.
WEBHOOK_RETRY_AFTER_MAX_S = 3600
# A finished job's record expires (DynamoDB TTL on `expires_at`) this long after its retention
# ends. The daily `cleanup_runs` deletes the job with its runs, artifacts and S3 objects within a
# day of that end, and finds it through its record; TTL deletes records only, at any moment past
# their time, so a record it took first would leave the job's objects for the bucket's
# BlobRetentionDays. One more daily run's worth of slack for a clean-up that failed or ran short.
# Runs and artifacts expire a day after the job's record (RECORD_PART_EXPIRY_S).
RECORD_EXPIRY_SLACK_S = 2 * 24 * 3600
RECORD_PART_EXPIRY_S = RECORD_EXPIRY_SLACK_S + 24 * 3600
# A due job whose reconcile action failed (a bug, a record that refuses the action's write) is
# put back this far in the due index, so the jobs due after it are reached: a pass reads the
# earliest due first, and a job that fails on every pass would otherwise hold its place for good.
RECONCILE_RETRY_S = 300
# A reconciler pass takes no further job, letter or batch once its invocation has less than
# this left (the function's timeout is 120 s): the rest wait for the next pass, and this one
# still ends, records and logs what it did instead of being cut off in the middle.
RECONCILE_PASS_MARGIN_S = 15
# A pass reads the due index page after page for at most this long, then leaves what is still
# due to the next pass: it ends inside the default 1-minute schedule (so the next pass does not
# start beside it, racing it for the same jobs) and leaves the rest of the function's 120 s to
# the failed stream batches, whose records the stream keeps only 24 hours.
RECONCILE_DUE_BUDGET_S = 40
# Due jobs read per page of the due index: a pass reads page after page, each from where the
# last ended, until nothing due is left or its due budget (above) is spent.
DUE_PAGE = 200
# A listing by status and type reads the status index and keeps the jobs of the type: it reads
# on, a page of keys at a time, until the page is full or this many pages were read (a short or
# even empty page then still carries a cursor to the rest; the client and CLI follow it).
FILTERED_LISTING_READS = 5
# GET /jobs/{id}/artifacts answers a page of a job's artifacts, by name: this many unless the
# caller asks for up to MAX_ARTIFACT_PAGE. A job may write any number (one per row of its input),
# so the whole listing could pass what one answer carries (MAX_ANSWER_BYTES). An entry takes at
# most ~1.5 KB as answered (a 128-character name, a 255-character content type escaped twice),
# so a full page stays under 2 MB; its Query reads each item whole, inline text included (up to
# 128 KiB), 1 MB a call, which bounds a page's reads too.
ARTIFACT_PAGE = 100
MAX_ARTIFACT_PAGE = 1_000
# A progress step and an error code are labels: at most this many characters, stored and
# published whole (a longer step is refused at the report, a longer fail_job code is cut).
MAX_LABEL_CHARS = 256
# A failed attempt's error keeps this much of its text (an exception's, a fail_job message):
# a traceback's worth, and within the 2,048 characters an event carries, so the event has it
# whole; the job's record keeps its room for the outcome.
MAX_ERROR_MESSAGE_CHARS = 2_000
# A job lists at most this many children (`ctx.spawn`): the list lives in the job's own record
# (36 characters and a byte of overhead per id), beside a payload and a result at the highest
# inline limit (128 KiB each), progress details (32 KiB) and the outcome's texts, within
# DynamoDB's 400 KB: 2,000 ids take 74 KB of it. A spawn past the bound fails the job
# `too_many_children` (its list only grows, so a retry would be refused again); a larger fan-out
# is a tree, children spawning children.
MAX_CHILDREN = 2_000
# Lambda returns at most 6 MB (6,291,556 bytes) from a synchronous invocation, and an API
# answer travels as the `body` text of the proxy response: JSON written again inside JSON, so
# each quote and backslash takes two bytes and each non-ASCII character, which the API's JSON
# writes as \uXXXX, seven. A job's answer (GET /jobs/{id}: its payload and result) stays within
# this many bytes so measured, leaving the rest to the headers and the response's envelope: a
# submit past it is refused (413), a result past it fails its job `result_too_large`.
MAX_ANSWER_BYTES = 6_000_000
# How deep a JSON value may nest (arrays and objects; a request body counting its own envelope:
# a submit's payload gets one level less). Python's parser recurses once per level and gives
# up near 936, pydantic writes at most 255 (a job's answer nests its payload and result one or
# two more), so the limit is one fixed number well inside both, the same for every request
# body, a handler's result and its progress details; real payloads stay within a dozen.
MAX_JSON_DEPTH = 100
# rq-engine's jobstatus covers a job's whole tree, read level by level (a BatchGetItem per 100
# jobs) on every poll: at most this many jobs, a parent at MAX_CHILDREN with its children's own
# children. A larger tree is not read past the level that would pass it, and never reads
# `finished` on what was read (its unread jobs may still run or fail).
MAX_TREE_JOBS = 5_000
# A completion writes its job, its run, its scope's task record and one item per cache namespace
# its job type invalidates in one DynamoDB transaction, which takes 100 items: rules naming more
# namespaces for a job type are refused when loaded (chalicelib/cache_invalidation_rules.json).
MAX_NAMESPACES_PER_JOB_TYPE = TRANSACT_WRITE_MAX_ITEMS - 3
# The settings a stack changes through its environment (chalicelib/settings.py), their defaults
# here and nowhere else: the template's parameter of the same meaning (infra/resources.json)
# defaults to the same number, `make run` (scripts/stack_config.py) too, and a test holds them.
# A finished job (its record, runs and artifacts) is kept this many days (RetentionDays), at
# most RETENTION_MAX_DAYS: its S3 objects are kept BlobRetentionDays (at least 400), which must
# outlive the longest schedule (MAX_SCHEDULE_S) plus a day of running plus the retention.
RETENTION_DAYS = 7
RETENTION_MAX_DAYS = 30
# At most one progress write per job per this many seconds (ProgressMinIntervalSeconds), up to
# five minutes: a job reporting in a tight loop costs a write every 2 s, not one per call.
PROGRESS_MIN_INTERVAL_S = 2.0
PROGRESS_MIN_INTERVAL_MAX_S = 300
# An API token may live at most a day (TokenMaxLifetimeSeconds): exp - iat, or exp - now.
TOKEN_MAX_LIFETIME_S = 24 * 3600
# Admission: each tenant's unfinished jobs at most this many (TenantMaxUnfinishedJobs; 0: no bound).
TENANT_MAX_UNFINISHED_JOBS = 1000
# API Gateway takes 10 MB, but a Lambda proxy event must fit Lambda's 6 MB invoke payload.
MAX_BODY_BYTES = 5 * 1024 * 1024
# Payloads, results and artifacts above this go to S3 (a DynamoDB item holds 400 KB in all).
INLINE_LIMIT_BYTES = 64 * 1024
# A submission's Idempotency-Key answers with its job for a day.
IDEMPOTENCY_TTL_S = 24 * 3600
# AWS calls of the workers and consumers (the API's own are shorter: the template gives it 1 s,
# 3 s and 2 tries, to answer inside API Gateway's 29 s).
AWS_CONNECT_TIMEOUT_S = 2.0
AWS_READ_TIMEOUT_S = 10.0
AWS_MAX_ATTEMPTS = 4
# A signing key (AuthSecret, ErpWebhookSecret) shorter than this is guessable; the template's
# MaxLength of both, and of ErpWebhookUrl, TokenIssuer and TokenAudience (ASCII only), keep every
# function's environment inside Lambda's 4 KB, counted in bytes, or the deploy would fail.
SECRET_MIN_CHARS = 32
SECRET_MAX_CHARS = 128
WEBHOOK_URL_MAX_CHARS = 1024
TOKEN_CLAIM_MAX_CHARS = 128

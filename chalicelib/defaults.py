"""Limits and intervals the pipeline's behaviour rests on, each with why."""
from __future__ import annotations

import math

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
# The most attempts a job type may give a job. From the tenth on each retry waits 7.5 to 15
# minutes (half to all of SQS_MAX_DELAY_S), so 100 attempts span about 17 hours: more is an
# outage to look into, not a job's bad luck. A run record per attempt is keyed RUN#0001 (four digits, listed in order to
# 9,999), and a count past 38 digits is no number DynamoDB keeps: every submission would fail.
MAX_JOB_ATTEMPTS = 100
# What `register` gives a job type that names no policy: three attempts (a flaky call gets two
# more tries within seconds, a broken handler fails within a minute's retries), each under a
# minute, which keeps a type that forgot its timeout from holding a worker for its whole 900 s.
DEFAULT_JOB_ATTEMPTS = 3
DEFAULT_JOB_TIMEOUT_S = 60
# How long after its start a queued job may wait for a worker before the reconciler sends its
# message again (a lost or dead message). Doubled after each resend, up to the cap, so a long
# backlog is not flooded with duplicates. A stack parameter overrides the grace.
DISPATCH_GRACE_S = 120
# How long past its start a job answering a replay of its Idempotency-Key may still wait for its
# first claim before the replay sends its message again, once. The request that made it sends that
# message milliseconds after its write, so a job still queued by then may be one whose request died
# in between: its client, answered nothing (the CLI waits 10 s), sends the key again, and the job
# starts now rather than when the grace above ends. A copy of a message that does wait in a backlog
# costs one refused claim.
REPLAY_RESEND_AFTER_S = 10
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
# attempt's lease grace (LEASE_GRACE_S, 30 s, below): the next attempt, started once
# the lease lapses, never runs beside it. HANDLER_GIVE_UP_WRITE_S bounds that last write.
HANDLER_REINTERRUPT_S = 1.0
HANDLER_GIVE_UP_S = 15.0
# A handler that takes SIGALRM for itself (`signal.alarm(0)`, a library's timeout decorator) stops
# the interrupts: once the alarm has not come HANDLER_ALARM_LATE_S past the timeout, a watchdog
# thread ends the attempt's time instead (it fails `timeout`) and gives up on it as the alarm would.
HANDLER_ALARM_LATE_S = 1.0
HANDLER_GIVE_UP_WRITE_S = 5.0
# An attempt's outcome the store did not take (DynamoDB or S3 not answering past botocore's
# retries) is written again after OUTCOME_RETRY_FIRST_WAIT_S, the wait doubling up to
# OUTCOME_RETRY_MAX_WAIT_S, for OUTCOME_RETRY_PATIENCE_S at most and only while the invocation
# keeps OUTCOME_RETRY_MARGIN_S of the INVOCATION_MARGIN_S its claim left past the handler's time
# (to answer for its batch): a store's blip costs a wait, not the handler's whole run again once
# the attempt's lease has lapsed. A longer outage ends the delivery as before (its message comes
# back, waits out the lease, and the attempt ends `worker_lost`).
OUTCOME_RETRY_FIRST_WAIT_S = 1.0
OUTCOME_RETRY_MAX_WAIT_S = 8.0
OUTCOME_RETRY_PATIENCE_S = 60.0
OUTCOME_RETRY_MARGIN_S = 5.0
# A handler's timeout counts from its attempt's claim, as the lease does; a claim that took the
# whole of it (botocore's retries, every answer lost) leaves the handler this much, under an
# alarm that interrupts it at once (an alarm of 0 s would be none).
HANDLER_MIN_TIME_S = 0.1
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
# A queue that holds messages and has none in flight is received by no worker: its consumption
# is paused (its event source mapping disabled, docs/operations.md). Its due jobs' messages are
# waiting there, so none is sent again: each is looked at again this often, and, once the queue
# is consumed again, one whose message was lost after all is sent again at most this late.
UNCONSUMED_LOOK_S = 900
# A consumed queue (the jobs queues, the ERP bridge's, the cache invalidation's) whose oldest
# message has waited this long sets off its `<Queue>WaitingAlarm` (infra/resources.json): a
# consumer paused and forgotten, a mapping disabled or deleted, a backlog this deep. Unwatched,
# such a queue strands its jobs silently, and after the queue's 14 days loses them. SQS counts a
# message in flight as waiting too: a worker that died holding one keeps it hidden for the jobs
# queues' 90-minute visibility timeout (its job retried meanwhile by the reconciler), so this is
# longer than that, with room.
QUEUE_WAITING_ALARM_S = 2 * 3600
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
# a copy of the event can still come back, so a late duplicate finds it and is skipped. A copy
# may wait out the 14 days a consumer queue or its dead-letter queue keeps a message, be redriven
# as a new message then and be retried for ~24 h more: 16 days (about 200 bytes an event).
DELIVERY_RECORD_TTL_S = 16 * 24 * 3600
# The lease of an in-progress delivery record when the invocation's remaining time is unknown:
# the subscriber functions' timeout, so a live delivery is never taken over.
DELIVERY_LEASE_S = 60
# The longest `event_id` a subscriber takes for a jobpipe event's: jobpipe's are UUIDs (36
# characters). A longer one is a hand-made body, and would make its batch's one ledger request
# fail whole (DynamoDB keys the record on it: 2,048 bytes at most), its batch-mates with it.
MAX_EVENT_ID_CHARS = 128
# One webhook POST has this long, wall clock, to be answered (status line and headers; the body,
# read to keep the connection and kept only from a 4xx, within the same time): 10 deliveries of
# an SQS batch then fit the ERP bridge's 60 s timeout.
WEBHOOK_TIMEOUT_S = 5.0
# The ERP bridge keeps its connection to the ERP open between POSTs (HTTP/1.1 keep-alive): a
# batch of 10 events is one TCP and TLS handshake, not 10. A connection idle this long is closed
# rather than used: inside the 5 s idle timeout of common servers (Apache, Node.js), so a server
# rarely closes it under a POST; one that closes sooner is seen closed before the POST is sent.
WEBHOOK_KEEP_IDLE_S = 4.0
# What is left of an answer's body is read to its end (what keeps the connection usable) up to
# this much; a longer one closes the connection instead of being read.
WEBHOOK_KEEP_BODY_BYTES = 64 * 1024
# Interim answers (102 Processing, 103 Early Hints) read past before the final one; a receiver
# that sends more has not answered the POST.
WEBHOOK_INTERIM_ANSWERS = 8
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
# Runs and artifacts expire a day after the job's record (RECORD_PART_EXPIRY_S past the
# retention): see RECORD_PART_KEEP_S for how.
RECORD_EXPIRY_SLACK_S = 2 * 24 * 3600
RECORD_PART_EXPIRY_S = RECORD_EXPIRY_SLACK_S + 24 * 3600
# A due job whose reconcile action failed (a bug, a record that refuses the action's write) is
# put back this far in the due index, so the jobs due after it are reached: a pass reads the
# earliest due first, and a job that fails on every pass would otherwise hold its place for good.
RECONCILE_RETRY_S = 300
# A job failed while its dead-letter queue did not answer owes its letter: the attempt's message
# parks it when it comes back, after the failed delivery's wait (at most 15 minutes) or, a dead
# worker's, after the jobs queues' 90-minute visibility timeout. The job stays in the due index
# this long, so a message that never comes back (purged, deleted by hand) still has its letter
# parked, by the reconciler, once; one that came back first has cleared the mark by then.
OWED_LETTER_WAIT_S = 2 * 3600
# The reconciler function's AWS calls (the template sets them as its JOBPIPE_AWS_* settings, a
# test holds them to these): the API's short limits, not the workers' (AWS_* below), so that one
# request whose every try times out takes RECONCILE_REQUEST_WORST_S, not about 70 s.
RECONCILER_AWS_CONNECT_TIMEOUT_S = 1.0
RECONCILER_AWS_READ_TIMEOUT_S = 3.0
RECONCILER_AWS_MAX_ATTEMPTS = 2


def request_worst_s(connect_timeout_s: float, read_timeout_s: float, max_attempts: int) -> float:
    """About the longest one AWS request takes with these client limits: every try timing out
    (connect, then read), and botocore's standard-mode waits between tries (up to 2^(n-1) s after
    the nth, at most 20, and up to 5 s more where an answer asked for a later retry)."""
    waits = sum(min(2 ** (n - 1), 20) + 5 for n in range(1, max_attempts))
    return max_attempts * (connect_timeout_s + read_timeout_s) + waits


RECONCILE_REQUEST_WORST_S = request_worst_s(
    RECONCILER_AWS_CONNECT_TIMEOUT_S, RECONCILER_AWS_READ_TIMEOUT_S, RECONCILER_AWS_MAX_ATTEMPTS)  # 14 s
# A reconciler pass takes no further job, letter or batch, and sends no further AWS request
# (one a job's action still had to send fails unsent: the job stays due), once its invocation
# has less than this left (the function's timeout is 120 s): a request sent just before ends,
# at worst, with one more request's worst time left, for the pass's record, and its line. So a
# pass ends, records and logs what it did inside its invocation, whatever AWS answers, instead of
# being cut off and run again by Lambda beside the next passes.
RECONCILE_PASS_MARGIN_S = 2 * math.ceil(RECONCILE_REQUEST_WORST_S) + 2
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
# The worker's log line of a handler's failure carries the last this many characters of its
# traceback (the frames nearest the raise and the exception): where it failed, not only what.
MAX_TRACEBACK_LOG_CHARS = 16_000
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
# A progress report is checked against MAX_ANSWER_BYTES at every call, measuring its own JSON
# beside the rest of the job measured once per write. That sum counts a report's field names and
# the time a write stamps twice (in the report and in the rest), so it never falls short of the
# job as answered; a sum within this many bytes of the bound is measured whole all the same, and
# the whole measure decides: a margin against a miscount, never the answer itself.
REPORT_SLACK_BYTES = 1024
# A spawn is refused (`answer_full`) once its parent's answer with the child's id listed (41
# bytes of it) would come within this many bytes of MAX_ANSWER_BYTES: uncaught, the refusal
# fails the job, and its error, which says what to shrink (about 600 bytes as answered), must
# fit whole beside what the job holds, with REPORT_SLACK_BYTES to spare.
SPAWN_ANSWER_ROOM_BYTES = 4 * 1024
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
# ... and in at most this many BatchGetItems, the consistent re-reads of a level's misses
# counted: a level is known only once the one above it is read, so a chain of jobs each spawning
# the next took one a job, 5,000 in a row for a chain of MAX_TREE_JOBS, past API Gateway's 29 s.
# A chain made by ctx.spawn is read ahead (its links' ids are derived from their parents':
# chalicelib/job_reads.py), about a BatchGetItem per 100 links; what no guess finds (a link made
# by a retried attempt) is read a level a call. At ~10 ms a call, 1,000 take 10 s, a third of
# the gateway's time; a tree not read within them answers as one past MAX_TREE_JOBS does.
MAX_TREE_READS = 1_000
# rq-engine's jobinfo nests a job's descendants (a child's info holds its own children's): at
# most this many levels below the job asked for, deeper ones shown `null` as a child past the
# jobs read is. A chain of jobs each spawning the next (a job continued as a new one) nests a
# level per job, three JSON levels each: 50 keep an answer, with a result's own nesting
# (MAX_JSON_DEPTH), well inside what JSON parsers take, and are read 50 levels deep at most.
JOBINFO_MAX_LEVELS = 50
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
# A job's run or artifact record expires (TTL) this long after its write, whatever the
# retention is then: RECORD_PART_EXPIRY_S past the longest retention and the jobs queues' 14
# days (47 days). A part is written before its job ends, days before when the job waited between
# attempts, and the retention may be raised before that end: counted from the write with the
# retention of the moment, the part would expire while the record that shows it (expiring at
# its end + retention + two days) is kept. Counted so, every part outlives the record unless
# the job lived from its first start to its end longer than the longest retention and the
# queues' 14 days less its retention (37 days at the default 7, 14 at the longest): the end then
# moves its parts' TTL a day past the record's (JobStore.keep_parts), a Query and a write per
# part for those jobs only. Without the queues' 14 days, a stack kept at the longest retention
# would pay that at the end of every job that took a second. Parts whose record TTL took first
# (no clean-up came) still go by this TTL.
RECORD_PART_KEEP_S = RETENTION_MAX_DAYS * 24 * 3600 + JOBS_QUEUE_RETENTION_S + RECORD_PART_EXPIRY_S
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
# 3 s and 2 tries, to answer inside API Gateway's 29 s; the reconciler's the same, RECONCILER_AWS_*).
AWS_CONNECT_TIMEOUT_S = 2.0
AWS_READ_TIMEOUT_S = 10.0
AWS_MAX_ATTEMPTS = 4
# A signing key (AuthSecret, ErpWebhookSecret) shorter than this is guessable; the template's
# MaxLength of both, and of ErpWebhookUrl, TokenIssuer and TokenAudience (ASCII only), keep every
# function's environment inside Lambda's 4 KB, counted in bytes, on a stack named `jobpipe` (the
# deploy refuses a name too long for its parameters: scripts/lambda_environment.py).
SECRET_MIN_CHARS = 32
SECRET_MAX_CHARS = 128
WEBHOOK_URL_MAX_CHARS = 1024
TOKEN_CLAIM_MAX_CHARS = 128

# What one AWS request takes at most (beside the ones above), and how often a partial one is
# sent again: BatchGetItem's keys, BatchWriteItem's requests, DeleteObjects' keys, the entries
# of an SQS *Batch request.
BATCH_GET_MAX = 100
BATCH_WRITE_MAX = 25
DELETE_OBJECTS_MAX_KEYS = 1000
SQS_BATCH_MAX = 10
# Unprocessed batch items are sent again this often, with a backoff of 0.05 s doubling up to
# 1 s (dynamodb_batch.backoff_s): about 2.3 s in all before giving up.
UNPROCESSED_RETRIES = 6
# A transaction is tried again this often when a concurrent write to one of its items made
# DynamoDB cancel it (TransactionConflict): a keyed submit's on the same key (the retry finds
# that one's record), a parent's own progress write beside a spawn or an artifact, the
# completions of two jobs of one scope (both write the scope's invalidation record), a
# cancel request on the finishing job, or the change-stream invocations of two shards adding
# their batches to the same counters.
CONFLICT_RETRIES = 2
# PutEvents entries that failed (FailedEntryCount) are sent again this often before the batch
# fails: a throttled bus answers within a few tries, an outage is the stream's to retry.
PUT_EVENTS_RETRIES = 4
# Conditional writes that lose a race are re-read and re-decided at most this many times.
RACE_RETRIES = 5
# DynamoDB refuses an item over 400 KB; the in-memory store refuses a record whose JSON (what
# stays in the record: claim-checked fields excluded) passes the same size, as DynamoDB would.
ITEM_MAX_BYTES = 400 * 1024

# Extra time past a job's timeout before its lease counts as abandoned by a dead worker.
LEASE_GRACE_S = 30
# A claimed batch-mate's message is hidden for its attempt's lease this long before its short
# lease (BATCH_MATE_LEASE_S) ends: the hold lands before the message could reappear.
BATCH_TURN_MARGIN_S = 5
# A cancel request is looked up in the store at most this often by ctx.cancelled() (the
# runner uses the progress interval when longer); a progress write counts as a look-up.
CANCEL_POLL_INTERVAL_S = 1.0

# Dead letters peeked per priority per reconciler pass (ReceiveMessage takes ten a call: five
# calls a priority), few enough to judge within the pass's time.
DEAD_LETTERS_PER_PASS = 50
# A peeked or redriven dead letter is hidden this long while it is read; a peek makes it visible
# again at once, one left for an operator comes back this soon.
PEEK_HIDE_S = 30
# A short poll (WaitTimeSeconds=0) asks a sample of SQS's servers: with few messages on a queue
# an answer may hold none of them (AWS: repeat the request). This many answers bringing nothing
# new in a row end a read of a dead-letter queue; each is a request of milliseconds, where a
# long poll would wait out its whole time on every queue that is dry.
EMPTY_RECEIVES = 3
# SQS keeps a message attribute's value with the body (256 KiB in all); a dead letter's reason
# is a line or two.
DEAD_LETTER_REASON_CHARS = 1000
# Stream batch descriptions the reconciler replays per pass; each is at most one stream batch
# (100 records).
REPLAY_BATCHES_PER_PASS = 10
# A replay that failed is tried again after a minute, doubling per try, at most an hour apart:
# an outage of the bus or the stats table is outlived well inside the stream's 24 hours.
REPLAY_RETRY_BASE_S = 60
REPLAY_RETRY_MAX_S = 3600
# A batch the stream no longer holds is only an operator's now: looked at twice a day, as long
# as SQS may hide a message.
UNREADABLE_HOLD_S = SQS_MAX_HOLD_S
# An unreadable stream record is parked on StreamFailureQueue whole, its body at most what one
# SQS message carries (1 MiB, the queue's MaximumMessageSize): a job item is at most 400 KB, and a
# record holds two images of it, so all but records of items near that size fit.
PARKED_RECORD_MAX_BYTES = 1024 * 1024
# The condition a parked record's description names (Lambda's own: RetryAttemptsExhausted,
# MaxRecordAgeExceeded).
RECORD_UNREADABLE = "RecordUnreadable"
# What the reconciler's line naming a StreamFailureQueue message that describes no batch shows
# of its body: enough to tell what put it there, never a whole 256 KiB message in one log line.
FOREIGN_BODY_SHOWN_CHARS = 500
# GetRecords pages read for one failed batch before giving up for this pass (a batch is at most
# the mapping's batch size, 100 records: one page, unless the shard returns empty pages).
STREAM_MAX_PAGES_PER_BATCH = 20

# A change's SEEN# marker (counted once) outlives the stream's 24 hours of redelivery and the
# reconciler's replays of a batch; an hour's counters outlive the longest window the statistics
# are read over (MAX_STATS_WINDOW_HOURS), a month.
STATS_SEEN_TTL_S = 2 * 86400
STATS_HOUR_TTL_S = 35 * 86400
MAX_STATS_WINDOW_HOURS = 24 * 30
# The statistics (GET /api/system/stats, the log_statistics task) cover the last day unless
# asked for another window: the rq dashboards' "today", and what an on-call reads first.
STATS_WINDOW_HOURS = 24
# A clean-up is asked for jobs finished at most a year ago: far past the longest retention
# (RETENTION_MAX_DAYS), so any age an operator means is taken, and no more.
MAX_CLEANUP_AGE_HOURS = 24 * 365
# A clean-up an operator starts without an age deletes what finished over a day ago, as the
# maintenance API's `max_age_hours=24` always has (docs/migrating.md); the scheduled one passes
# the stack's retention instead.
CLEANUP_AGE_HOURS = 24
# A scope cache's item (its value and generation) expires this long after its last write or
# invalidation: a namespace no one used for a month is recomputed on its next read, not kept.
CACHE_TTL_S = 30 * 24 * 3600

# Clean-up looks this far past the longest retention (RETENTION_MAX_DAYS): TTL has removed
# anything older, whatever RetentionDays was when a record was written.
CLEANUP_TTL_SLACK_DAYS = 2
# A job whose purge fails (an object the bucket refuses to delete) is skipped and counted, and
# the clean-up goes on with the jobs behind it; this many failing one after another is an outage
# (the bucket or table down), not one job: the run fails then, and its attempt is retried.
CLEANUP_MAX_FAILURES_IN_A_ROW = 10
# Its result names the first this many jobs it could not purge, with their errors (all are
# counted and logged): enough to act on, and a task's result stays small.
CLEANUP_FAILURES_SHOWN = 10
# A clean-up that ran out of its time (`complete: false`) enqueues a run continuing it at once,
# rather than leave the rest to the next day's schedule while TTL takes records and orphans
# their objects; a chain has at most this many such runs (12 x 300 s: an hour of clean-up), and
# a run that deleted nothing starts none, so a chain cannot go round the same failing jobs.
CLEANUP_MAX_FOLLOW_UPS = 12
# Stop a long clean-up with this much of the attempt's time left, and report it incomplete.
CLEANUP_STOP_MARGIN_MS = 5_000
# Stop probing with this much time left; the probes not run are reported as not checked.
PROBE_STOP_MARGIN_MS = 2_000
# API Gateway answers 504 after 29 s whatever the function's timeout: an inline task must end
# within both.
API_GATEWAY_TIMEOUT_MS = 29_000
# Kept back from an inline task's time for writing the answer after it stops.
INLINE_ANSWER_MARGIN_MS = 1_000

# Admission (quota.py). What a refused client is told to wait: jobs finish in seconds to
# minutes, and asking again sooner only costs a read.
QUOTA_RETRY_AFTER_S = 10
# How long a count read at submit may stand in for the next reads, while far from the bound.
QUOTA_RECHECK_S = 1.0
# How far the stats counter may lag the jobs it counts (the stream's delay: about a second on
# AWS, several under a flood on the local stack). A process adds what it admitted in this
# window to the counter; longer only brings a fast tenant's index count sooner.
QUOTA_COUNTER_LAG_S = 10.0
# Tenants whose last count this process remembers (least recently used forgotten first).
QUOTA_REMEMBERED_TENANTS = 1024

# What a request may name or carry. Job ids we make are 36 characters (a child's too); an id
# longer than this cannot exist, and a batch echoing 100 of them stays small.
MAX_JOB_ID_CHARS = 128
# A refusal lists at most this many of a request's problems (the first, in the body's order)
# and its message says how many there were: a body of 100,000 unknown fields, each a problem,
# was answered with 9 MB of them, past the 6 MB Lambda returns, so its caller got a 502.
MAX_PROBLEMS_LISTED = 100
# A problem's `loc` echoes the keys the request gave, each cut to this many characters (and
# `…`): a key of a million characters is named, not sent back whole.
MAX_LOC_PART_CHARS = 128
# A job type's name, as registered and as a request may name it: dotted words, a few of them.
MAX_JOB_TYPE_CHARS = 128
# A dead-letter queue's name in `queue=`: one of this stack's own few-word names.
MAX_QUEUE_NAME_CHARS = 64
# A page of GET /jobs or of the maintenance tasks: this many unless the caller asks for up to
# MAX_LISTING_PAGE (one Query; a page that would pass MAX_ANSWER_BYTES ends early).
LISTING_PAGE = 25
MAX_LISTING_PAGE = 100
# Letters GET /api/system/dlq shows, or its redrive moves, per queue unless the caller asks for
# up to MAX_DEAD_LETTER_BATCH: ReceiveMessage takes ten a call, so at most ten calls a queue.
DEAD_LETTER_BATCH = 10
MAX_DEAD_LETTER_BATCH = 100
# Deleting one letter by its id reads the queue for it (SQS deletes only what a receive handed
# out), up to MAX_DEAD_LETTER_BATCH letters a look: SQS hands out a sample of a large queue, so
# three looks before the letter is said not found.
LETTER_DELETE_READS = 3
# An operator's drop of a parked stream record the reconciler holds hidden is kept beside it this
# long from the reconciler's latest take (StreamFailureQueue's retention, 14 days): the entry
# outlives the record it is about, then DynamoDB's TTL removes it.
PARKED_RECORD_KEEP_S = 14 * 24 * 3600
# The name the operator routes list the stream's failed batches' descriptions under: the
# reconciler's to replay and remove, so neither redriven nor deleted by an operator.
STREAM_FAILURE_QUEUE = "stream_failure"
# Ids one POST /jobs/status reads: one BatchGetItem (BATCH_GET_MAX keys).
MAX_BATCH_IDS = BATCH_GET_MAX
# An Idempotency-Key: room for a UUID or a client's own key of a few parts, and a small record.
MAX_IDEMPOTENCY_KEY_CHARS = 255
# A media type (RFC 6838: type and subtype of 127 characters each at most) with a parameter.
MAX_CONTENT_TYPE_CHARS = 255
# A job store's cursor is a few keys of at most a few hundred bytes; anything far longer did
# not come from a page of ours (and is never parsed).
MAX_CURSOR_CHARS = 2048
# A cache scope or namespace name is one segment of a path and part of the cache item's
# DynamoDB keys, well inside the 1 KB a sort key may take.
MAX_CACHE_NAME_CHARS = 256
# A cached value is one DynamoDB item's attribute (items hold 400 KB in all): its JSON may take
# 350 KiB, the rest is the item's keys and bookkeeping.
MAX_CACHE_VALUE_BYTES = 350 * 1024
# An S3 artifact's link is good this long: the client fetches it at once, and a link that
# leaks stops working soon.
PRESIGNED_URL_TTL_S = 300
# PutEvents takes 256 KB per call; a job's progress message and error are free text of any
# length. Events carry their first characters (a poison-sized event would block its stream), and
# a record with no room left for its outcome keeps as many of its progress message.
MAX_EVENT_TEXT_CHARS = 2048
# What one progress report may carry: it is stored on the job's record (one DynamoDB item of at
# most 400 KB, with the payload and result), whole, while events carry the first 2,048
# characters of the message. Larger is refused, not cut; a report that fits these bounds but not
# the item beside a large payload is refused by the store the same way.
MAX_PROGRESS_MESSAGE_CHARS = 300_000
MAX_PROGRESS_DETAILS_BYTES = 32 * 1024
# The record counts bytes (the message in UTF-8, the details as JSON text), not characters: a
# report takes at most what the longest ASCII message and the largest details do together, so
# 300,000 characters of emoji (4 bytes each, 1.2 MB) are refused at the call, not accepted and
# then refused by the store when the throttled write is due (a timer, with no caller to tell).
MAX_PROGRESS_REPORT_BYTES = MAX_PROGRESS_MESSAGE_CHARS + MAX_PROGRESS_DETAILS_BYTES
# A progress change is worth an event when it moves this many points since the last one (or
# reaches a milestone): a subscriber hears of a long job about ten times, not on every write.
PROGRESS_SIGNIFICANT_JUMP = 10.0
# Clocks of the token issuer and of the API disagree by a few seconds.
TOKEN_LEEWAY_S = 30

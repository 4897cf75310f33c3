// jobpipe dashboard: the settings the page runs by (poll and refresh intervals, batch and
// arrival bounds, request timeout), the API's base URL, `$` and the one `state` object every
// other file reads and changes: the jobs and rows shown, tags, cursor, filters, timers.
// Each file keeps its names to itself: it adds what later files use to the page's one global,
// `jobpipe` (made here), and takes at its start what earlier files added; a name of a later
// file it reads from `jobpipe` when called. Classic scripts, run in index.html's order.
"use strict";

(function (jobpipe) {
var TOKEN_KEY = "jobpipe.dashboard.token";
var STATUSES = ["queued", "running", "retrying", "completed", "failed", "canceled"];
var TERMINAL = { completed: true, failed: true, canceled: true };
var POLL_MIN_MS = 2000;      // while something changes
var POLL_MAX_MS = 10000;     // backed off to when nothing does
var POLL_BACKOFF = 1.5;
var LIST_REFRESH_MS = 10000; // new jobs submitted elsewhere show up within this
var MAX_BATCH = 100;         // POST /jobs/status takes at most 100 ids
var LIST_MAX = 100;          // GET /jobs answers at most 100 jobs a page
var ARRIVALS_MAX = 500;      // jobs the refreshes may add to a page left open before it starts over
var LEFT_MAX = 1000;         // jobs that left the view remembered at once (the oldest forgotten first)
var PAUSED = "paused while this tab is hidden";
var CANCEL_NOTES = { "canceling…": true, "cancel requested": true, "canceled": true };
var RETRY_AFTER_MAX_MS = 600000; // a throttle's Retry-After is honoured up to 10 minutes
var REQUEST_TIMEOUT_MS = 30000;  // API Gateway answers within 29 s; past that nobody will
var RUNS_READS = 4;              // reads of runs at once, rows' and details': an outage's 100 retrying jobs are no burst
var POLL_BATCHES = 4;            // batches of one poll on their way at once (a poll past 400 jobs queues the rest)
var RUNS_RETRY_MAX_MS = 60000;   // a details' failed read of runs is tried again, doubling, up to this apart
var CHILDREN_SHOWN = 20;         // a fan-out's children named in its details (the rest counted)
var INLINE_MAX_BYTES = 65536;    // the store keeps a payload or result up to this (its compact JSON) in
                                // the job's record, past it in S3 (INLINE_LIMIT_BYTES)

// The page lives at <stage>/dashboard; the API routes are its siblings.
var API_BASE = location.origin + location.pathname.replace(/\/dashboard\/?$/, "/");

var $ = function (id) { return document.getElementById(id); };

var state = {
  jobs: new Map(),   // id -> job, as last seen
  rows: new Map(),   // id -> row view
  left: new Map(),   // id -> version at which the job left the filters' view, oldest first (cleared when they change)
  gone: new Set(),   // ids shown that the batch status answered not_found: not polled
  pollTags: new Map(), // ids of a poll's batch -> the ETag of its last answer
  listTag: "",       // the ETag of the current listing's first page, as last merged
  listTop: "",       // listed() of the newest job of the first page, as last merged
  arrived: 0,        // jobs the refreshes added since the listing (re)started
  cursor: null,      // next page of the current listing
  listEnd: "",       // listed() of the last job of the listing's last page read, while `cursor` goes on from it
  loading: false,    // a listing that replaces the jobs shown is on its way
  listReading: null, // the read of the listing's first page on its way, if any
  listWaiting: null, // a listing asked while a throttle holds them: {reset}, read once it is over
  moreTimer: null,   // a "Load more" pressed while a throttle holds the listings, waiting it out
  filters: { status: "", type: "", limit: 25 },
  jobTypes: [],      // GET /job-types, as last read
  typesRead: false,  // whether GET /job-types has answered (its list may be empty)
  typesFailed: null, // why its last read got no list (null: it did, or none has ended yet)
  typesShown: new Set(), // types of the jobs shown under this token, whatever the filters
  typesAsked: new Set(), // types missing from /job-types that made the page read it again
  pollDelay: POLL_MIN_MS,
  pollTimer: null,
  polling: false,
  refreshTimer: null,
  listGeneration: 0, // a changed filter makes answers to older listings stale
  shownFor: null,    // the token whose jobs the page shows
  authorized: false
};

Object.assign(jobpipe, { $: $, API_BASE: API_BASE, ARRIVALS_MAX: ARRIVALS_MAX, CANCEL_NOTES: CANCEL_NOTES,
  CHILDREN_SHOWN: CHILDREN_SHOWN, INLINE_MAX_BYTES: INLINE_MAX_BYTES, LEFT_MAX: LEFT_MAX, POLL_BATCHES: POLL_BATCHES,
  RUNS_READS: RUNS_READS, RUNS_RETRY_MAX_MS: RUNS_RETRY_MAX_MS, LIST_MAX: LIST_MAX,
  LIST_REFRESH_MS: LIST_REFRESH_MS, MAX_BATCH: MAX_BATCH,
  PAUSED: PAUSED, POLL_BACKOFF: POLL_BACKOFF,
  POLL_MAX_MS: POLL_MAX_MS, POLL_MIN_MS: POLL_MIN_MS, REQUEST_TIMEOUT_MS: REQUEST_TIMEOUT_MS,
  RETRY_AFTER_MAX_MS: RETRY_AFTER_MAX_MS, STATUSES: STATUSES, TERMINAL: TERMINAL, TOKEN_KEY: TOKEN_KEY,
  state: state });
})(window.jobpipe = {});

// jobpipe dashboard: the reads of a job's attempts (GET /jobs/{id}/runs), queued: its details'
// table of attempts, and a waiting row's last attempt's duration. For a row (`JobRow`) it keeps
// `lastAttempt` (what `renderDuration` shows), `runsLoadedFor` (the status its open details
// last read them for), `runsRead` (its one read queued or on its way) and the back-off.
"use strict";

(function (jobpipe) {
var RUNS_READS = jobpipe.RUNS_READS,
  RUNS_RETRY_MAX_MS = jobpipe.RUNS_RETRY_MAX_MS, state = jobpipe.state,
  bdi = jobpipe.bdi, el = jobpipe.el, runDuration = jobpipe.runDuration, said = jobpipe.said,
  timeOf = jobpipe.timeOf, StaleAnswer = jobpipe.StaleAnswer, api = jobpipe.api,
  handleError = jobpipe.handleError, heldFor = jobpipe.heldFor, throttled = jobpipe.throttled;

// A job waiting for its next attempt shows its last one's duration, read from its runs. In an
// outage many jobs wait at once: only rows on screen (or nearly) read theirs, queued, instead of
// one GET per retrying job at once. Every read of runs goes through that one queue, at most
// RUNS_READS at a time: the rows' reads and the details' alike. A details read goes before the
// rows' (the user waits on it), and counts toward the limit as theirs do. A throttle's 429 to
// any of them holds them all until its Retry-After (`heldFor("runs")`): the queue waits,
// then resumes. A job has one read at a time (`row.runsRead`): its details and its row, asking
// while one is queued or on its way, are both served by it.
var runsReads = { queue: [], running: 0, timer: null };

// The job's attempts, oldest first; whoever reads them notes the last one's duration.
function readRuns(row) {
  var attempts = state.jobs.has(row.id) ? state.jobs.get(row.id).attempts : 0;
  return api("GET", "jobs/" + encodeURIComponent(row.id) + "/runs").then(function (answer) {
    var runs = answer.runs || [], ended = runs.filter(function (run) { return runDuration(run); });
    var last = ended[ended.length - 1];
    row.lastAttempt = { attempts: attempts, attempt: last ? last.attempt : 0, text: last ? runDuration(last) : "" };
    var job = state.jobs.get(row.id);
    if (job) row.renderDuration(job);
    return runs;
  });
}

// The row's read of runs, for its details (`details`) or its last attempt: one already queued or
// on its way serves both (a row's read queued moves up with the details'). `ahead`: a row's
// read queued first of the rows' (one a throttle sent back).
function askRuns(row, details, ahead) {
  var read = row.runsRead;
  if (read) {
    var moves = details && !read.details && !read.sent;
    read[details ? "details" : "last"] = true;
    if (moves) {
      runsReads.queue.splice(runsReads.queue.indexOf(read), 1);
      queueRunsRead(read, true);
    }
    return;
  }
  read = row.runsRead = { row: row, details: details, last: !details, sent: false, status: null };
  queueRunsRead(read, details || ahead);
}

// One GET per opening (and per status change while open): runs are not polled. Queued with the
// rows' reads, ahead of them; one queued and not yet sent reads the runs as they are when sent.
// While a throttle holds the reads of runs, the details say when theirs goes out.
function loadRuns(row, status) {
  row.runsLoadedFor = status;
  clearTimeout(row.runsRetryTimer);
  row.runsRetryTimer = null;
  if (!(row.runsRead && row.runsRead.sent)) sayWhenRead(row);
  askRuns(row, true);
}

// After a failed read, the changes the polls bring read the runs again, but no sooner than the
// poll's delay after it, doubling while it fails (up to a minute): not at every poll. Opening the
// details or "Load attempts again" reads them at once.
function reloadRuns(row, status) {
  var wait = (row.runsRetryAt || 0) - Date.now();
  if (wait <= 0) { loadRuns(row, status); return; }
  if (row.runsRetryTimer) return;
  row.runsRetryTimer = setTimeout(function () {
    row.runsRetryTimer = null;
    var now = row.tr.dataset.status;
    if (!row.detailTr.hidden && now !== row.runsLoadedFor) loadRuns(row, now);
  }, wait);
}

// "… the attempts will be read in N s", while a throttle holds the reads of runs; any table of
// attempts shown stays under it.
function sayWhenRead(row, err) {
  var wait = heldFor("runs");
  if (wait <= 0) return;
  var note = el("p", "runs-wait", "The API is throttling requests");
  if (err) note.append(" (", said(err.message), ")");
  note.append(": the attempts will be read in " + Math.ceil(wait / 1000) + " s.");
  var table = row.runs.querySelector("table");
  if (table) row.runs.replaceChildren(note, row.runs.querySelector("h3") || "", table);
  else row.runs.replaceChildren(note);
}

// Sends the row's read of runs at its turn, for whoever still waits on it: details still open,
// a row still on screen and lacking its last attempt. Returns its promise, handled, or null when
// nobody does any more (closed, scrolled past or off the page before its turn).
function sendRuns(read) {
  var row = read.row, onPage = state.rows.get(row.id) === row;
  if (read.details && !(onPage && !row.detailTr.hidden)) {
    read.details = false;
    row.runsLoadedFor = null;
  }
  read.last = read.last && row.onScreen && lacksLastAttempt(row);
  if (!read.details && !read.last) { row.runsRead = null; return null; }
  read.sent = true;
  read.status = row.tr.dataset.status;
  return readRuns(row).then(function (runs) {
    row.runsRead = null;
    if (!read.details) return;
    showRuns(row, runs);
    // The job moved on while they were read: the details read them once more.
    var now = row.tr.dataset.status;
    if (!row.detailTr.hidden && state.rows.get(row.id) === row && now !== read.status) loadRuns(row, now);
  }, function (err) {
    handleError(err);
    if (throttled(err)) {
      // Read again, by itself, once the throttle is over, first of the rows' (or with the
      // details'); the details say when.
      read.sent = false;
      queueRunsRead(read, true);
      if (read.details) sayWhenRead(row, err);
      return;
    }
    row.runsRead = null;
    if (read.details) runsFailed(row, err);
    if (read.last && !(err instanceof StaleAnswer)) {
      // A failed read is shown as any other is; the queued rows are let go (in an outage theirs
      // would fail as well): each asks again at its job's next change or its next time on screen.
      // Details asked for stay queued: each says its own failure.
      runsReads.queue = runsReads.queue.filter(function (queued) {
        if (!queued.details) queued.row.runsRead = null;
        return queued.details;
      });
    }
  });
}

function showRuns(row, runs) {
  row.runsBackoff = 0;
  row.runsRetryAt = 0;
  var table = el("table", "runs-table");
  var head = el("tr");
  ["attempt", "status", "started", "finished", "error"].forEach(function (h) {
    var th = el("th", null, h);
    th.scope = "col";
    head.appendChild(th);
  });
  table.appendChild(head);
  runs.forEach(function (run) {
    var tr = el("tr");
    var badge = el("span", "badge status-" + run.status, run.status);
    var cells = [el("td", null, String(run.attempt)), el("td"), el("td"), el("td"), el("td")];
    if (run.error) cells[4].append(bdi(run.error.code), ": ", bdi(run.error.message));
    cells[1].appendChild(badge);
    if (run.started_at) cells[2].appendChild(timeOf(run.started_at));
    if (run.finished_at) cells[3].appendChild(timeOf(run.finished_at));
    tr.append.apply(tr, cells);
    table.appendChild(tr);
  });
  row.runs.replaceChildren(el("h3", null, runs.length ? "Attempts" : "No attempts yet"));
  if (runs.length) row.runs.appendChild(table);
}

// A details' read that failed: said there, with a button to read again, and read again as the
// job moves on, backing off.
function runsFailed(row, err) {
  row.runsLoadedFor = null;
  if (err instanceof StaleAnswer) return;
  row.runsBackoff = Math.min(RUNS_RETRY_MAX_MS, row.runsBackoff ? row.runsBackoff * 2 : state.pollDelay);
  row.runsRetryAt = Date.now() + row.runsBackoff;
  // Said here too: the banner goes with the next good answer, and the attempts are not polled.
  var again = el("button", "runs-again", "Load attempts again");
  again.type = "button";
  again.addEventListener("click", function () { loadRuns(row, row.tr.dataset.status); });
  var why = el("p", "error-message", "Could not load attempts: ");
  why.appendChild(said(err.message));
  row.runs.replaceChildren(why, again);
}

// Whether the row shown for this job waits for its next attempt without its last one's
// duration read for the attempts it has made.
function lacksLastAttempt(row) {
  var job = state.jobs.get(row.id);
  return Boolean(job) && state.rows.get(row.id) === row && !state.gone.has(row.id) && Boolean(job.started_at) &&
    (job.status === "queued" || job.status === "retrying") &&
    !(row.lastAttempt && row.lastAttempt.attempts === job.attempts);
}

// Queues the read of the last attempt, once, if the row is on screen and lacks it.
function askLastAttempt(row) {
  if (row.onScreen && lacksLastAttempt(row)) askRuns(row, false);
}

// `first`: queued behind the details' reads only (a details' read, or a row's a throttle sent
// back); otherwise last.
function queueRunsRead(read, first) {
  var at = runsReads.queue.length;
  if (first) {
    at = 0;
    while (at < runsReads.queue.length && runsReads.queue[at].details) at++;
  }
  runsReads.queue.splice(at, 0, read);
  nextRunsReads();
}

// A hidden tab asks the API nothing: its reads stay queued until it is shown again.
function nextRunsReads() {
  if (document.hidden) return;
  var wait = heldFor("runs");
  if (wait > 0) {
    if (!runsReads.timer) runsReads.timer = setTimeout(function () { runsReads.timer = null; nextRunsReads(); }, wait);
    return;
  }
  while (runsReads.running < RUNS_READS && runsReads.queue.length) {
    var reading = sendRuns(runsReads.queue.shift());
    if (!reading) continue;
    runsReads.running++;
    reading.then(runsReadDone, runsReadDone);
  }
}

function runsReadDone() {
  runsReads.running--;
  nextRunsReads();
}

Object.assign(jobpipe, { askLastAttempt: askLastAttempt, loadRuns: loadRuns, reloadRuns: reloadRuns,
  nextRunsReads: nextRunsReads });
})(window.jobpipe);

// jobpipe dashboard: the jobs shown: the newer of two views of a job kept, a job that leaves
// the view or is gone, the rows in the listing's order, the count by status, the unfinished.
"use strict";

(function (jobpipe) {
var $ = jobpipe.$, LEFT_MAX = jobpipe.LEFT_MAX, STATUSES = jobpipe.STATUSES, TERMINAL = jobpipe.TERMINAL,
  state = jobpipe.state, el = jobpipe.el, JobRow = jobpipe.JobRow;

// Keeps the newer of two views of a job (a list answer may be older than a poll answer); a
// job that no longer matches the status filter leaves the view (and is no longer polled).
// Returns whether anything shown changed.
function remember(job) {
  var known = state.jobs.get(job.id);
  // A job marked gone that an answer shows again (a read that lagged) is shown and polled again.
  var back = state.gone.delete(job.id);
  if (back) state.rows.get(job.id).note.textContent = "";
  if (known && known.version > job.version) {
    if (back) state.rows.get(job.id).render(known);
    return back;
  }
  if (!known && state.left.has(job.id) && state.left.get(job.id) >= job.version) return false;
  if (!jobpipe.shown(job)) {
    if (known) forget(job);
    return Boolean(known);
  }
  state.left.delete(job.id);
  var fuller = false;
  if (known && known.version === job.version) {
    job = wholeOf(known, job);
    fuller = SHORTENED.some(function (read) { return JSON.stringify(read(job)) !== JSON.stringify(read(known)); });
  }
  var changed = back || !known || known.version !== job.version || known.status !== job.status || fuller;
  state.jobs.set(job.id, job);
  var row = state.rows.get(job.id);
  if (!row) {
    row = new JobRow(job.id);
    state.rows.set(job.id, row);
    changed = true;
  }
  if (changed) row.render(job);
  return changed;
}

// A poll whose jobs together would pass what one answer carries shows some of them short: a
// progress message cut to 2,048 characters, the payload, result and progress details as their
// placeholder, a fan-out's children left out (`children_cut`). Two views of one version differ
// only there, so each of these is taken from the view that carries it whole: a short answer
// never hides what was shown, and a whole one after a short one is shown.
var SHORTENED = [
  function (job) { return job.payload; },
  function (job) { return job.result; },
  function (job) { return job.progress && job.progress.details; },
  function (job) { return job.progress && job.progress.message; },
  function (job) { return job.children; }
];

function wholeOf(known, job) {
  var whole = Object.assign({}, job);
  ["payload", "result"].forEach(function (field) {
    if (placeholder(whole[field]) && !placeholder(known[field])) whole[field] = known[field];
  });
  var was = known.progress;
  if (was && whole.progress) {
    whole.progress = Object.assign({}, whole.progress);
    if (placeholder(whole.progress.details) && !placeholder(was.details)) whole.progress.details = was.details;
    if ((was.message || "").length > (whole.progress.message || "").length) whole.progress.message = was.message;
  }
  if ((known.children || []).length > (whole.children || []).length) {
    whole.children = known.children;
    delete whole.children_cut;
  }
  return whole;
}

// A value an answer does not carry: `{"claim_check": {"bytes": n}}`.
function placeholder(value) {
  return Boolean(value) && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 1 &&
    Boolean(value.claim_check);
}

// A job that left the view is remembered at the version it left at, whatever listing answers
// next: any page of it, the first or a later one, may show the job as it was before (an index
// that lags the job). The memory is bounded: the oldest departures are forgotten first.
function forget(job) {
  state.left.delete(job.id); // set anew: the Map keeps its keys in the order they were set
  state.left.set(job.id, job.version);
  if (state.left.size > LEFT_MAX) state.left.delete(state.left.keys().next().value);
  drop(job.id);
}

function drop(id) {
  var row = state.rows.get(id);
  state.gone.delete(id);
  state.jobs.delete(id);
  state.rows.delete(id);
  if (!row) return;
  // The keyboard's focus in it goes to the next job's details (the one before, past the last),
  // not to the page's start; never to a Cancel, which a second Enter would press.
  var focused = row.tr.contains(document.activeElement) || row.detailTr.contains(document.activeElement);
  var after = row.detailTr.nextElementSibling, before = row.tr.previousElementSibling;
  var near = state.rows.get((after || (before && before.previousElementSibling) || row.tr).dataset.jobId);
  row.remove();
  if (focused) (near ? near.toggle : $("filter-status")).focus();
}

// The batch status answered not_found for a job shown: it is shown gone and no longer polled.
// The listing's next refresh is read whole (no ETag), so a job a lagging read missed comes back.
function markGone(id) {
  var row = state.rows.get(id);
  if (!row || state.gone.has(id)) return false;
  state.gone.add(id);
  row.renderGone();
  state.listTag = "";
  return true;
}

// A job's place in the listing as text: newest first is greatest first (created_at is ISO 8601
// of one length, so comparing the texts compares (created_at, id) as the API orders them).
function listed(job) { return job.created_at + "|" + job.id; }

function order() {
  var body = $("jobs-body");
  var jobs = Array.from(state.jobs.values()).sort(function (a, b) {
    return listed(a) < listed(b) ? 1 : -1;
  });
  // Move only rows out of place, so focus and open details survive a refresh.
  var k = 0;
  jobs.forEach(function (job) {
    var view = state.rows.get(job.id);
    [view.tr, view.detailTr].forEach(function (tr) {
      if (body.children[k] !== tr) body.insertBefore(tr, body.children[k] || null);
      k++;
    });
  });
  // An empty page with a cursor is not an empty listing (status and type filters together
  // can skip past many jobs of other types): "Load more" is shown instead.
  jobpipe.renderEmpty(jobs.length > 0 || Boolean(state.cursor));
  renderSummary();
  jobpipe.syncTypes();
}

// The counts are of the jobs loaded: while later pages exist ("Load more"), a status may have
// more jobs than its count (a busy tenant's failures all past the first page read "0+"), so
// the text says so, and each chip's title how to list that status whole. Exact once all are.
function renderSummary() {
  var counts = {}, loaded = 0;
  state.jobs.forEach(function (job) {
    if (state.gone.has(job.id)) return;
    counts[job.status] = (counts[job.status] || 0) + 1;
    loaded++;
  });
  var partial = Boolean(state.cursor);
  var summary = $("summary");
  summary.setAttribute("aria-label", partial ? "Jobs loaded by status: more on later pages" : "Jobs by status");
  summary.replaceChildren();
  STATUSES.forEach(function (status) {
    var count = counts[status] || 0;
    var item = el("li", "chip status-" + status);
    item.append(el("span", "chip-count", String(count)));
    if (partial) {
      item.appendChild(el("span", "chip-more", "+"));
      item.title = count + " " + status + " among the " + loaded + " jobs loaded; later pages may hold more. " +
        "To list every " + status + " job, choose “" + status + "” in the Status filter.";
    }
    item.append(" ", el("span", "chip-label", status));
    summary.appendChild(item);
  });
  if (partial) summary.appendChild(el("li", "summary-scope", "of the " + loaded + " loaded"));
}

function clearJobs() {
  state.rows.forEach(function (row) { row.remove(); });
  state.jobs.clear();
  state.rows.clear();
  state.left.clear();
  state.gone.clear();
  state.pollTags = new Map();
  state.listTag = "";
  state.listTop = "";
  state.arrived = 0;
  state.cursor = null;
  state.listEnd = "";
  $("jobs-body").replaceChildren();
}

function unfinishedIds() {
  var ids = [];
  state.jobs.forEach(function (job) { if (!TERMINAL[job.status] && !state.gone.has(job.id)) ids.push(job.id); });
  return ids;
}

Object.assign(jobpipe, { clearJobs: clearJobs, drop: drop, listed: listed, markGone: markGone, order: order,
  remember: remember, renderSummary: renderSummary, unfinishedIds: unfinishedIds });
})(window.jobpipe);

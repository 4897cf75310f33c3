// jobpipe dashboard: one job's row (`JobRow`): status, progress, attempts, times, duration,
// error, the countdown of a scheduled job, its details with every attempt (read by attempts.js),
// its Cancel, and its Run again once it has ended.
"use strict";

(function (jobpipe) {
var CANCEL_NOTES = jobpipe.CANCEL_NOTES, CHILDREN_SHOWN = jobpipe.CHILDREN_SHOWN,
  INLINE_MAX_BYTES = jobpipe.INLINE_MAX_BYTES, TERMINAL = jobpipe.TERMINAL, state = jobpipe.state,
  bdi = jobpipe.bdi, busy = jobpipe.busy, countdown = jobpipe.countdown, el = jobpipe.el,
  jobDuration = jobpipe.jobDuration, said = jobpipe.said, serverNow = jobpipe.serverNow, setBusy = jobpipe.setBusy,
  shortId = jobpipe.shortId, timeOf = jobpipe.timeOf, when = jobpipe.when, ApiError = jobpipe.ApiError,
  NetworkError = jobpipe.NetworkError, StaleAnswer = jobpipe.StaleAnswer, api = jobpipe.api,
  throttled = jobpipe.throttled, tokenTrouble = jobpipe.tokenTrouble, pressAgainInS = jobpipe.pressAgainInS,
  newIdempotencyKey = jobpipe.newIdempotencyKey,
  askLastAttempt = jobpipe.askLastAttempt, loadRuns = jobpipe.loadRuns, reloadRuns = jobpipe.reloadRuns;

// Only rows on screen (or nearly) read their last attempt, queued with every read of runs
// (attempts.js).
var rowOf = new WeakMap(); // tr -> its JobRow, for the observer
var onScreen = new IntersectionObserver(function (entries) {
  entries.forEach(function (entry) {
    var row = rowOf.get(entry.target);
    row.onScreen = entry.isIntersecting;
    if (row.onScreen) askLastAttempt(row);
  });
}, { rootMargin: "200px 0px" });

function JobRow(id) {
  this.id = id;
  var tr = this.tr = el("tr", "job");
  tr.id = "job-" + id; // what a rerun's note links to
  tr.dataset.jobId = id;
  this.onScreen = false; // until the observer first sees it
  rowOf.set(tr, this);
  onScreen.observe(tr);

  var jobCell = el("td", "job-cell");
  this.type = el("div", "job-type");
  this.idCode = el("code", "job-id", shortId(id));
  this.idCode.title = id;
  this.toggle = el("button", "details-toggle", "details");
  this.toggle.type = "button";
  this.toggle.setAttribute("aria-expanded", "false");
  this.toggle.setAttribute("aria-controls", "detail-" + id);
  this.toggle.setAttribute("aria-label", "Details of job " + shortId(id));
  this.toggle.addEventListener("click", this.toggleDetails.bind(this));
  jobCell.append(this.type, this.idCode, this.toggle);

  // Details open in a full-width row under the job: its payload, result and every attempt.
  this.detailTr = el("tr", "job-detail");
  this.detailTr.id = "detail-" + id;
  this.detailTr.hidden = true;
  var detailCell = el("td");
  detailCell.colSpan = 8;
  this.detailList = el("dl", "facts");
  this.runs = el("div", "runs");
  detailCell.append(this.detailList, this.runs);
  this.detailTr.appendChild(detailCell);

  var statusCell = el("td", "status-cell");
  this.badge = el("span", "badge");
  this.schedule = el("div", "schedule"); // when a queued or retrying job may start
  this.note = el("div", "note");
  this.note.setAttribute("role", "status");
  statusCell.append(this.badge, this.schedule, this.note);

  var progressCell = el("td", "progress-cell");
  this.bar = el("div", "bar");
  this.bar.setAttribute("role", "progressbar");
  this.bar.setAttribute("aria-valuemin", "0");
  this.bar.setAttribute("aria-valuemax", "100");
  this.bar.setAttribute("aria-label", "Progress of job " + shortId(id));
  this.fill = el("div", "fill");
  this.bar.appendChild(this.fill);
  var line = el("div", "progress-line");
  this.percent = el("span", "percent");
  this.step = el("span", "step");
  line.append(this.percent, this.step);
  this.message = el("div", "progress-message");
  progressCell.append(this.bar, line, this.message);

  this.attempts = el("td", "attempts");
  this.times = el("td", "times");
  this.duration = el("td", "duration");
  this.error = el("td", "error-cell");

  var actions = el("td", "actions");
  this.cancel = el("button", "cancel", "Cancel");
  this.cancel.type = "button";
  this.cancel.setAttribute("aria-label", "Cancel job " + shortId(id));
  this.cancel.addEventListener("click", cancelJob.bind(null, id));
  // A finished job runs again as a new job; shown once the job has ended.
  this.rerun = el("button", "rerun", "Run again");
  this.rerun.type = "button";
  this.rerun.hidden = true;
  this.rerun.setAttribute("aria-label", "Run job " + shortId(id) + " again");
  this.rerun.addEventListener("click", rerunJob.bind(null, id));
  this.unsettledRerun = null; // the Idempotency-Key of a rerun that got no usable answer
  actions.append(this.cancel, this.rerun);

  tr.append(jobCell, statusCell, progressCell, this.attempts, this.times, this.duration, this.error, actions);
}

JobRow.prototype.render = function (job) {
  var status = job.status;
  var percent = Math.max(0, Math.min(100, Number((job.progress && job.progress.percent) || 0)));
  var step = (job.progress && job.progress.step) || "";
  var message = (job.progress && job.progress.message) || "";

  this.tr.dataset.status = status;
  this.type.textContent = job.type;
  this.type.title = job.type;
  this.badge.textContent = status;
  this.badge.className = "badge status-" + status;

  var value = String(Math.round(percent * 10) / 10);
  if (this.bar.getAttribute("aria-valuenow") !== value) this.bar.setAttribute("aria-valuenow", value);
  this.bar.setAttribute("aria-valuetext", Math.floor(percent) + "%" + (step ? ", " + step : ""));
  this.bar.className = "bar status-" + status;
  this.fill.style.width = percent + "%";
  this.percent.textContent = Math.floor(percent) + "%";
  this.step.textContent = step;
  this.step.title = step;
  this.message.textContent = message;
  this.message.title = message;

  this.attempts.textContent = job.attempts + "/" + job.max_attempts;
  this.attempts.title = job.attempts + " of at most " + job.max_attempts + " attempts";

  this.renderTimes(job);
  this.renderDuration(job);
  this.renderSchedule(job);

  this.error.replaceChildren();
  if (job.error) {
    var code = el("code", "error-code", job.error.code);
    var text = el("span", "error-message", job.error.message);
    code.title = job.error.code;
    text.title = job.error.message;
    this.error.append(code, text);
  }

  var cancellable = !TERMINAL[status];
  if (!cancellable) this.hideCancel();
  this.rerun.hidden = cancellable;
  if (cancellable && job.cancel_requested) {
    setBusy(this.cancel, true);
    if (!this.note.textContent) this.note.textContent = "cancel requested";
  }
  // A job whose worker finished before it saw the cancel ended otherwise: the note says so
  // instead of a cancel still pending.
  if (!cancellable && status !== "canceled" && CANCEL_NOTES[this.note.textContent]) {
    this.note.textContent = job.cancel_requested ? "cancel requested, but it " + status + " first" : "";
  }

  var facts = [["id", job.id], ["type", job.type], ["priority", job.priority], ["submitted by", job.user]];
  if (job.scope) facts.push(["scope", job.scope]);
  if (job.rerun_of) facts.push(["rerun of", job.rerun_of]);
  if (job.parent_id) facts.push(["spawned by", jobId(job.parent_id)]);
  if (job.children && job.children.length) facts.push(["children", childrenOf(job.children)]);
  else if (job.children_cut) facts.push(["children", this.childrenLeftOut(job.children_cut)]);
  // The row cuts these short (their whole text its title, which a touch screen cannot hover):
  // the details show them whole.
  if (step) facts.push(["step", step]);
  if (message) facts.push(["message", message]);
  if (job.error) facts.push(["error", [bdi(job.error.code), ": ", bdi(job.error.message)]]);
  var boxes = Object.assign({}, this.dataBox);
  facts.push(["payload", this.shownData(job, "payload")]);
  if (job.result !== null && job.result !== undefined) facts.push(["result", this.shownData(job, "result")]);
  // Drawn again only when they change, not at each move of the progress: text selected in them
  // (a payload, an id to copy) stays selected, and the "show it" shown stays the one to press.
  var drawn = JSON.stringify(facts, function (key, part) { return part && part.nodeType ? part.nodeName + part.textContent : part; });
  if (drawn === this.factsDrawn) this.dataBox = boxes;
  else this.drawFacts(facts, drawn);
  if (!this.detailTr.hidden && status !== this.runsLoadedFor) reloadRuns(this, status);
};

JobRow.prototype.drawFacts = function (facts, drawn) {
  this.factsDrawn = drawn;
  this.detailList.replaceChildren();
  for (var i = 0; i < facts.length; i++) {
    var value = el("dd"), text = el(/^(payload|result)$/.test(facts[i][0]) ? "pre" : "code");
    text.append.apply(text, [].concat(facts[i][1]));
    value.appendChild(text);
    this.detailList.append(el("dt", null, facts[i][0]), value);
  }
};

// A payload or result as the details show it. One kept in S3 (past 64 KiB) comes in listings
// and polls as its claim check, `{"claim_check": {"bytes": n}}`: the details say so, with a
// button that reads the job whole (GET /jobs/{id}) and shows it from then on (neither changes
// once written: a payload never, a result once the job has ended). A poll whose jobs together
// would pass what one answer carries shows some of them short, a value kept in the record
// as the same placeholder: its size says which it is.
JobRow.prototype.shownData = function (job, field) {
  var data = job[field], check = data && typeof data === "object" && !Array.isArray(data) &&
    Object.keys(data).length === 1 && data.claim_check;
  if (!check || typeof check.bytes !== "number") return JSON.stringify(data, null, 2);
  this.whole = this.whole || {};
  if (field in this.whole) return this.whole[field];
  var row = this, box = el("span", "claim-check"), show = el("button", "show-whole", "show it");
  this.dataBox = this.dataBox || {};
  this.dataBox[field] = box; // the one shown: details rendered again meanwhile replace it
  show.type = "button";
  show.setAttribute("aria-label", "Show the " + field + " of job " + shortId(this.id));
  show.addEventListener("click", function () { row.readWhole(field); });
  var where = check.bytes > INLINE_MAX_BYTES ? "kept in S3 (" : "left out of the status poll, too large with the others (";
  box.append(where + check.bytes.toLocaleString("en-US") + " bytes) ", show);
  return box;
};

// A poll whose jobs together would pass what one answer carries may show a fan-out without its
// children (`children_cut`: how many it has): the details say how many, and "show them" reads
// the job whole (GET /jobs/{id}), which names them from then on.
JobRow.prototype.childrenLeftOut = function (count) {
  var row = this, box = el("span", "claim-check"), show = el("button", "show-whole", "show them");
  show.type = "button";
  show.setAttribute("aria-label", "Show the children of job " + shortId(this.id));
  show.addEventListener("click", function () {
    if (busy(show)) return;
    setBusy(show, true);
    api("GET", "jobs/" + encodeURIComponent(row.id)).then(
      function (job) {
        // Only its children: a payload or result kept in S3 stays behind its own "show it".
        var shown = state.jobs.get(row.id);
        if (shown && shown.version === job.version) {
          job = Object.assign({}, shown, { children: job.children });
          delete job.children_cut;
        }
        jobpipe.remember(job);
        jobpipe.order();
      },
      function (err) { couldNotRead(box, show, err, "them"); }
    );
  });
  box.append(count.toLocaleString("en-US") + " spawned, each a job of its own: left out of the status poll, " +
    "too many with the others ", show);
  return box;
};

// Reads the job whole for `field`; what it read, or why it could not, goes into the box shown
// then (`dataBox`), which the details drawn again since the click may have replaced.
JobRow.prototype.readWhole = function (field) {
  var show = this.dataBox[field].querySelector("button");
  if (busy(show)) return;
  setBusy(show, true);
  var row = this;
  api("GET", "jobs/" + encodeURIComponent(this.id)).then(
    function (job) {
      var gone = (job.gone || []).indexOf(field) >= 0;
      row.whole[field] = gone ? "its object is gone from the bucket (deleted by hand or by a bucket rule)"
        : JSON.stringify(job[field], null, 2);
      row.dataBox[field].replaceWith(row.whole[field]);
    },
    function (err) { couldNotRead(row.dataBox[field], row.dataBox[field].querySelector("button"), err, "it"); }
  );
};

// A "show" `button` whose read failed: pressable again, `box` saying why after it (unless the
// token's trouble, which the page says itself).
function couldNotRead(box, button, err, what) {
  setBusy(button, false);
  if (tokenTrouble(err)) return;
  var why = el("span", "error-message", " Could not read " + what + ": ");
  why.appendChild(said(err.message));
  box.replaceChildren(box.firstChild, button, why);
}

// Takes the row off the page, and out of the observer's sight (which would keep it alive).
JobRow.prototype.remove = function () {
  onScreen.unobserve(this.tr);
  this.tr.remove();
  this.detailTr.remove();
};

// The API no longer finds the job (its retention's clean-up, a purge): what was last seen of
// it stays, marked gone, with nothing to cancel and nothing ticking.
JobRow.prototype.renderGone = function () {
  this.tr.dataset.status = "gone";
  this.badge.textContent = "gone";
  this.badge.className = "badge status-gone";
  this.bar.className = "bar status-gone";
  this.schedule.replaceChildren();
  this.note.textContent = "no longer found: removed after its retention, or deleted";
  this.hideCancel();
  this.hideButton(this.rerun);
};

// A Cancel (or a Run again) that goes away with the keyboard's focus on it hands the focus to
// its job's details, not to the page's start.
JobRow.prototype.hideCancel = function () { this.hideButton(this.cancel); };

JobRow.prototype.hideButton = function (button) {
  if (document.activeElement === button) this.toggle.focus();
  button.hidden = true;
  setBusy(button, false);
};

JobRow.prototype.toggleDetails = function () {
  var open = this.detailTr.hidden;
  this.detailTr.hidden = !open;
  this.toggle.setAttribute("aria-expanded", String(open));
  this.toggle.textContent = open ? "hide details" : "details";
  if (open) loadRuns(this, this.tr.dataset.status);
};

// Times of today show the clock only, others their date too (both in the browser's zone).
JobRow.prototype.renderTimes = function (job) {
  this.times.replaceChildren(
    timeLine("created", job.created_at),
    timeLine("started", job.started_at),
    timeLine("finished", job.finished_at)
  );
};

// A running job's clock counts its current attempt, labelled with its number past the first.
// A job waiting for its next attempt runs nothing: its last attempt's duration, fixed (read
// once per attempt from its runs), instead of a clock ticking since its first start.
JobRow.prototype.renderDuration = function (job) {
  var waiting = Boolean(job.started_at) && (job.status === "queued" || job.status === "retrying");
  var again = job.status === "running" && job.attempts > 1;
  this.duration.classList.toggle("last-attempt", waiting);
  this.duration.classList.toggle("current-attempt", again);
  var last = waiting && this.lastAttempt && this.lastAttempt.attempts === job.attempts ? this.lastAttempt : null;
  var label = "attempt " + job.attempts + " ";
  if (again) this.duration.replaceChildren(el("span", "duration-label", label), jobDuration(job));
  else if (!waiting || !(last && last.text)) this.duration.textContent = waiting ? "" : jobDuration(job);
  else this.duration.replaceChildren(el("span", "duration-label", "last attempt "), last.text);
  this.duration.title = last && last.text ? "attempt " + last.attempt + " took " + last.text
    : job.status === "running" && job.started_at ? runningTitle(job) : "";
  if (waiting && !last) askLastAttempt(this);
};

// A job submitted with a delay or run_at, or waiting out a retry's backoff, is queued or
// retrying with `not_before` ahead: say when it starts, counting down.
JobRow.prototype.renderSchedule = function (job) {
  var waiting = (job.status === "queued" || job.status === "retrying") && job.not_before;
  var left = waiting ? new Date(job.not_before) - serverNow() : 0;
  if (!(left >= 1000)) {
    if (this.schedule.firstChild) this.schedule.replaceChildren();
    return;
  }
  var time = el("time", null, countdown(left));
  time.dateTime = job.not_before;
  time.title = when(job.not_before) + " (" + job.not_before + ")";
  this.schedule.replaceChildren(job.status === "retrying" ? "next attempt in " : "starts in ", time);
};

function runningTitle(job) {
  var since = job.attempt_started_at || job.started_at;
  return "attempt " + job.attempts + " of " + job.max_attempts + " running since " + when(since) +
    (job.attempts > 1 ? "; first attempt started " + when(job.started_at) : "");
}

function timeLine(label, iso) {
  var line = el("div", "time-line");
  if (iso) line.append(el("span", "time-label", label + " "), timeOf(iso));
  return line;
}


function cancelJob(id) {
  var row = state.rows.get(id);
  if (busy(row.cancel)) return;
  setBusy(row.cancel, true);
  row.note.textContent = "canceling…";
  api("DELETE", "jobs/" + encodeURIComponent(id)).then(
    function (job) {
      row.note.textContent = job.status === "canceled" ? "canceled" : "cancel requested";
      jobpipe.remember(job);
      jobpipe.order();
      jobpipe.schedulePoll(0);
    },
    function (err) {
      if (err instanceof ApiError && (err.status === 404 || (err.status === 409 && err.code === "job_finished"))) {
        row.note.replaceChildren(said(err.message));
        // It finished (or went away) meanwhile: a poll shows its final state, and a poll
        // that fails is shown and retried like every other.
        jobpipe.pollNow();
        return;
      }
      setBusy(row.cancel, false);
      row.note.textContent = "";
      if (tokenTrouble(err)) return;
      // Said beside the job, and never sent again unasked. With no usable answer the cancel may
      // have been applied; pressing Cancel again is safe either way.
      row.note.replaceChildren.apply(row.note, err instanceof NetworkError || err.status >= 500
        ? ["No usable answer to the cancel (", said(err.message), "). It may have been canceled: press Cancel " +
          "again to make sure."]
        : throttled(err)
          ? ["Not canceled: the API is throttling requests (", said(err.message), "). Press Cancel again in " +
            pressAgainInS(err) + " s."]
          : ["Not canceled: ", said(err.message)]);
    }
  );
}

// Runs a finished job again (POST /jobs/{id}/rerun): the new job is shown first, as a submitted
// one is, and the note links to it. A rerun that got no usable answer (none, or a 5xx) may have
// made the job: its Idempotency-Key is kept, so pressing Run again returns that job instead of
// making a second; any answer (the job, or a refusal) lets the key go.
function rerunJob(id) {
  var row = state.rows.get(id);
  if (busy(row.rerun)) return;
  var key = row.unsettledRerun || newIdempotencyKey();
  row.unsettledRerun = key;
  setBusy(row.rerun, true);
  row.note.textContent = "running again…";
  api("POST", "jobs/" + encodeURIComponent(id) + "/rerun", undefined, { "Idempotency-Key": key }).then(
    function (job) {
      if (row.unsettledRerun === key) row.unsettledRerun = null;
      setBusy(row.rerun, false);
      jobpipe.remember(job);
      jobpipe.order();
      jobpipe.schedulePoll(0);
      row.note.replaceChildren("ran again as ", state.rows.has(job.id) ? linkTo(job.id) : el("code", null, job.id));
    },
    function (err) {
      var unknown = err instanceof NetworkError || (err instanceof ApiError && err.status >= 500);
      if (!unknown && row.unsettledRerun === key) row.unsettledRerun = null;
      setBusy(row.rerun, false);
      row.note.textContent = "";
      if (err instanceof ApiError && err.status === 404) {
        // Removed meanwhile (its retention's clean-up, a purge): shown gone, nothing to run again.
        jobpipe.markGone(id);
        row.note.replaceChildren(said(err.message));
        return;
      }
      if (tokenTrouble(err)) return;
      if (unknown || throttled(err)) {
        row.note.replaceChildren.apply(row.note, unknown
          ? ["No usable answer to the rerun (", said(err.message), "). It may have been made: press Run again " +
            "to make sure; it will not be made twice."]
          : ["Not run again: the API is throttling requests (", said(err.message), "). Press Run again in " +
            pressAgainInS(err) + " s."]);
        return;
      }
      row.note.replaceChildren(said(err.message));
    }
  );
}

// The id of a job made from a row and shown (the filters may leave it out), as a link that takes
// the keyboard's focus to that job's row.
// A job's id in its details: a link to its row when the page shows it.
function jobId(id) {
  return state.rows.has(id) ? linkTo(id) : id;
}

// A fan-out's children in its details. A parent completes once it has spawned them, and each
// runs on as a job of its own, with its own row: the details say so beside a completed parent,
// and name the first CHILDREN_SHOWN of them (a parent may have 2,000).
function childrenOf(ids) {
  var shown = ids.slice(0, CHILDREN_SHOWN), parts = [ids.length + " spawned, each a job of its own: "];
  for (var i = 0; i < shown.length; i++) parts.push(i ? ", " : "", jobId(shown[i]));
  if (ids.length > shown.length) parts.push(" and " + (ids.length - shown.length).toLocaleString("en-US") + " more");
  return parts;
}

function linkTo(id) {
  var link = el("a", "job-link", id);
  link.href = "#job-" + id;
  link.addEventListener("click", function (event) {
    event.preventDefault();
    var made = state.rows.get(id);
    if (made) made.toggle.focus();
  });
  return link;
}

Object.assign(jobpipe, { JobRow: JobRow });
})(window.jobpipe);

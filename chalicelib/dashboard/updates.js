// jobpipe dashboard: what keeps the view current: the listing's first page re-read every
// 10 s and "Load more", the batch status polls of the unfinished jobs with their back-off, and
// the once-a-second tick of durations and countdowns.
"use strict";

(function (jobpipe) {
var $ = jobpipe.$, ARRIVALS_MAX = jobpipe.ARRIVALS_MAX, LIST_MAX = jobpipe.LIST_MAX, LIST_REFRESH_MS = jobpipe.LIST_REFRESH_MS,
  MAX_BATCH = jobpipe.MAX_BATCH, POLL_BATCHES = jobpipe.POLL_BATCHES, POLL_BACKOFF = jobpipe.POLL_BACKOFF, POLL_MAX_MS = jobpipe.POLL_MAX_MS,
  POLL_MIN_MS = jobpipe.POLL_MIN_MS, TERMINAL = jobpipe.TERMINAL, state = jobpipe.state, busy = jobpipe.busy,
  setBusy = jobpipe.setBusy, said = jobpipe.said, when = jobpipe.when, api = jobpipe.api, readFailed = jobpipe.readFailed,
  heldFor = jobpipe.heldFor, throttled = jobpipe.throttled,
  StaleAnswer = jobpipe.StaleAnswer,
  el = jobpipe.el, drop = jobpipe.drop,
  listed = jobpipe.listed, markGone = jobpipe.markGone, order = jobpipe.order, remember = jobpipe.remember,
  unfinishedIds = jobpipe.unfinishedIds, listPath = jobpipe.listPath,
  renderEmpty = jobpipe.renderEmpty;

// ---------------------------------------------------------------- listing

// First page of the current listing; merges into what is shown (keeps rows and open details).
// One that replaces the jobs shown (`reset`: Refresh, a filter) drops the rows it does not show
// and keeps the others as they are.
// A re-read sends the page's ETag: unchanged, it is a 304 and nothing is read or rendered. A
// re-read asked while one is on its way (the tab shown again on a slow stack) sends nothing:
// that one serves, and its answer schedules the next. One asked while a throttle holds the
// listings waits it out (`holdListing`).
function refreshList(reset) {
  reset = reset || Boolean(state.listWaiting && state.listWaiting.reset);
  if (!reset && state.listReading) return;
  clearTimeout(state.refreshTimer);
  var wait = heldFor("list");
  if (wait > 0) { holdListing(reset, wait); return; }
  state.listWaiting = null;
  sayWhenListed();
  var generation = reset ? ++state.listGeneration : state.listGeneration;
  var reading = state.listReading = {};
  var done = function () { if (state.listReading === reading) state.listReading = null; };
  var more = $("load-more");
  if (reset) {
    // The cursor belongs to the listing being replaced: it must not page the new one.
    state.cursor = null;
    more.hidden = true;
    loading(true);
    setBusy($("refresh"), true);
  }
  return api("GET", listPath(null, reset ? 0 : refreshLimit()), undefined, undefined, reset ? "" : state.listTag).then(
    function (tagged) {
      done();
      if (generation !== state.listGeneration) return;
      setBusy($("refresh"), false);
      if (state.loading) loading(false);
      var page = tagged.data;
      if (page === null) { // 304: the page is as merged before
        ensurePolling();
        scheduleRefresh();
        return;
      }
      // Jobs a re-read brings past the pages loaded (`refreshLimit`) are "Load more"'s to show.
      var within = page.jobs.filter(function (job) { return !state.cursor || listed(job) >= state.listEnd; });
      var fresh = within.filter(function (job) { return !state.jobs.has(job.id); }).length;
      // The page starts over from this one when it does not reach the jobs shown (more were
      // made since the last refresh than it holds: below it would be a gap "Load more" never
      // fills), or when a page left open has been brought ARRIVALS_MAX jobs (rows never pile
      // up without end). Either way what follows it is one "Load more" away.
      var last = page.jobs[page.jobs.length - 1];
      var startOver = !reset && state.jobs.size > 0 && Boolean(page.next_cursor) && Boolean(last) &&
        (listed(last) > state.listTop || state.arrived + fresh > ARRIVALS_MAX);
      var redraw = reset || startOver || state.jobs.size === 0;
      if (reset || startOver) {
        // The jobs shown become the page's. A job it still shows keeps its row (details left
        // open, focus, a note of what the user just did there); the others go. A job that left
        // the view at a later version than this page or a later one shows (a poll saw it
        // complete while this listing was on its way) stays gone: `state.left` is kept (a
        // filter's change cleared it when it was made: `applyFilters`).
        var onPage = new Set(page.jobs.map(function (job) { return job.id; }));
        Array.from(state.jobs.keys()).forEach(function (id) { if (!onPage.has(id)) drop(id); });
        state.pollTags = new Map();
        if (startOver) state.listGeneration++; // a "Load more" on its way would page on from the old rows
        else state.listTop = "";
      }
      if (redraw) {
        state.cursor = page.next_cursor || null;
        state.listEnd = state.cursor && last ? listed(last) : "";
        more.hidden = !state.cursor;
        state.arrived = 0;
        within = page.jobs;
      } else {
        state.arrived += fresh;
      }
      if (page.jobs.length) state.listTop = listed(page.jobs[0]);
      state.listTag = tagged.etag;
      var changed = within.map(remember).some(Boolean); // new jobs, or known ones that moved on
      // Every page loaded, yet more match than the re-read holds, and it holds all shown: "Load more".
      if (!redraw && !state.cursor && page.next_cursor && last && page.jobs.length >= shownCount()) {
        state.cursor = page.next_cursor;
        state.listEnd = listed(last);
        more.hidden = false;
        changed = true;
      }
      if (changed || redraw) order();
      if (changed) schedulePoll(0); else ensurePolling();
      scheduleRefresh();
      if (!state.typesRead) jobpipe.loadJobTypes();
    }
  ).catch(
    // A failed refresh (or an answer the page could not use) never ends the refreshes.
    function (err) {
      done();
      if (generation !== state.listGeneration) return;
      setBusy($("refresh"), false);
      readFailed(err, "Could not list jobs: ");
      var delay = scheduleRefresh(err.retryAfterMs);
      // A listing that was to replace the jobs shown (a filter changed, Refresh) failed: the
      // page says so under the filters, and its retry is such a listing again, not a merge.
      if (reset) {
        state.listWaiting = { reset: true, failed: err, at: Date.now() + delay };
        sayWhenListed();
      }
    }
  );
}

// A job comes to match a status filter wherever it sorts (an old one starts running): under one,
// a refresh re-reads whole pages past the jobs shown, in one request. Other filters: a new job is first.
function refreshLimit() {
  var size = state.filters.limit;
  if (!state.filters.status) return size;
  return Math.min(LIST_MAX, Math.ceil((shownCount() + 1) / size) * size);
}

function shownCount() { return state.jobs.size - state.gone.size; }

// Asked while a throttle holds the listings (Refresh, a filter, the tab shown again): one read
// once it is over, of the filters as they are then, replacing the jobs shown if any asked that
// did; meanwhile the page says when. Asked again meanwhile, it is still that one read.
function holdListing(reset, wait) {
  state.listWaiting = { reset: reset };
  if (reset) {
    state.listGeneration++; // answers to the listing being replaced, or a "Load more" of it, are stale
    state.cursor = null;
    $("load-more").hidden = true;
    loading(true);
    setBusy($("refresh"), true);
  }
  state.refreshTimer = setTimeout(function () { refreshList(false); }, wait);
  sayWhenListed();
}

// While a listing or "Load more" waits out a throttle, a note under the filters says when the
// jobs are read, and "Load more" says it too; `tick` counts them down.
function sayWhenListed() {
  var failed = state.listWaiting && state.listWaiting.failed;
  var wait = heldFor("list"), more = $("load-more"), note = $("list-wait");
  var waiting = Boolean(failed) || (wait > 0 && Boolean(state.listWaiting || state.moreTimer));
  if (!note) {
    if (!waiting) return;
    note = el("p", "hint");
    note.id = "list-wait";
    note.setAttribute("role", "status");
    $("filters").after(note);
  }
  var seconds = Math.ceil(wait / 1000) + " s";
  var says = function () {
    return failed ? ["Could not list the jobs (", said(failed.message), "): trying again in " +
      Math.max(0, Math.ceil((state.listWaiting.at - Date.now()) / 1000)) + " s."]
      : ["The API is throttling requests: the jobs will be read in " + seconds + "."];
  };
  note.hidden = !waiting;
  // A status is read out at each change: what it says is written for a screen reader once, as
  // the wait begins (or its reason changes), and its countdown is shown beside it, hidden from it.
  var reason = !waiting ? "" : failed ? "failed: " + failed.message : "held";
  if (note.dataset.reason !== reason) {
    note.dataset.reason = reason;
    var told = el("span", "visually-hidden"), shown = el("span");
    told.append.apply(told, waiting ? says() : []);
    shown.setAttribute("aria-hidden", "true");
    note.replaceChildren(told, shown);
  }
  note.lastChild.replaceChildren.apply(note.lastChild, waiting ? says() : []);
  if (state.moreTimer && wait > 0) {
    more.textContent = "Loading in " + seconds + "…";
    // Its name stays put while its text counts down: a focused button's name is read out as it changes.
    more.setAttribute("aria-label", "Loading more jobs once the throttle ends");
  }
}

// Until a listing that replaces the jobs shown answers, the rows shown (those of the filter left
// that the new one shows too) are marked busy, or the empty view says it is loading. A failed
// one is retried afresh: still loading.
function loading(on) {
  state.loading = on;
  if (on) $("jobs-table").setAttribute("aria-busy", "true");
  else $("jobs-table").removeAttribute("aria-busy");
  renderEmpty(state.jobs.size > 0 || Boolean(state.cursor));
}

// Returns the delay of the next refresh (ms).
function scheduleRefresh(atLeastMs) {
  var delay = Math.max(LIST_REFRESH_MS, atLeastMs || 0);
  clearTimeout(state.refreshTimer);
  if (state.authorized && !document.hidden) state.refreshTimer = setTimeout(function () { refreshList(false); }, delay);
  return delay;
}

function loadMore() {
  var more = $("load-more");
  if (!state.cursor || busy(more)) return;
  setBusy(more, true);
  more.textContent = "Loading…";
  readMore(state.listGeneration);
}

// The next page, read once no throttle holds the listings: pressed while one does, it waits
// that out (and says so) and reads then, once, unless a listing replaced the jobs meanwhile.
// Pressed, it goes out then even if the tab went to the background meanwhile.
function readMore(generation) {
  var more = $("load-more");
  state.moreTimer = null;
  if (generation !== state.listGeneration) { moreRead(false); return; }
  var wait = heldFor("list");
  if (wait > 0) {
    state.moreTimer = setTimeout(readMore, wait, generation);
    sayWhenListed();
    return;
  }
  sayWhenListed();
  api("GET", listPath(state.cursor)).then(
    function (page) {
      if (generation !== state.listGeneration) return;
      page.jobs.forEach(remember);
      state.cursor = page.next_cursor || null;
      if (!state.cursor) state.listEnd = "";
      else if (page.jobs.length) state.listEnd = listed(page.jobs[page.jobs.length - 1]);
      order();
      schedulePoll(0);
    }
  ).catch(
    function (err) {
      readFailed(err, "Could not load more jobs: ");
    }
  ).then(function () { moreRead(true); });
}

function moreRead(read) {
  var more = $("load-more");
  setBusy(more, false);
  more.textContent = "Load more";
  more.removeAttribute("aria-label");
  // The last page loaded: the focus goes to the last job's details, not the page's start.
  if (read && !state.cursor && document.activeElement === more) {
    var rows = $("jobs-body").querySelectorAll("tr.job");
    if (rows.length) state.rows.get(rows[rows.length - 1].dataset.jobId).toggle.focus();
  }
  more.hidden = !state.cursor;
}

// ---------------------------------------------------------------- polling

// Polls every unfinished job shown, in one POST /jobs/status (chunks of 100 only past that),
// every 2 s while something changes, backing off to 10 s while nothing does. Each batch sends
// the ETag of its last answer: while none of its jobs changed, the answer is a 304 without a
// body and nothing is read or rendered.
function schedulePoll(delay) {
  if (!state.authorized || document.hidden) return;
  // A new job or a cancel polls soon, but never sooner than a throttle asked.
  state.pollDelay = Math.max(POLL_MIN_MS, delay, heldFor("poll"));
  if (state.polling) return; // the running poll schedules the next one
  clearTimeout(state.pollTimer);
  state.pollTimer = setTimeout(poll, state.pollDelay);
}

// Polls at once, unless a throttle's Retry-After has not passed or a poll is on its way
// (then the next poll is as soon as either allows).
function pollNow() {
  if (state.polling || heldFor("poll")) { schedulePoll(0); return; }
  clearTimeout(state.pollTimer);
  poll();
}

function ensurePolling() {
  if (state.authorized && !document.hidden && !state.polling && !state.pollTimer) state.pollTimer = setTimeout(poll, state.pollDelay);
}

function poll() {
  state.pollTimer = null;
  var ids = unfinishedIds();
  if (!ids.length || !state.authorized || document.hidden) return; // nothing to watch until a new job shows up
  state.polling = true;
  var chunks = [];
  for (var i = 0; i < ids.length; i += MAX_BATCH) chunks.push(ids.slice(i, i + MAX_BATCH));
  var tags = state.pollTags;
  var kept = new Map(); // only the batches of this poll keep their tags
  // The poll ends once every batch has answered or failed: one that fails at once does not end
  // it while another is slow (a loaded stack: up to 30 s), or the next poll would send that one
  // again on top of it. The batches answered are shown; a failed one is read whole next time.
  // At most POLL_BATCHES batches are on their way at once; the others wait their turn within
  // the poll (1,000 jobs loaded are no burst of 10 POSTs). Once a batch is throttled (a 429,
  // with a Retry-After or, as API Gateway's own, without: the polls are held either way), asked
  // to wait by a Retry-After, or answered for a token since replaced, those still waiting are
  // not sent: read next time.
  var failures = [], answers = chunks.map(function () { return null; }), next = 0;
  var halted = function () {
    return failures.some(function (err) { return throttled(err) || err.retryAfterMs || err instanceof StaleAnswer; });
  };
  function send() {
    if (next >= chunks.length || halted()) return Promise.resolve();
    var at = next++, chunk = chunks[at], key = chunk.join(" ");
    return api("POST", "jobs/status", { job_ids: chunk }, undefined, tags.get(key) || "").then(function (tagged) {
      if (tagged.etag) kept.set(key, tagged.etag);
      answers[at] = tagged.data;
    }, function (err) {
      failures.push(err);
    }).then(send);
  }
  var senders = [];
  for (var n = 0; n < Math.min(POLL_BATCHES, chunks.length); n++) senders.push(send());
  Promise.all(senders).then(
    function () {
      // An answer to a token since replaced belongs to its tenant: nothing of this poll is shown.
      var stale = failures.filter(function (err) { return err instanceof StaleAnswer; });
      if (stale.length) throw stale[0];
      if (state.pollTags === tags) state.pollTags = kept; // unless the jobs shown were cleared meanwhile
      var changed = false;
      answers.forEach(function (answer) {
        if (answer === null) return; // 304: its jobs are as shown
        answer.job_ids.forEach(function (id) {
          var job = answer.jobs[id];
          if (!job) return;
          if (job.status === "not_found" ? markGone(id) : remember(job)) changed = true;
        });
      });
      if (changed) order();
      // A throttle's Retry-After is what the next poll waits out, whichever batch failed first.
      if (failures.length) throw failures.filter(function (err) { return err.retryAfterMs; })[0] || failures[0];
      state.pollDelay = changed ? POLL_MIN_MS : Math.min(POLL_MAX_MS, state.pollDelay * POLL_BACKOFF);
    }
  ).catch(
    // Whatever failed, the next poll is scheduled below: the polls never stop on an error.
    function (err) {
      readFailed(err, "Could not poll job status: ");
      state.pollDelay = Math.max(Math.min(POLL_MAX_MS, state.pollDelay * 2), err.retryAfterMs || 0);
    }
  ).then(function () {
    state.polling = false;
    if (state.authorized && !document.hidden) {
      clearTimeout(state.pollTimer);
      state.pollTimer = setTimeout(poll, state.pollDelay);
    }
  });
}

// Durations of running jobs and waits of scheduled ones tick between polls; past midnight,
// the times shown as "today", in the table and in open details alike, gain their date.
var today = new Date().toDateString();

function tick() {
  if (state.listWaiting || state.moreTimer) sayWhenListed();
  if (new Date().toDateString() !== today) {
    today = new Date().toDateString();
    $("jobs-body").querySelectorAll("time.at").forEach(function (time) { time.textContent = when(time.dateTime); });
  }
  state.jobs.forEach(function (job) {
    if (TERMINAL[job.status] || state.gone.has(job.id)) return;
    var row = state.rows.get(job.id);
    if (job.status === "running") row.renderDuration(job); // a waiting job's duration is fixed
    row.renderSchedule(job);
  });
}

Object.assign(jobpipe, { loadMore: loadMore, pollNow: pollNow, refreshList: refreshList,
  schedulePoll: schedulePoll, tick: tick });
})(window.jobpipe);

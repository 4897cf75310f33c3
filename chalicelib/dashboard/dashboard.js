// jobpipe dashboard: lists the tenant's jobs and keeps the unfinished ones live with one batch
// status request per tick. Plain browser JavaScript, no build step, no external resources.
(function () {
  "use strict";

  var TOKEN_KEY = "jobpipe.dashboard.token";
  var STATUSES = ["queued", "running", "retrying", "completed", "failed", "canceled"];
  var TERMINAL = { completed: true, failed: true, canceled: true };
  var POLL_MIN_MS = 2000;      // while something changes
  var POLL_MAX_MS = 10000;     // backed off to when nothing does
  var POLL_BACKOFF = 1.5;
  var LIST_REFRESH_MS = 10000; // new jobs submitted elsewhere show up within this
  var MAX_BATCH = 100;         // POST /jobs/status takes at most 100 ids
  var ARRIVALS_MAX = 500;      // jobs the refreshes may add to a page left open before it starts over
  var PAUSED = "paused while this tab is hidden";
  var CANCEL_NOTES = { "canceling…": true, "cancel requested": true, "canceled": true };
  var RETRY_AFTER_MAX_MS = 600000; // a throttle's Retry-After is honoured up to 10 minutes
  var REQUEST_TIMEOUT_MS = 30000;  // API Gateway answers within 29 s; past that nobody will

  // The page lives at <stage>/dashboard; the API routes are its siblings.
  var API_BASE = location.origin + location.pathname.replace(/\/dashboard\/?$/, "/");

  var $ = function (id) { return document.getElementById(id); };

  var state = {
    jobs: new Map(),   // id -> job, as last seen
    rows: new Map(),   // id -> row view
    left: new Map(),   // id -> version at which the job left the status filter's view
    gone: new Set(),   // ids shown that the batch status answered not_found: not polled
    pollTags: new Map(), // ids of a poll's batch -> the ETag of its last answer
    listTag: "",       // the ETag of the current listing's first page, as last merged
    listTop: "",       // listed() of the newest job of the first page, as last merged
    arrived: 0,        // jobs the refreshes added since the listing (re)started
    cursor: null,      // next page of the current listing
    filters: { status: "", type: "", limit: 25 },
    jobTypes: [],      // GET /job-types, as last read
    typesRead: false,  // whether GET /job-types has answered (its list may be empty)
    typesShown: new Set(), // types of the jobs shown under this token, whatever the filters
    typesAsked: new Set(), // types missing from /job-types that made the page read it again
    pollDelay: POLL_MIN_MS,
    pollTimer: null,
    pollNotBefore: 0,  // a throttled poll's Retry-After: no poll before this (ms since the epoch)
    polling: false,
    refreshTimer: null,
    listGeneration: 0, // a changed filter makes answers to older listings stale
    shownFor: null,    // the token whose jobs the page shows
    authorized: false
  };

  // ---------------------------------------------------------------- token

  // Keeps a token given in the fragment or the form: "Bearer " and whitespace (a token wrapped
  // over lines when copied from a terminal) are dropped. Returns why it was refused, or "".
  // A header can carry printable ASCII only: anything else could never be sent (fetch throws).
  function keepToken(value) {
    var jwt = value.trim().replace(/^Bearer\s+/i, "").replace(/\s+/g, "");
    if (!jwt) return ""; // nothing given: the token kept before, if any, stays
    var bad = jwt.match(/[^\x21-\x7e]/);
    if (bad) return "That is not a token: it holds “" + bad[0] + "”, which a token never does (was it cut short when copied?).";
    sessionStorage.setItem(TOKEN_KEY, jwt);
    return "";
  }

  // Returns why the fragment's token was refused, or "" (also when there was none).
  function takeTokenFromFragment() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    var token = params.get("token");
    if (token === null) return "";
    params.delete("token");
    var rest = params.toString();
    // Drop the token from the address bar and history once it is in session storage.
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    return keepToken(token);
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function claims(jwt) {
    try {
      var part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    } catch (e) {
      return null;
    }
  }

  // ---------------------------------------------------------------- API

  function ApiError(status, code, message, details, retryAfterMs) {
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.message = message;
    this.details = details;
    this.retryAfterMs = retryAfterMs || 0;
  }
  ApiError.prototype = Object.create(Error.prototype);

  // No usable answer: the API was not reached, or what answered was not the API's JSON.
  function NetworkError(message) {
    this.name = "NetworkError";
    this.message = message;
  }
  NetworkError.prototype = Object.create(Error.prototype);

  // The answer to a request sent with a token that has since been forgotten or replaced: it
  // belongs to that token's tenant, so nothing of it is shown or acted on.
  function StaleAnswer() {
    this.name = "StaleAnswer";
    this.message = "the token changed while the request was answered";
  }
  StaleAnswer.prototype = Object.create(Error.prototype);

  // Retry-After in seconds or as an HTTP date; 0 when absent or unreadable.
  function retryAfterMs(response) {
    var value = response.headers.get("Retry-After");
    if (!value) return 0;
    var ms = /^\s*\d+\s*$/.test(value) ? Number(value) * 1000 : new Date(value) - Date.now();
    return ms > 0 ? Math.min(ms, RETRY_AFTER_MAX_MS) : 0;
  }

  // `tag`: a conditional read (the API tags its answer with an ETag). The call then resolves to
  // {data, etag}; given a tag from an earlier answer it is sent as If-None-Match, and a 304
  // (nothing changed since) resolves to {data: null, etag} without a body to read.
  function api(method, path, body, headers, tag) {
    var jwt = token();
    var conditional = tag !== undefined;
    if (tag) headers = Object.assign({ "If-None-Match": tag }, headers);
    if (!jwt) return Promise.reject(new ApiError(401, "unauthorized", "Paste a token to start."));
    var init = {
      method: method,
      cache: "no-store",
      credentials: "omit",
      headers: Object.assign({ Authorization: "Bearer " + jwt, Accept: "application/json" }, headers)
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    // A request nobody answers (a host gone mid-connection, a proxy holding it) is given up,
    // body included, so the page says it is offline instead of "live" with nothing moving.
    var abort = new AbortController();
    var timedOut = false;
    var timer = setTimeout(function () { timedOut = true; abort.abort(); }, REQUEST_TIMEOUT_MS);
    init.signal = abort.signal;
    var unreachable = function (err) {
      clearTimeout(timer);
      if (token() !== jwt) throw new StaleAnswer();
      throw new NetworkError("Cannot reach the API (" + (timedOut ? "no answer within " + REQUEST_TIMEOUT_MS / 1000 + " s"
        : err && err.message ? err.message : "network error") + ").");
    };
    return fetch(API_BASE + path, init).then(
      function (response) {
        return response.text().then(function (text) {
          clearTimeout(timer);
          if (token() !== jwt) throw new StaleAnswer();
          if (tag && response.status === 304) {
            connected();
            return { data: null, etag: response.headers.get("ETag") || tag };
          }
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
          if (!response.ok) {
            var error = (data && data.error) || {};
            throw new ApiError(
              response.status,
              error.code || "http_" + response.status,
              error.message || (data && typeof data.message === "string" && data.message) ||
                ("the API answered " + response.status + " " + response.statusText),
              error.details,
              retryAfterMs(response)
            );
          }
          if (data === null || typeof data !== "object") {
            var kind = response.headers.get("Content-Type") || "no content type";
            throw new NetworkError("The answer to " + method + " " + path.split("?")[0] + " was not JSON (" +
              response.status + ", " + kind + ").");
          }
          connected();
          return conditional ? { data: data, etag: response.headers.get("ETag") || "" } : data;
        }, unreachable);
      },
      unreachable
    );
  }

  // One place decides what an error means for the page; returns true when it was handled.
  function handleError(err) {
    if (err instanceof StaleAnswer) return true;
    if (err instanceof ApiError && err.status === 401) {
      askForToken(err.code === "unauthorized" && token() ? "The API refused the token: " + err.message : err.message);
      return true;
    }
    if (err instanceof NetworkError || (err instanceof ApiError && err.status >= 500)) {
      showBanner(err.message + " Retrying automatically.");
      setLive("offline", "offline, retrying");
      return true;
    }
    if (err instanceof ApiError && err.status === 429 && err.code !== "quota_exceeded") {
      showBanner("The API is throttling requests (" + err.message + "). Retrying in " +
        Math.ceil(Math.max(err.retryAfterMs, POLL_MIN_MS) / 1000) + " s.");
      setLive("offline", "throttled, retrying");
      return true;
    }
    return false;
  }

  function connected() {
    hideBanner();
    if (document.hidden) setLive("idle", PAUSED);
    else setLive("live", "live · updated " + clock(new Date()));
  }

  // ---------------------------------------------------------------- page chrome

  function showBanner(text) { var b = $("banner"); b.textContent = text; b.hidden = false; }
  function hideBanner() { var b = $("banner"); if (!b.hidden) { b.hidden = true; b.textContent = ""; } }

  function setLive(kind, text) {
    var live = $("live");
    live.dataset.state = kind;
    live.textContent = text;
  }

  function askForToken(reason) {
    state.authorized = false;
    stopTimers();
    $("workspace").hidden = true;
    $("identity").hidden = true;
    $("forget-token").hidden = !token();
    $("token-panel").hidden = false;
    $("token-reason").textContent = reason || "";
    setLive("idle", "not connected");
    hideBanner();
    $("token-input").focus();
  }

  function showWorkspace() {
    state.authorized = true;
    $("token-panel").hidden = true;
    $("workspace").hidden = false;
    $("forget-token").hidden = false;
    var c = claims(token());
    var identity = $("identity");
    if (c && c.tenant) {
      identity.textContent = "tenant " + c.tenant + (c.sub ? " · " + c.sub : "");
      identity.hidden = false;
    } else {
      identity.hidden = true;
    }
  }

  function stopTimers() {
    clearTimeout(state.pollTimer);
    clearTimeout(state.refreshTimer);
    state.pollTimer = null;
    state.refreshTimer = null;
  }

  // ---------------------------------------------------------------- formatting

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function clock(date) {
    return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }

  function when(iso) {
    if (!iso) return "";
    var date = new Date(iso);
    var today = new Date();
    var sameDay = date.toDateString() === today.toDateString();
    return (sameDay ? "" : date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " ") + clock(date);
  }

  function duration(ms) {
    if (ms < 0) ms = 0;
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " m " + pad(Math.floor(s % 60)) + " s";
    var h = Math.floor(m / 60);
    // A run_at up to a year ahead counts down in days, not in thousands of hours.
    if (h < 48) return h + " h " + pad(m % 60) + " m";
    return Math.floor(h / 24) + " d " + pad(h % 24) + " h";
  }

  function countdown(ms) {
    return ms < 60000 ? Math.ceil(ms / 1000) + " s" : duration(ms);
  }

  function jobDuration(job) {
    if (!job.started_at) return "";
    var end = job.finished_at ? new Date(job.finished_at) : new Date();
    return duration(end - new Date(job.started_at)) + (job.finished_at ? "" : " …");
  }

  function shortId(id) { return id.length > 8 ? id.slice(0, 8) : id; }

  // A button whose request is on its way is marked aria-disabled, not disabled: a disabled
  // button drops the keyboard's focus to the page's start. Its handler ignores it while busy.
  function setBusy(button, on) {
    if (on) button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
  }

  function busy(button) { return button.getAttribute("aria-disabled") === "true"; }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---------------------------------------------------------------- rows

  function JobRow(id) {
    this.id = id;
    var tr = this.tr = el("tr", "job");
    tr.dataset.jobId = id;

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
    actions.appendChild(this.cancel);

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
    if (cancellable && job.cancel_requested) {
      setBusy(this.cancel, true);
      if (!this.note.textContent) this.note.textContent = "cancel requested";
    }
    // A job whose worker finished before it saw the cancel ended otherwise: the note says so
    // instead of a cancel still pending.
    if (!cancellable && status !== "canceled" && CANCEL_NOTES[this.note.textContent]) {
      this.note.textContent = job.cancel_requested ? "cancel requested, but it " + status + " first" : "";
    }

    var facts = [["id", job.id], ["priority", job.priority], ["submitted by", job.user]];
    if (job.scope) facts.push(["scope", job.scope]);
    // The row cuts these short: the details show them whole.
    if (message) facts.push(["message", message]);
    if (job.error) facts.push(["error", job.error.code + ": " + job.error.message]);
    facts.push(["payload", JSON.stringify(job.payload, null, 2)]);
    if (job.result !== null && job.result !== undefined) facts.push(["result", JSON.stringify(job.result, null, 2)]);
    this.detailList.replaceChildren();
    for (var i = 0; i < facts.length; i++) {
      var value = el("dd");
      value.appendChild(el(/^(payload|result)$/.test(facts[i][0]) ? "pre" : "code", null, facts[i][1]));
      this.detailList.append(el("dt", null, facts[i][0]), value);
    }
    if (!this.detailTr.hidden && status !== this.runsLoadedFor) this.loadRuns(status);
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
  };

  // A Cancel that goes away with the keyboard's focus on it hands the focus to its job's
  // details, not to the page's start.
  JobRow.prototype.hideCancel = function () {
    if (document.activeElement === this.cancel) this.toggle.focus();
    this.cancel.hidden = true;
    setBusy(this.cancel, false);
  };

  JobRow.prototype.toggleDetails = function () {
    var open = this.detailTr.hidden;
    this.detailTr.hidden = !open;
    this.toggle.setAttribute("aria-expanded", String(open));
    this.toggle.textContent = open ? "hide details" : "details";
    if (open) this.loadRuns(this.tr.dataset.status);
  };

  // One GET per opening (and per status change while open): runs are not polled.
  JobRow.prototype.loadRuns = function (status) {
    var self = this;
    this.runsLoadedFor = status;
    api("GET", "jobs/" + encodeURIComponent(this.id) + "/runs").then(function (answer) {
      var runs = answer.runs || [];
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
        var cells = [el("td", null, String(run.attempt)), el("td"), el("td"), el("td"),
          el("td", null, run.error ? run.error.code + ": " + run.error.message : "")];
        cells[1].appendChild(badge);
        if (run.started_at) cells[2].appendChild(timeOf(run.started_at));
        if (run.finished_at) cells[3].appendChild(timeOf(run.finished_at));
        tr.append.apply(tr, cells);
        table.appendChild(tr);
      });
      self.runs.replaceChildren(el("h3", null, runs.length ? "Attempts" : "No attempts yet"));
      if (runs.length) self.runs.appendChild(table);
    }, function (err) {
      self.runsLoadedFor = null;
      if (!handleError(err)) self.runs.replaceChildren(el("p", "error-message", "Could not load attempts: " + err.message));
    });
  };

  // Times of today show the clock only, others their date too (both in the browser's zone).
  JobRow.prototype.renderTimes = function (job) {
    this.times.replaceChildren(
      timeLine("created", job.created_at),
      timeLine("started", job.started_at),
      timeLine("finished", job.finished_at)
    );
  };

  JobRow.prototype.renderDuration = function (job) {
    this.duration.textContent = jobDuration(job);
  };

  // A job submitted with a delay or run_at, or waiting out a retry's backoff, is queued or
  // retrying with `not_before` ahead: say when it starts, counting down.
  JobRow.prototype.renderSchedule = function (job) {
    var waiting = (job.status === "queued" || job.status === "retrying") && job.not_before;
    var left = waiting ? new Date(job.not_before) - Date.now() : 0;
    if (!(left >= 1000)) {
      if (this.schedule.firstChild) this.schedule.replaceChildren();
      return;
    }
    var time = el("time", null, countdown(left));
    time.dateTime = job.not_before;
    time.title = when(job.not_before) + " (" + job.not_before + ")";
    this.schedule.replaceChildren(job.status === "retrying" ? "next attempt in " : "starts in ", time);
  };

  function timeLine(label, iso) {
    var line = el("div", "time-line");
    if (iso) line.append(el("span", "time-label", label + " "), timeOf(iso));
    return line;
  }

  // A time in the browser's zone, with the API's UTC text as its title.
  function timeOf(iso) {
    var time = el("time", null, when(iso));
    time.dateTime = iso;
    time.title = iso;
    return time;
  }

  // ---------------------------------------------------------------- job state

  // Whether the current filters show `job` (its type never changes; its status does).
  function shown(job) {
    return (!state.filters.status || job.status === state.filters.status) &&
      (!state.filters.type || job.type === state.filters.type);
  }

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
    if (!shown(job)) {
      if (known) forget(job);
      return Boolean(known);
    }
    state.left.delete(job.id);
    var changed = back || !known || known.version !== job.version || known.status !== job.status;
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

  function forget(job) {
    state.left.set(job.id, job.version);
    drop(job.id);
  }

  function drop(id) {
    var row = state.rows.get(id);
    state.gone.delete(id);
    state.jobs.delete(id);
    state.rows.delete(id);
    if (row) { row.tr.remove(); row.detailTr.remove(); }
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
    renderEmpty(jobs.length > 0 || Boolean(state.cursor));
    renderSummary();
    syncTypes();
  }

  // An empty view says which filters emptied it and offers to clear them: a type chosen that
  // has no jobs any more would otherwise look like a tenant without jobs.
  function renderEmpty(hidden) {
    $("jobs-empty").hidden = hidden;
    if (hidden) return;
    var f = state.filters;
    var filtered = Boolean(f.status || f.type);
    $("jobs-empty-text").textContent = !filtered ? "No jobs here yet. Submit one with the form."
      : "No " + (f.status ? f.status + " " : "") + "jobs" + (f.type ? " of type " + f.type : "") + "." +
        (f.type && state.typesRead && !registered(f.type)
          ? " The API does not list that type: it is internal, or no longer registered." : "");
    $("clear-filters").hidden = !filtered;
  }

  function registered(type) {
    return state.jobTypes.some(function (t) { return t.type === type; });
  }

  // The type filter offers every registered type, every type of a job shown (an internal one,
  // one deployed since /job-types was read) and the one chosen, so the choice never reads "all"
  // while it filters. A type /job-types did not list makes the page read it again, once, so
  // the form offers a type deployed while the page was open.
  function syncTypes() {
    var unknown = false;
    state.jobs.forEach(function (job) {
      state.typesShown.add(job.type);
      if (!registered(job.type) && !state.typesAsked.has(job.type)) {
        state.typesAsked.add(job.type);
        unknown = true;
      }
    });
    renderTypeFilter();
    // Before the first read has answered, that read (or the listing's retry of it) serves.
    if (unknown && state.typesRead) loadJobTypes();
  }

  function renderTypeFilter() {
    var names = new Set(state.typesShown);
    state.jobTypes.forEach(function (t) { names.add(t.type); });
    if (state.filters.type) names.add(state.filters.type);
    var sorted = Array.from(names).sort();
    var filter = $("filter-type");
    var offered = Array.from(filter.options, function (o) { return o.value; }).slice(1);
    // Rebuilt only when the choices change: a list the user has open stays open.
    if (JSON.stringify(offered) !== JSON.stringify(sorted)) {
      filter.replaceChildren(new Option("all", ""));
      sorted.forEach(function (name) {
        var option = new Option(name, name);
        option.title = name;
        filter.appendChild(option);
      });
    }
    filter.value = state.filters.type;
  }

  function renderSummary() {
    var counts = {};
    state.jobs.forEach(function (job) { if (!state.gone.has(job.id)) counts[job.status] = (counts[job.status] || 0) + 1; });
    var summary = $("summary");
    summary.replaceChildren();
    STATUSES.forEach(function (status) {
      var item = el("li", "chip status-" + status);
      item.append(el("span", "chip-count", String(counts[status] || 0)), el("span", "chip-label", status));
      summary.appendChild(item);
    });
  }

  function clearJobs() {
    state.jobs.clear();
    state.rows.clear();
    state.left.clear();
    state.gone.clear();
    state.pollTags = new Map();
    state.listTag = "";
    state.listTop = "";
    state.arrived = 0;
    state.cursor = null;
    $("jobs-body").replaceChildren();
  }

  function forgetTypesShown() {
    state.typesShown.clear();
    renderTypeFilter();
  }

  function unfinishedIds() {
    var ids = [];
    state.jobs.forEach(function (job) { if (!TERMINAL[job.status] && !state.gone.has(job.id)) ids.push(job.id); });
    return ids;
  }

  // ---------------------------------------------------------------- listing

  function listPath(cursor) {
    var params = new URLSearchParams();
    params.set("limit", String(state.filters.limit));
    if (state.filters.status) params.set("status", state.filters.status);
    if (state.filters.type) params.set("type", state.filters.type);
    if (cursor) params.set("cursor", cursor);
    return "jobs?" + params.toString();
  }

  // First page of the current listing; merges into what is shown (keeps rows and open details).
  // A re-read sends the page's ETag: unchanged, it is a 304 and nothing is read or rendered.
  function refreshList(reset) {
    clearTimeout(state.refreshTimer);
    var generation = reset ? ++state.listGeneration : state.listGeneration;
    var more = $("load-more");
    if (reset) {
      // The cursor belongs to the listing being replaced: it must not page the new one.
      state.cursor = null;
      more.hidden = true;
    }
    return api("GET", listPath(null), undefined, undefined, reset ? "" : state.listTag).then(
      function (tagged) {
        if (generation !== state.listGeneration) return;
        var page = tagged.data;
        if (page === null) { // 304: the page is as merged before
          ensurePolling();
          scheduleRefresh();
          return;
        }
        var fresh = page.jobs.filter(function (job) { return !state.jobs.has(job.id); }).length;
        // The page starts over from this one when it does not reach the jobs shown (more were
        // made since the last refresh than it holds: below it would be a gap "Load more" never
        // fills), or when a page left open has been brought ARRIVALS_MAX jobs (rows never pile
        // up without end). Either way what follows it is one "Load more" away.
        var last = page.jobs[page.jobs.length - 1];
        var startOver = !reset && state.jobs.size > 0 && Boolean(page.next_cursor) && Boolean(last) &&
          (listed(last) > state.listTop || state.arrived + fresh > ARRIVALS_MAX);
        var redraw = reset || startOver || state.jobs.size === 0;
        if (reset) {
          clearJobs();
        } else if (startOver) {
          var onPage = new Set(page.jobs.map(function (job) { return job.id; }));
          Array.from(state.jobs.keys()).forEach(function (id) { if (!onPage.has(id)) drop(id); });
          state.left.clear();
          state.pollTags = new Map();
          state.listGeneration++; // a "Load more" on its way would page on from the old rows
        }
        if (redraw) {
          state.cursor = page.next_cursor || null;
          more.hidden = !state.cursor;
          state.arrived = 0;
        } else {
          state.arrived += fresh;
        }
        if (page.jobs.length) state.listTop = listed(page.jobs[0]);
        state.listTag = tagged.etag;
        var changed = page.jobs.map(remember).some(Boolean); // new jobs, or known ones that moved on
        if (changed || redraw) order();
        if (changed) schedulePoll(0); else ensurePolling();
        scheduleRefresh();
        if (!state.typesRead) loadJobTypes();
      }
    ).catch(
      // A failed refresh (or an answer the page could not use) never ends the refreshes.
      function (err) {
        if (generation !== state.listGeneration) return;
        if (!handleError(err)) showBanner("Could not list jobs: " + err.message);
        scheduleRefresh(err.retryAfterMs);
      }
    );
  }

  function scheduleRefresh(atLeastMs) {
    clearTimeout(state.refreshTimer);
    if (!state.authorized || document.hidden) return;
    state.refreshTimer = setTimeout(function () { refreshList(false); }, Math.max(LIST_REFRESH_MS, atLeastMs || 0));
  }

  function loadMore() {
    var more = $("load-more");
    if (!state.cursor || busy(more)) return;
    var generation = state.listGeneration;
    setBusy(more, true);
    more.textContent = "Loading…";
    api("GET", listPath(state.cursor)).then(
      function (page) {
        if (generation !== state.listGeneration) return;
        page.jobs.forEach(remember);
        state.cursor = page.next_cursor || null;
        order();
        schedulePoll(0);
      }
    ).catch(
      function (err) {
        if (!handleError(err)) showBanner("Could not load more jobs: " + err.message);
      }
    ).then(function () {
      setBusy(more, false);
      more.textContent = "Load more";
      // The last page loaded: the focus goes to the last job's details, not the page's start.
      if (!state.cursor && document.activeElement === more) {
        var rows = $("jobs-body").querySelectorAll("tr.job");
        if (rows.length) state.rows.get(rows[rows.length - 1].dataset.jobId).toggle.focus();
      }
      more.hidden = !state.cursor;
    });
  }

  // ---------------------------------------------------------------- polling

  // Polls every unfinished job shown, in one POST /jobs/status (chunks of 100 only past that),
  // every 2 s while something changes, backing off to 10 s while nothing does. Each batch sends
  // the ETag of its last answer: while none of its jobs changed, the answer is a 304 without a
  // body and nothing is read or rendered.
  function schedulePoll(delay) {
    if (!state.authorized || document.hidden) return;
    // A new job or a cancel polls soon, but never sooner than a throttle asked.
    state.pollDelay = Math.max(POLL_MIN_MS, delay, state.pollNotBefore - Date.now());
    if (state.polling) return; // the running poll schedules the next one
    clearTimeout(state.pollTimer);
    state.pollTimer = setTimeout(poll, state.pollDelay);
  }

  // Polls at once, unless a throttle's Retry-After has not passed or a poll is on its way
  // (then the next poll is as soon as either allows).
  function pollNow() {
    if (state.polling || state.pollNotBefore > Date.now()) { schedulePoll(0); return; }
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
    Promise.all(chunks.map(function (chunk) {
      var key = chunk.join(" ");
      return api("POST", "jobs/status", { job_ids: chunk }, undefined, tags.get(key) || "").then(function (tagged) {
        if (tagged.etag) kept.set(key, tagged.etag);
        return tagged.data;
      });
    })).then(
      function (answers) {
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
        state.pollDelay = changed ? POLL_MIN_MS : Math.min(POLL_MAX_MS, state.pollDelay * POLL_BACKOFF);
      }
    ).catch(
      // Whatever failed, the next poll is scheduled below: the polls never stop on an error.
      function (err) {
        if (!handleError(err)) showBanner("Could not poll job status: " + err.message);
        state.pollDelay = Math.max(Math.min(POLL_MAX_MS, state.pollDelay * 2), err.retryAfterMs || 0);
        if (err.retryAfterMs) state.pollNotBefore = Date.now() + err.retryAfterMs;
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
  // the times shown as "today" gain their date.
  var today = new Date().toDateString();

  function tick() {
    if (new Date().toDateString() !== today) {
      today = new Date().toDateString();
      state.jobs.forEach(function (job) { state.rows.get(job.id).renderTimes(job); });
    }
    state.jobs.forEach(function (job) {
      if (TERMINAL[job.status] || state.gone.has(job.id)) return;
      var row = state.rows.get(job.id);
      if (job.started_at) row.renderDuration(job);
      row.renderSchedule(job);
    });
  }

  // ---------------------------------------------------------------- actions

  function cancelJob(id) {
    var row = state.rows.get(id);
    if (busy(row.cancel)) return;
    setBusy(row.cancel, true);
    row.note.textContent = "canceling…";
    api("DELETE", "jobs/" + encodeURIComponent(id)).then(
      function (job) {
        row.note.textContent = job.status === "canceled" ? "canceled" : "cancel requested";
        remember(job);
        order();
        schedulePoll(0);
      },
      function (err) {
        if (err instanceof ApiError && (err.status === 409 || err.status === 404)) {
          row.note.textContent = err.message;
          // It finished (or went away) meanwhile: a poll shows its final state, and a poll
          // that fails is shown and retried like every other.
          pollNow();
          return;
        }
        setBusy(row.cancel, false);
        row.note.textContent = "";
        if (!handleError(err)) row.note.textContent = "cancel failed: " + err.message;
      }
    );
  }

  function exampleFor(schema) {
    if (!schema) return {};
    if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
    var example = {};
    var props = schema.properties || {};
    (schema.required || []).forEach(function (name) {
      var p = props[name] || {};
      if ("default" in p) example[name] = p["default"];
      else if (p.type === "integer" || p.type === "number") example[name] = "minimum" in p ? p.minimum : 0;
      else if (p.type === "boolean") example[name] = false;
      else if (p.type === "array") example[name] = [];
      else if (p.type === "object") example[name] = {};
      else example[name] = "";
    });
    return example;
  }

  function describeFields(schema) {
    var props = (schema && schema.properties) || {};
    var required = (schema && schema.required) || [];
    return Object.keys(props).map(function (name) {
      var p = props[name];
      var kind = p.type || (p.anyOf ? p.anyOf.map(function (a) { return a.type || a.enum; }).join("|") : p.enum ? p["enum"].join("|") : "");
      return name + (required.indexOf(name) >= 0 ? "" : "?") + (kind ? " (" + kind + ")" : "") + (p.description ? ": " + p.description : "");
    }).join(" · ");
  }

  var lastExample = "";

  function selectJobType() {
    var type = $("job-type").value;
    var info = state.jobTypes.find(function (t) { return t.type === type; });
    if (!state.jobTypes.length) {
      $("job-type-description").textContent = "The API lists no job types: there is nothing to submit.";
      $("payload-help").textContent = "";
    }
    if (!info) return;
    $("job-type-description").textContent = (info.description || "") +
      " (at most " + info.max_attempts + " attempts, timeout " + info.timeout_s + " s)";
    $("payload-help").textContent = describeFields(info.payload_schema);
    var textarea = $("job-payload");
    // Replace the payload only if the user has not written their own.
    if (!textarea.value.trim() || textarea.value === lastExample) {
      lastExample = JSON.stringify(exampleFor(info.payload_schema), null, 2);
      textarea.value = lastExample;
    }
  }

  // The form starts on a type that is harmless to submit by mistake: demo.steps where demo
  // types are on, else the first type that is not a demo (never demo.chaos, first by name).
  function defaultJobType(types) {
    var names = types.map(function (t) { return t.type; });
    if (names.indexOf("demo.steps") >= 0) return "demo.steps";
    var plain = names.filter(function (n) { return n.indexOf("demo.") !== 0; });
    return plain[0] || "";
  }

  var typesReading = null; // the read of /job-types on its way: asked again, it is not sent twice

  function loadJobTypes() {
    if (typesReading) return typesReading;
    typesReading = api("GET", "job-types").then(function (answer) {
      state.jobTypes = answer.job_types || [];
      state.typesRead = true;
      var select = $("job-type");
      var chosen = select.value;
      select.replaceChildren();
      state.jobTypes.forEach(function (t) {
        var option = new Option(t.type, t.type);
        option.title = t.type;
        select.appendChild(option);
      });
      // A type withdrawn since it was chosen is not kept as a blank choice.
      select.value = chosen && registered(chosen) ? chosen : defaultJobType(state.jobTypes);
      selectJobType();
      renderTypeFilter();
      if (!$("jobs-empty").hidden) renderEmpty(false);
    }, function (err) {
      if (!handleError(err)) setFormStatus("error", "Could not load job types: " + err.message);
    }).then(function () { typesReading = null; });
    return typesReading;
  }

  function setFormStatus(kind, text) {
    var status = $("submit-status");
    status.dataset.kind = kind;
    status.textContent = text;
  }

  // A submit that got no usable answer (none at all, or a 5xx) may have made the job. Its
  // Idempotency-Key is kept for the same form contents, so pressing Submit again returns the job
  // that submit made instead of making a second one; an answered submit forgets it.
  var unsettledSubmit = null; // {body: the JSON sent, key}

  function newIdempotencyKey() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes); // works on plain http too, unlike crypto.randomUUID
    return "dashboard-" + Array.from(bytes, function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
  }

  // The form's field a refused submit points at: the job type, the priority or the payload.
  function fieldAtFault(code, details) {
    if (code === "unknown_job_type") return $("job-type");
    if (code === "invalid_json" || code === "invalid_payload" || code === "payload_too_large") return $("job-payload");
    if (code !== "invalid_request") return null;
    var first = details.length && details[0] && Array.isArray(details[0].loc) ? String(details[0].loc[0]) : "";
    return first === "type" ? $("job-type") : first === "priority" ? $("job-priority") : $("job-payload");
  }

  // Marks `field` (or none) as the one at fault, and every other field of the form as not.
  function markInvalid(field) {
    ["job-type", "job-payload", "job-priority"].forEach(function (id) {
      if ($(id) === field) $(id).setAttribute("aria-invalid", "true");
      else $(id).removeAttribute("aria-invalid");
    });
  }

  // A number JSON.parse cannot hold exactly: an integer past 2^53 (read rounded, and sent so)
  // or a number past the largest double (read as Infinity, sent as null). `text` is valid
  // JSON. Returns the first such number as written, or "".
  function inexactNumber(text) {
    var token = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
    var match;
    while ((match = token.exec(text))) {
      var written = match[0];
      if (written.charAt(0) === '"') continue; // a string's digits are text
      var value = Number(written);
      if (!isFinite(value) || (/^-?\d+$/.test(written) && !Number.isSafeInteger(value))) return written;
    }
    return "";
  }

  function submitJob(event) {
    event.preventDefault();
    var button = $("submit-button");
    if (busy(button)) return; // the last submit is still on its way
    if (!$("job-type").value) {
      markInvalid($("job-type"));
      setFormStatus("error", state.typesRead ? "Not submitted: the API lists no job types."
        : "Not submitted: the job types are still being read.");
      return;
    }
    var textarea = $("job-payload");
    var refuse = function (text) {
      markInvalid(textarea);
      setFormStatus("error", text);
      textarea.focus();
    };
    var payload;
    try {
      payload = textarea.value.trim() ? JSON.parse(textarea.value) : {};
    } catch (e) {
      refuse("The payload is not valid JSON: " + e.message);
      return;
    }
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
      refuse("The payload must be a JSON object.");
      return;
    }
    var inexact = inexactNumber(textarea.value);
    if (inexact) {
      refuse("The payload's number " + inexact + " cannot be sent exactly from this page (JavaScript reads it as " +
        Number(inexact) + "): write it as text, or submit with the CLI.");
      return;
    }
    markInvalid(null);
    var body = { type: $("job-type").value, payload: payload };
    if ($("job-priority").value) body.priority = $("job-priority").value;
    var sent = JSON.stringify(body);
    var key = unsettledSubmit && unsettledSubmit.body === sent ? unsettledSubmit.key : newIdempotencyKey();
    unsettledSubmit = { body: sent, key: key };
    setBusy(button, true);
    setFormStatus("pending", "Submitting…");
    api("POST", "jobs", body, { "Idempotency-Key": key }).then(
      function (job) {
        if (unsettledSubmit && unsettledSubmit.key === key) unsettledSubmit = null;
        setFormStatus("ok", "Submitted " + job.type + " job " + job.id + ".");
        $("submit-status").dataset.jobId = job.id;
        remember(job);
        order();
        schedulePoll(0);
      },
      function (err) {
        var unknown = err instanceof NetworkError || (err instanceof ApiError && err.status >= 500);
        if (!unknown && unsettledSubmit && unsettledSubmit.key === key) unsettledSubmit = null;
        if (handleError(err)) {
          setFormStatus("error", unknown
            ? "No usable answer to the submit (" + err.message + "). The job may have been accepted: press " +
              "Submit job again with the same payload to make sure; it will not be made twice."
            : err.status === 429
              ? "Not submitted: the API is throttling requests (" + err.message + "). Press Submit job again in " +
                Math.ceil(Math.max(err.retryAfterMs, 1000) / 1000) + " s."
              : "Not submitted: " + err.message);
          return;
        }
        var details = Array.isArray(err.details) ? err.details : [];
        // A problem with no place (loc []) is the payload's, or the request's, as a whole.
        var problems = details.map(function (d) {
          return d && d.msg ? ((d.loc || []).join(".") || (err.code === "invalid_payload" ? "payload" : "request")) +
            ": " + d.msg : JSON.stringify(d);
        }).join("; ");
        markInvalid(fieldAtFault(err.code, details));
        if (err.code === "unknown_job_type") loadJobTypes(); // withdrawn since the form read the types
        setFormStatus("error", err.message + (problems ? " — " + problems : "") + " (" + err.code + ")");
      }
    ).then(function () { setBusy(button, false); });
  }

  function applyFilters() {
    state.filters.status = $("filter-status").value;
    state.filters.type = $("filter-type").value;
    state.filters.limit = Number($("page-size").value) || 25;
    refreshList(true);
  }

  // ---------------------------------------------------------------- start

  function start(refused) {
    if (refused || !token()) {
      askForToken(refused || "Paste a token to see your jobs.");
      return;
    }
    if (token() !== state.shownFor) {
      // Another token may be another tenant: nothing of the last one's stays on the page.
      state.listGeneration++;
      clearJobs();
      forgetTypesShown();
      renderSummary();
      state.shownFor = token();
    }
    showWorkspace();
    setLive("connecting", "connecting…");
    loadJobTypes();
    refreshList(true);
  }

  function init() {
    var refused = takeTokenFromFragment();
    window.addEventListener("hashchange", function () {
      if (/(^|[#&])token=/.test(location.hash)) start(takeTokenFromFragment());
    });
    $("token-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var input = $("token-input");
      var value = input.value;
      input.value = "";
      if (!value.trim()) return;
      start(keepToken(value));
    });
    $("forget-token").addEventListener("click", function () {
      sessionStorage.removeItem(TOKEN_KEY);
      state.listGeneration++;
      state.shownFor = null;
      clearJobs();
      forgetTypesShown();
      renderSummary();
      askForToken("Token forgotten. Paste a token to continue.");
    });
    $("submit-form").addEventListener("submit", submitJob);
    // Enter writes a line break in the payload; Ctrl+Enter (⌘+Enter) submits from it.
    $("job-payload").addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        $("submit-form").requestSubmit();
      }
    });
    $("job-type").addEventListener("change", selectJobType);
    $("filter-status").addEventListener("change", applyFilters);
    $("filter-type").addEventListener("change", applyFilters);
    $("page-size").addEventListener("change", applyFilters);
    $("filters").addEventListener("submit", function (event) { event.preventDefault(); });
    $("refresh").addEventListener("click", function () { loadJobTypes(); refreshList(true); });
    $("load-more").addEventListener("click", loadMore);
    $("clear-filters").addEventListener("click", function () {
      $("filter-status").value = "";
      $("filter-type").value = "";
      $("filter-status").focus(); // the button goes with the empty view
      applyFilters();
    });
    // A tab in the background asks the API nothing (left open all night, it costs nothing);
    // shown again, it catches up at once.
    document.addEventListener("visibilitychange", function () {
      if (!state.authorized) return;
      if (document.hidden) {
        stopTimers();
        setLive("idle", PAUSED);
      } else {
        setLive("connecting", "catching up…");
        refreshList(false);
        schedulePoll(0);
      }
    });
    setInterval(tick, 1000);
    renderSummary();
    start(refused);
  }

  init();
})();

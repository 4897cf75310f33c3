// jobpipe dashboard: the token (kept per tab, read from the fragment or the form), the API
// calls (timeout, ETag, Retry-After, the errors they end in), what an error means for the page
// (`handleError`), and the page's chrome that shows it: banner, live status, token panel.
"use strict";

(function (jobpipe) {
var $ = jobpipe.$, API_BASE = jobpipe.API_BASE, PAUSED = jobpipe.PAUSED, POLL_MIN_MS = jobpipe.POLL_MIN_MS,
  REQUEST_TIMEOUT_MS = jobpipe.REQUEST_TIMEOUT_MS, RETRY_AFTER_MAX_MS = jobpipe.RETRY_AFTER_MAX_MS,
  TOKEN_KEY = jobpipe.TOKEN_KEY, state = jobpipe.state, bdi = jobpipe.bdi, clock = jobpipe.clock, said = jobpipe.said,
  heardDate = jobpipe.heardDate, serverNow = jobpipe.serverNow;

// ---------------------------------------------------------------- token

// Keeps a token given in the fragment or the form: "Bearer " and whitespace (a token wrapped
// over lines when copied from a terminal) are dropped. Returns why it was refused, or "".
// A header can carry printable ASCII only: anything else could never be sent (fetch throws).
function keepToken(value) {
  var jwt = cleanToken(value);
  if (!jwt) return ""; // nothing given: the token kept before, if any, stays
  var bad = jwt.match(/[^\x21-\x7e]/);
  if (bad) return "That is not a token: it holds “" + bad[0] + "”, which a token never does (was it cut short when copied?).";
  sessionStorage.setItem(TOKEN_KEY, jwt);
  return "";
}

function cleanToken(value) { return value.trim().replace(/^Bearer\s+/i, "").replace(/\s+/g, ""); }

// The token a link's fragment carries (`#token=…`), as given, or null when it carries none. It
// is taken out of the address bar and history at once: what becomes of it is the caller's.
function tokenFromFragment() {
  var params = new URLSearchParams(location.hash.replace(/^#/, ""));
  var given = params.get("token");
  if (given === null) return null;
  params.delete("token");
  var rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  return given;
}

// The tenant a token names, if it can be read ("" when it names none).
function tenantOf(jwt) {
  var c = claims(jwt);
  return c && typeof c.tenant === "string" ? c.tenant : "";
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

// `kind`: the kind of request that failed (`kindOf`), null for one of no kind.
function ApiError(status, code, message, details, retryAfterMs, kind) {
  this.name = "ApiError";
  this.status = status;
  this.code = code;
  this.message = message;
  this.details = details;
  this.retryAfterMs = retryAfterMs || 0;
  this.kind = kind || null;
}
ApiError.prototype = Object.create(Error.prototype);

// No usable answer: the API was not reached, or what answered was not the API's JSON.
function NetworkError(message, kind) {
  this.name = "NetworkError";
  this.message = message;
  this.kind = kind || null;
}
NetworkError.prototype = Object.create(Error.prototype);

// The answer to a request sent with a token that has since been forgotten or replaced: it
// belongs to that token's tenant, so nothing of it is shown or acted on.
function StaleAnswer() {
  this.name = "StaleAnswer";
  this.message = "the token changed while the request was answered";
}
StaleAnswer.prototype = Object.create(Error.prototype);

// Retry-After in seconds or as an HTTP date (the API's clock: from the answer's Date); 0 when
// absent or unreadable.
function retryAfterMs(response) {
  var value = response.headers.get("Retry-After");
  if (!value) return 0;
  var ms = /^\s*\d+\s*$/.test(value) ? Number(value) * 1000
    : Date.parse(value) - (Date.parse(response.headers.get("Date") || "") || serverNow());
  return ms > 0 ? Math.min(ms, RETRY_AFTER_MAX_MS) : 0;
}

// A throttle's 429 holds: the requests of its kind (the API throttles them alike), until its
// Retry-After. One record per kind, set here where the 429 is read; each caller asks `heldFor`
// and decides what to do meanwhile. Other requests (a submit, a cancel) are held by nothing: their
// refusal says when to press again.
var KINDS = [["poll", /^POST jobs\/status$/], ["list", /^GET jobs(\?|$)/], ["runs", /^GET jobs\/[^/?]+\/runs$/]];
var holds = {}; // kind -> no request of it before this (ms since the epoch)

function kindOf(method, path) {
  var request = method + " " + path;
  var kind = KINDS.find(function (k) { return k[1].test(request); });
  return kind ? kind[0] : null;
}

// Whether an error is a throttle's (a 429 other than a tenant's quota, which waiting ends not).
function throttled(err) {
  return err instanceof ApiError && err.status === 429 && err.code !== "quota_exceeded";
}

// Holds the requests of `kind` for `ms` from now (a hold already longer stays).
function hold(kind, ms) {
  holds[kind] = Math.max(holds[kind] || 0, Date.now() + ms);
}

// Milliseconds until the requests of `kind` may go out again: 0 when nothing holds them.
function heldFor(kind) {
  return Math.max(0, (holds[kind] || 0) - Date.now());
}

// `tag`: a conditional read (the API tags its answer with an ETag). The call then resolves to
// {data, etag}; given a tag from an earlier answer it is sent as If-None-Match, and a 304
// (nothing changed since) resolves to {data: null, etag} without a body to read.
function api(method, path, body, headers, tag) {
  var jwt = token();
  var conditional = tag !== undefined;
  var kind = kindOf(method, path);
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
      : err && err.message ? err.message : "network error") + ").", kind);
  };
  var sentAt = Date.now();
  return fetch(API_BASE + path, init).then(
    function (response) {
      var receivedAt = Date.now();
      return response.text().then(function (text) {
        clearTimeout(timer);
        if (token() !== jwt) throw new StaleAnswer();
        if (tag && response.status === 304) {
          heardDate(response.headers.get("Date"), sentAt, receivedAt);
          connected(kind);
          return { data: null, etag: response.headers.get("ETag") || tag };
        }
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        var json = data !== null && typeof data === "object";
        if (!json && response.status !== 429) throw new NetworkError(notTheApis(method, path, response), kind);
        if (json) heardDate(response.headers.get("Date"), sentAt, receivedAt); // the API's clock, not a proxy's
        if (!response.ok) {
          var error = (data && data.error) || {};
          var failure = new ApiError(
            response.status,
            error.code || "http_" + response.status,
            error.message || (data && typeof data.message === "string" && data.message) ||
              (json ? "the API answered " + statusLine(response) : notTheApis(method, path, response)),
            error.details,
            retryAfterMs(response),
            kind
          );
          // Held as the banner says: the Retry-After, at least POLL_MIN_MS when it names none.
          if (kind && throttled(failure)) hold(kind, Math.max(failure.retryAfterMs, POLL_MIN_MS));
          throw failure;
        }
        connected(kind);
        return conditional ? { data: data, etag: response.headers.get("ETag") || "" } : data;
      }, unreachable);
    },
    unreachable
  );
}

// An answer that is not JSON did not come from the API, nor from its gateway (whose own errors,
// a throttle's 429 among them, are JSON too): a proxy's sign-in or block page, a captive portal,
// a load balancer's error. What it says is not the API's, so only its status and type are shown.
// Such an answer is no usable answer: the page's reads retry it, an action may have been applied
// (unless it is a 429: a throttle, wherever it comes from, is waited out).
function notTheApis(method, path, response) {
  return "The answer to " + method + " /" + path.split("?")[0] + " did not come from the API: " + statusLine(response) +
    ", " + (response.headers.get("Content-Type") || "no content type") + ", not JSON.";
}

function statusLine(response) { return response.status + (response.statusText ? " " + response.statusText : ""); }

// The Idempotency-Key of a request that makes a job (a submit, a rerun): kept while that request
// has no usable answer, so pressing again returns the job it may have made instead of a second.
function newIdempotencyKey() {
  var bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes); // works on plain http too, unlike crypto.randomUUID
  return "dashboard-" + Array.from(bytes, function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
}

// One place decides what an error means for the page; returns true when it was handled.
function handleError(err) {
  if (err instanceof StaleAnswer) return true;
  if (err instanceof ApiError && err.status === 401) {
    askForToken(err.code === "unauthorized" && token() ? "The API refused the token: " + err.message : err.message);
    return true;
  }
  if (err instanceof NetworkError || (err instanceof ApiError && err.status >= 500)) {
    trouble(err.kind, ["offline", "offline, retrying"], [said(err.message), " Retrying automatically."]);
    return true;
  }
  if (throttled(err)) {
    trouble(err.kind, ["offline", "throttled, retrying"], ["The API is throttling requests (", said(err.message),
      "). Retrying in " + Math.ceil(Math.max(err.retryAfterMs, POLL_MIN_MS) / 1000) + " s."]);
    return true;
  }
  return false;
}

// A read of the page's that failed: what the failure means (`handleError`), or else the banner
// says what could not be read (`what`: "Could not list jobs: ") and what the API said, and the
// indicator no longer says "live" (a refused poll updates nothing) until such a read is answered.
function readFailed(err, what) {
  if (!handleError(err)) trouble(err.kind, ["offline", "not updating"], [what, said(err.message)]);
}

// The page's reads that are read again by themselves, on their timers: the polls and the
// listing's refresh. While the last of either failed, its banner and "offline" stay, whatever
// other read is answered meanwhile (an attempts' read, the other of the two); they go once it
// is answered again. Other failures show theirs until the next good answer of any read.
var RETRIED = { poll: true, list: true };
var troubles = new Map(); // kind -> [live: [state, text] or null, the banner's parts]

function trouble(kind, live, parts) {
  if (RETRIED[kind]) {
    troubles.delete(kind); // the latest failure is shown once the other's read is answered
    troubles.set(kind, [live, parts]);
  }
  showBanner.apply(null, parts);
  if (live) setLive(live[0], live[1]);
}

function forgetTroubles() {
  troubles.clear();
}

// A user's action (submit, cancel, run again) that failed for its token: a refused token asks
// for another, and an answer to an earlier token is dropped. True when it was one of those.
// Any other failure is the action's own to say, beside it: the banner's "retrying" is the
// page's reads, which retry by themselves, and an action is never sent again unasked.
function tokenTrouble(err) {
  if (err instanceof StaleAnswer) return true;
  if (err instanceof ApiError && err.status === 401) return handleError(err);
  return false;
}

// The seconds a throttled action (submit, cancel, run again) says to wait before it is pressed
// again: its Retry-After, and at least one.
function pressAgainInS(err) {
  return Math.ceil(Math.max(err.retryAfterMs, 1000) / 1000);
}

// A read of `kind` was answered: the banner goes, unless a read that is read again by itself
// (`RETRIED`) still fails, whose banner it shows again.
function connected(kind) {
  troubles.delete(kind);
  var left = Array.from(troubles.values()).pop();
  if (left) {
    showBanner.apply(null, left[1]);
    if (left[0]) { setLive(left[0][0], left[0][1]); return; }
  } else {
    hideBanner();
  }
  if (document.hidden) setLive("idle", PAUSED);
  else setLive("live", "live · updated " + clock(new Date(serverNow()))); // the API's time, as the jobs' are
}

// ---------------------------------------------------------------- page chrome

// Its parts: the page's own text, and what the API said (`said`), each isolated. Written only
// when what it says changes: an alert is read out at each write, and a read that keeps failing
// would have it read out at every retry.
function showBanner() {
  var b = $("banner"), text = Array.from(arguments, function (part) { return typeof part === "string" ? part : part.textContent; }).join("");
  if (b.hidden || b.textContent !== text) b.replaceChildren.apply(b, arguments);
  b.hidden = false;
}
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
  forgetTroubles();
  hideBanner();
  $("token-input").focus();
}

function showWorkspace() {
  state.authorized = true;
  forgetTroubles(); // the reads of the token before, if any, are answered no more
  $("token-panel").hidden = true;
  $("workspace").hidden = false;
  $("forget-token").hidden = false;
  var c = claims(token());
  var identity = $("identity");
  if (c && c.tenant) {
    identity.replaceChildren("tenant ", bdi(c.tenant), c.sub ? " · " : "", c.sub ? bdi(c.sub) : "");
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

Object.assign(jobpipe, { ApiError: ApiError, NetworkError: NetworkError, StaleAnswer: StaleAnswer, api: api,
  askForToken: askForToken, handleError: handleError, heldFor: heldFor, keepToken: keepToken, newIdempotencyKey: newIdempotencyKey, setLive: setLive, showBanner: showBanner,
  readFailed: readFailed, showWorkspace: showWorkspace, stopTimers: stopTimers, tokenFromFragment: tokenFromFragment,
  cleanToken: cleanToken, claims: claims, tenantOf: tenantOf,
  pressAgainInS: pressAgainInS, throttled: throttled, token: token, tokenTrouble: tokenTrouble });
})(window.jobpipe);

// jobpipe dashboard: how times, durations, countdowns and ids are written, and the small DOM
// helpers every view uses (`el`, a busy button).
"use strict";

(function (jobpipe) {
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

// The browser's zone, which the times are written in: its name ("Europe/Berlin"), or its offset
// (for one unnamed, or named Etc/GMT+5, whose sign is the offset's opposite).
function zoneName() {
  var name = Intl.DateTimeFormat().resolvedOptions().timeZone, m = -new Date().getTimezoneOffset();
  return name && !/^Etc\/GMT[+-]/.test(name) ? name.replace(/^Etc\//, "")
    : "UTC" + (m < 0 ? "-" : "+") + pad(Math.abs(m) / 60 | 0) + ":" + pad(Math.abs(m) % 60);
}

// The API's clock less the browser's (which may be minutes off), bounded by each answer's Date
// (whole seconds, written between sending and arrival): the bounds are intersected, so latency
// never moves the estimate, the offset in them nearest 0; bounds that no longer meet start over.
var offsetBounds = null; // [lowest, highest] ms

function heardDate(date, sentAt, receivedAt) {
  var at = date ? Date.parse(date) : NaN;
  if (isNaN(at)) return;
  var low = at - receivedAt, high = at + 1000 - sentAt, was = offsetBounds;
  offsetBounds = was && low <= was[1] && high >= was[0] ? [Math.max(low, was[0]), Math.min(high, was[1])] : [low, high];
}

function serverNow() {
  return Date.now() + (offsetBounds ? Math.min(Math.max(0, offsetBounds[0]), offsetBounds[1]) : 0);
}

// Tenths of a second under a minute (59.96 s is "1 m 00 s", not "60.0 s"), whole seconds after.
function duration(ms) {
  if (ms < 0) ms = 0;
  if (Math.round(ms / 100) < 600) return (Math.round(ms / 100) / 10).toFixed(1) + " s";
  var s = Math.max(60, Math.floor(ms / 1000));
  var m = Math.floor(s / 60);
  if (m < 60) return m + " m " + pad(Math.floor(s % 60)) + " s";
  var h = Math.floor(m / 60);
  // A run_at up to a year ahead counts down in days, not in thousands of hours.
  if (h < 48) return h + " h " + pad(m % 60) + " m";
  return Math.floor(h / 24) + " d " + pad(h % 24) + " h";
}

// Whole seconds, rounded up: 59.5 s left is "1 m 00 s", as 60 s left is.
function countdown(ms) {
  var s = Math.ceil(ms / 1000);
  return s < 60 ? s + " s" : duration(s * 1000);
}

// A time in the browser's zone, with the API's UTC text as its title. Marked "at": past
// midnight, every such time in the table and the details is written again (`tick`).
function timeOf(iso) {
  var time = el("time", "at", when(iso));
  time.dateTime = iso;
  time.title = iso;
  return time;
}

// A finished job's duration (first start to end) is fixed; a running one's ticks ("…") from its
// current attempt's start, not the first attempt's; a job waiting for its next attempt
// (retrying, or queued again) runs nothing: "" (its row shows the last attempt's).
function jobDuration(job) {
  if (!job.started_at) return "";
  if (job.finished_at) return duration(new Date(job.finished_at) - new Date(job.started_at));
  if (job.status !== "running") return "";
  return duration(serverNow() - new Date(job.attempt_started_at || job.started_at)) + " …";
}

// An attempt's duration from its run (GET /jobs/{id}/runs); "" while it has not ended.
function runDuration(run) {
  return run.started_at && run.finished_at ? duration(new Date(run.finished_at) - new Date(run.started_at)) : "";
}

// Text a handler or user wrote, isolated: right-to-left text or a bidi override in it never
// reorders the page's own words around it.
function bdi(text) { return el("bdi", null, text); }

// What the API quotes in a message, as it writes a type, a key or a name it got: '…' or "…",
// opened after a space or a bracket (not a word's apostrophe) and closed before one or a stop.
var QUOTED = /(^|[\s([{=:,])(['"])((?:\\.|(?!\2)[^\\])*)\2(?=$|[\s)\]}:;,.!?])/g;

// An error's message, isolated from the page's words around it, and each text it quotes
// isolated within it: right-to-left text or a bidi override in a quoted type or key never
// reorders the rest of the message, nor the page's sentence it is part of.
function said(message) {
  var text = String(message), box = el("bdi"), at = 0, found;
  QUOTED.lastIndex = 0;
  while ((found = QUOTED.exec(text))) {
    var open = found.index + found[1].length + 1; // just past the opening quote mark
    box.append(text.slice(at, open), bdi(found[3]));
    at = open + found[3].length;
  }
  box.append(text.slice(at));
  return box;
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

Object.assign(jobpipe, { bdi: bdi, busy: busy, clock: clock, countdown: countdown, el: el, heardDate: heardDate,
  jobDuration: jobDuration, serverNow: serverNow, runDuration: runDuration, said: said, setBusy: setBusy, shortId: shortId,
  timeOf: timeOf, when: when, zoneName: zoneName });
})(window.jobpipe);

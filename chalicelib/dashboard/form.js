// jobpipe dashboard: the submit form: the job types read from the API, a type's example
// payload and fields, what is refused before sending, the Idempotency-Key of a submit that got
// no answer, and what a refused submit says and marks.
"use strict";

(function (jobpipe) {
var $ = jobpipe.$, state = jobpipe.state, bdi = jobpipe.bdi, busy = jobpipe.busy, setBusy = jobpipe.setBusy,
  ApiError = jobpipe.ApiError, NetworkError = jobpipe.NetworkError, StaleAnswer = jobpipe.StaleAnswer,
  api = jobpipe.api, handleError = jobpipe.handleError, throttled = jobpipe.throttled,
  tokenTrouble = jobpipe.tokenTrouble, pressAgainInS = jobpipe.pressAgainInS,
  newIdempotencyKey = jobpipe.newIdempotencyKey, order = jobpipe.order, remember = jobpipe.remember,
  registered = jobpipe.registered, renderEmpty = jobpipe.renderEmpty,
  renderTypeFilter = jobpipe.renderTypeFilter, schedulePoll = jobpipe.schedulePoll;

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
  $("job-type-description").replaceChildren(bdi(info.description || ""),
    " (at most " + info.max_attempts + " attempts, timeout " + info.timeout_s + " s)");
  $("payload-help").textContent = describeFields(info.payload_schema);
  var textarea = $("job-payload");
  // Replace the payload only if the user has not written their own, nor is about to: an empty
  // box the cursor is in keeps what is typed into it whole, when the types are read meanwhile.
  var empty = !textarea.value.trim();
  var writing = empty && document.activeElement === textarea;
  if (!writing && (empty || textarea.value === lastExample)) {
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
    state.typesFailed = null;
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
    state.typesFailed = err.message || "no answer";
    if (!handleError(err)) setFormStatus("error", "Could not load job types: " + err.message);
  }).then(function () { typesReading = null; });
  return typesReading;
}

// `parts`: the page's words as strings, what the API or a user wrote isolated (`bdi`).
function setFormStatus(kind) {
  var status = $("submit-status");
  status.dataset.kind = kind;
  status.replaceChildren.apply(status, Array.prototype.slice.call(arguments, 1));
}

// A submit that got no usable answer (none at all, or a 5xx) may have made the job. Its
// Idempotency-Key is kept for the same form contents, so pressing Submit again returns the job
// that submit made instead of making a second one; an answered submit forgets it.
var unsettledSubmit = null; // {body: the JSON sent, key}

// Another token (or none) may be another tenant: the form no longer names the job the last
// one's submit made, nor offers to press again for one that got no answer. A submit still on
// its way says what became of it once answered (StaleAnswer).
function forgetSubmits() {
  unsettledSubmit = null;
  markInvalid(null);
  if (busy($("submit-button"))) return;
  setFormStatus("");
  delete $("submit-status").dataset.jobId;
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
    if (state.typesRead) setFormStatus("error", "Not submitted: the API lists no job types.");
    else if (!state.typesFailed || typesReading) setFormStatus("error", "Not submitted: the job types are still being read.");
    else {  // its last read failed (the banner says why): read again now, not at the next refresh
      setFormStatus("error", "Not submitted: the job types could not be read (", bdi(state.typesFailed),
        "); they are being read again.");
      loadJobTypes();
    }
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
      setFormStatus("ok", "Submitted ", bdi(job.type), " job " + job.id + ".");
      $("submit-status").dataset.jobId = job.id;
      remember(job);
      order();
      schedulePoll(0);
    },
    function (err) {
      var unknown = err instanceof NetworkError || (err instanceof ApiError && err.status >= 500);
      if (!unknown && unsettledSubmit && unsettledSubmit.key === key) unsettledSubmit = null;
      if (err instanceof StaleAnswer) {  // answered for the token since replaced: its tenant's job
        setFormStatus("error", "The token changed while the submit was answered: the job may have been made " +
          "under the earlier token. Submitting now makes a job under this one.");
        return;
      }
      if (tokenTrouble(err)) {
        setFormStatus("error", "Not submitted: " + err.message);
        return;
      }
      if (unknown || throttled(err)) {
        setFormStatus("error", unknown
          ? "No usable answer to the submit (" + err.message + "). The job may have been accepted: press " +
            "Submit job again with the same payload to make sure; it will not be made twice."
          : "Not submitted: the API is throttling requests (" + err.message + "). Press Submit job again in " +
            pressAgainInS(err) + " s.");
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
      setFormStatus("error", bdi(err.message), problems ? " — " : "", problems ? bdi(problems) : "",
        " (" + err.code + ")");
    }
  ).then(function () { setBusy(button, false); });
}

Object.assign(jobpipe, { forgetSubmits: forgetSubmits, loadJobTypes: loadJobTypes, selectJobType: selectJobType,
  submitJob: submitJob });
})(window.jobpipe);

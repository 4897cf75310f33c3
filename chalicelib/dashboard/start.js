// jobpipe dashboard: start-up: the token panel or the workspace, and every listener the page
// sets (token form, submit form, filters, Refresh, Load more, a hidden tab). Runs last.
"use strict";

(function (jobpipe) {
var $ = jobpipe.$, PAUSED = jobpipe.PAUSED, TOKEN_KEY = jobpipe.TOKEN_KEY, state = jobpipe.state,
  busy = jobpipe.busy, askForToken = jobpipe.askForToken, keepToken = jobpipe.keepToken,
  setLive = jobpipe.setLive, showWorkspace = jobpipe.showWorkspace, stopTimers = jobpipe.stopTimers,
  tokenFromFragment = jobpipe.tokenFromFragment, cleanToken = jobpipe.cleanToken, tenantOf = jobpipe.tenantOf,
  bdi = jobpipe.bdi, token = jobpipe.token,
  clearJobs = jobpipe.clearJobs, renderSummary = jobpipe.renderSummary, applyFilters = jobpipe.applyFilters,
  forgetTypesShown = jobpipe.forgetTypesShown, loadMore = jobpipe.loadMore,
  refreshList = jobpipe.refreshList, schedulePoll = jobpipe.schedulePoll, tick = jobpipe.tick,
  loadJobTypes = jobpipe.loadJobTypes, nextRunsReads = jobpipe.nextRunsReads,
  forgetSubmits = jobpipe.forgetSubmits, selectJobType = jobpipe.selectJobType, submitJob = jobpipe.submitJob;

// A link's token (`given`, null: the link carries none) is taken as the tab's, unless the tab
// already works for another tenant: then the page asks first. A link someone else sent would
// otherwise move the tab to their tenant with a change of name in the header as the only
// sign, and a job submitted after it, payload and all, would be theirs to read.
var offered = null; // the token of the link asked about, kept nowhere else until taken

function follow(given) {
  if (given !== null) {
    var kept = token(), was = kept ? tenantOf(kept) : "", now = tenantOf(cleanToken(given));
    if (was && cleanToken(given) && now !== was) {
      askToSwitch(given, was, now);
      return;
    }
  }
  offered = null;
  $("switch-panel").hidden = true;
  start(given === null ? "" : keepToken(given));
}

function askToSwitch(given, was, now) {
  offered = given;
  state.authorized = false;
  stopTimers();
  setLive("idle", "waiting for your answer");
  $("workspace").hidden = true;
  $("token-panel").hidden = true;
  $("switch-reason").replaceChildren(
    "This link signs this tab in as ", now ? bdi("tenant " + now) : "a token that names no tenant",
    ". It works for ", bdi("tenant " + was), " now. After switching, the jobs shown and the jobs ",
    "you submit are ", now ? "that tenant's" : "that token's", ".");
  $("switch-stay").textContent = "Stay with tenant " + was;
  $("switch-go").textContent = now ? "Switch to tenant " + now : "Use the link's token";
  $("switch-panel").hidden = false;
  $("switch-stay").focus();
}

// What the page showed for the token before: its jobs, the types they had, what the form said
// of its submits. Answers still on their way for it are dropped (`listGeneration`, StaleAnswer).
function forgetShown() {
  state.listGeneration++;
  clearJobs();
  forgetTypesShown();
  renderSummary();
  forgetSubmits();
}

function start(refused) {
  if (refused || !token()) {
    askForToken(refused || "Paste a token to see your jobs.");
    return;
  }
  if (token() !== state.shownFor) {
    // Another token may be another tenant: nothing of the last one's stays on the page.
    forgetShown();
    state.shownFor = token();
  }
  showWorkspace();
  setLive("connecting", "connecting…");
  loadJobTypes();
  refreshList(true);
}

function init() {
  var given = tokenFromFragment();
  window.addEventListener("hashchange", function () {
    if (/(^|[#&])token=/.test(location.hash)) follow(tokenFromFragment());
  });
  $("switch-stay").addEventListener("click", function () { follow(null); });
  $("switch-go").addEventListener("click", function () {
    var taken = offered;
    offered = null;
    $("switch-panel").hidden = true;
    start(keepToken(taken));
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
    offered = null;
    $("switch-panel").hidden = true;
    sessionStorage.removeItem(TOKEN_KEY);
    state.shownFor = null;
    forgetShown();
    askForToken("Token forgotten. Paste a token to continue.");
  });
  $("submit-form").addEventListener("submit", submitJob);
  // Where the form is below the jobs (a narrow window), "New job" takes the focus to it.
  $("new-job").addEventListener("click", function () {
    $("submit-panel").scrollIntoView({ block: "start" });
    $("job-type").focus({ preventScroll: true });
  });
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
  // Pressed again while its listing is on its way (a slow stack), Refresh sends nothing more.
  $("refresh").addEventListener("click", function () {
    if (busy($("refresh"))) return;
    loadJobTypes();
    refreshList(true);
  });
  $("load-more").addEventListener("click", loadMore);
  $("clear-filters").addEventListener("click", function () {
    $("filter-status").value = "";
    $("filter-type").value = "";
    $("filter-status").focus(); // the button goes with the empty view
    applyFilters();
  });
  // A tab in the background asks the API nothing (left open all night, it costs nothing);
  // shown again, it catches up at once (or once a throttle's Retry-After has passed).
  document.addEventListener("visibilitychange", function () {
    if (!state.authorized) return;
    if (document.hidden) {
      stopTimers();
      setLive("idle", PAUSED);
    } else {
      setLive("connecting", "catching up…");
      refreshList(false); // unless one is on its way: that one serves
      schedulePoll(0);
      nextRunsReads(); // the reads of attempts queued while it was hidden
    }
  });
  setInterval(tick, 1000);
  // The times' zone: in their column's heading, and atop the jobs shown as cards (no headings).
  $("times-zone").textContent = $("jobs-body").dataset.zone = jobpipe.zoneName();
  renderSummary();
  follow(given);
}

init();
})(window.jobpipe);

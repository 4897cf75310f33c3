// jobpipe dashboard: the filters: which jobs they show, the listing's query, the type filter's
// choices, and what an empty view says.
"use strict";

(function (jobpipe) {
var $ = jobpipe.$, state = jobpipe.state, bdi = jobpipe.bdi, drop = jobpipe.drop;

// Whether the current filters show `job` (its type never changes; its status does).
function shown(job) {
  return (!state.filters.status || job.status === state.filters.status) &&
    (!state.filters.type || job.type === state.filters.type);
}

// An empty view says which filters emptied it and offers to clear them: a type chosen that
// has no jobs any more would otherwise look like a tenant without jobs. While the listing is on
// its way (a slow stack: seconds), it says so instead.
function renderEmpty(hidden) {
  $("jobs-empty").hidden = hidden;
  if (hidden) return;
  var f = state.filters;
  var filtered = Boolean(f.status || f.type) && !state.loading;
  $("jobs-empty-text").replaceChildren.apply($("jobs-empty-text"), state.loading ? ["Loading jobs…"]
    : !filtered ? ["No jobs here yet. Submit one with the form."]
    : ["No " + (f.status ? f.status + " " : "") + "jobs"].concat(f.type ? [" of type ", bdi(f.type)] : [], ".",
      f.type && state.typesRead && !registered(f.type)
        ? " The API does not list that type: it is internal, or no longer registered." : ""));
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
  if (unknown && state.typesRead) jobpipe.loadJobTypes();
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

function forgetTypesShown() {
  state.typesShown.clear();
  renderTypeFilter();
}

function listPath(cursor, limit) {
  var params = new URLSearchParams();
  params.set("limit", String(limit || state.filters.limit));
  if (state.filters.status) params.set("status", state.filters.status);
  if (state.filters.type) params.set("type", state.filters.type);
  if (cursor) params.set("cursor", cursor);
  return "jobs?" + params.toString();
}

// The rows the filters no longer show go at once: until the new listing answers (or while it
// fails) the rows shown, marked busy, are only those matching the filters chosen. A job that
// left the view of the filters left may be in these at that very version: `left` starts anew.
function applyFilters() {
  state.filters.status = $("filter-status").value;
  state.filters.type = $("filter-type").value;
  state.filters.limit = Number($("page-size").value) || 25;
  state.left.clear();
  var left = Array.from(state.jobs.values()).filter(function (job) { return !shown(job); });
  left.forEach(function (job) { drop(job.id); });
  if (left.length) jobpipe.order();
  jobpipe.refreshList(true);
}

Object.assign(jobpipe, { applyFilters: applyFilters, forgetTypesShown: forgetTypesShown, listPath: listPath,
  registered: registered, renderEmpty: renderEmpty, renderTypeFilter: renderTypeFilter, shown: shown,
  syncTypes: syncTypes });
})(window.jobpipe);

"""Which jobs of a batch answer are shown whole (chalicelib/api/polling.py `fitted`): every job
while the jobs, in the order and as often as they appear, fit the budget together, the same rule
a listing's page ends by (`answer_spent`: a total equal to the budget fits); past it, short."""
from __future__ import annotations

import json

import pytest

from chalicelib.api.polling import bare, claim_check_placeholder, fitted, fitted_batch, short, shown_job
from chalicelib.defaults import JOBINFO_MAX_LEVELS
from chalicelib.domain.job import Job, answer_bytes


def _job(n: int) -> Job:
    return Job(id=f"00000000-0000-4000-8000-{n:012d}", type="demo.outputs", tenant="acme", user="ann",
               payload={"pad": "x" * 200}, result={"pad": "y" * 200}, created_at="2026-01-01T00:00:00.000Z")


def _size(job: Job) -> int:
    return answer_bytes(job.public())


def test_jobs_that_take_exactly_the_budget_are_all_whole():
    jobs = [_job(1), _job(2), _job(3)]
    shown = fitted(jobs, budget=sum(_size(j) for j in jobs))
    assert [shown[j.id] for j in jobs] == jobs


def test_one_byte_less_shows_the_last_job_short_and_the_others_whole():
    jobs = [_job(1), _job(2), _job(3)]
    shown = fitted(jobs, budget=sum(_size(j) for j in jobs) - 1)
    assert [shown[j.id] for j in jobs] == [jobs[0], jobs[1], short(jobs[2])]
    assert shown[jobs[2].id].payload == {"claim_check": {"bytes": len('{"pad":"' + "x" * 200 + '"}')}}


def test_a_job_shown_twice_counts_twice():
    """An id asked for twice is shown twice (a batch echoes it), so it takes its bytes twice."""
    first, second = _job(1), _job(2)
    budget = 2 * _size(first) + _size(second)
    assert fitted([first, first, second], budget=budget)[second.id] == second
    assert fitted([first, first, second], budget=budget - 1)[second.id] == short(second)


def test_a_value_already_a_placeholder_or_none_is_shown_as_it_is():
    placeholder = {"claim_check": {"bytes": 70000}}
    assert claim_check_placeholder(placeholder) == placeholder
    assert claim_check_placeholder(None) is None


@pytest.mark.parametrize("value", [{"claim_check": 1, "other": 2}, {"pad": "x"}, ["claim_check"], "text", 0])
def test_any_other_value_is_shown_as_the_size_of_its_compact_json(value):
    assert claim_check_placeholder(value) == {"claim_check": {"bytes": len(json.dumps(value, separators=(",", ":")))}}


def _parent(n: int, children: int = 100) -> Job:
    return _job(n).model_copy(update={"type": "demo.fanout",
                                      "children": [f"{n:08d}-1111-4000-8000-{c:012d}" for c in range(children)]})


def _answer(job: Job, shown: Job) -> int:
    return answer_bytes(shown_job(job, shown))


def test_a_batch_past_its_budget_shows_later_parents_without_their_children_and_never_passes_it():
    """POST /jobs/status: a short job kept its children (a fan-out's 2,000 ids, 90 KB), so a
    hundred such parents passed 6 MB. Every job is counted bare first, then shown, in order, as
    much as the rest lets it: whole, short (its children kept), or bare (`children_cut`)."""
    parents = [_parent(n) for n in range(3)]
    whole, shortened, bared = ([_answer(p, form(p)) for p in parents]
                               for form in (lambda p: p, short, lambda p: bare(short(p))))
    budget = whole[0] + shortened[1] + bared[2]
    shown = fitted_batch(parents, budget=budget)
    assert [shown[p.id] for p in parents] == [parents[0], short(parents[1]), bare(short(parents[2]))]
    assert sum(_answer(p, shown[p.id]) for p in parents) <= budget
    assert shown_job(parents[2], shown[parents[2].id])["children_cut"] == 100
    assert "children_cut" not in shown_job(parents[1], shown[parents[1].id])
    tighter = fitted_batch(parents, budget=budget - 1)
    assert [tighter[p.id] for p in parents] == [parents[0], bare(short(parents[1])), bare(short(parents[2]))]


def test_a_hundred_fan_outs_of_the_most_children_fit_one_answer():
    from chalicelib.api.polling import ANSWER_JOBS_BYTES
    from chalicelib.defaults import MAX_CHILDREN

    parents = [_parent(n, MAX_CHILDREN) for n in range(100)]
    shown = fitted_batch(parents)
    assert sum(_answer(p, shown[p.id]) for p in parents) <= ANSWER_JOBS_BYTES
    assert shown[parents[0].id] == parents[0] and shown[parents[-1].id].children == []


def test_a_jobinfo_tree_leaves_out_the_descendants_past_the_budget_even_short():
    """A jobinfo nests each descendant, and a short one keeps its error's text: 300 children
    failed with 2,000 quotes each (8 KB apiece in an answer) passed any budget. Those that do not
    fit even short are left out of the nesting (None in the answer), in order; the root is shown."""
    from chalicelib.api.polling import fitted_tree
    from chalicelib.api.rq_vocabulary import job_info
    from chalicelib.domain.job import JobErrorInfo, utcnow

    parent = _parent(1, children=300)
    tree = {c: _job(2).model_copy(update={"id": c, "error": JobErrorInfo(code="upstream", message='"' * 2_000)})
            for c in parent.children}
    budget = 500_000
    shown, nested = fitted_tree([parent], tree, budget=budget)
    assert shown[parent.id] == parent and 0 < len(nested) < 300
    assert list(nested) == parent.children[:len(nested)]
    info = job_info(shown[parent.id], utcnow(), nested)
    assert answer_bytes(info) <= budget
    left_out = [entry[0] is None for entry in info["children"].values()]
    assert left_out == [False] * len(nested) + [True] * (300 - len(nested))
    whole, everything = fitted_tree([parent], tree, budget=10_000_000)
    assert everything == tree and whole[parent.id] == parent


def _chain(n: int) -> list[Job]:
    """n finished jobs, each the only child of the one before (a job continued as a new one)."""
    return [_job(0).model_copy(update={"id": f"c{i}", "children": [f"c{i + 1}"] if i + 1 < n else []})
            for i in range(n)]


def _depth(info: dict) -> int:
    """The levels of children an rq jobinfo answer nests below its job."""
    levels = 0
    while info["children"] and info["children"]["0"][0] is not None:
        info, levels = info["children"]["0"][0], levels + 1
    return levels


@pytest.mark.parametrize("n", [JOBINFO_MAX_LEVELS + 1, JOBINFO_MAX_LEVELS + 2, 1_200])
def test_a_chain_of_jobs_nests_at_most_jobinfo_max_levels_and_its_answer_parses(n):
    """A chain of jobs each spawning the next nests a level per job: 400 of them passed what
    Python's JSON encoder takes and 600 Python's own recursion (a 500 for every rq poll of the
    chain's first job). The answer nests JOBINFO_MAX_LEVELS levels at most, the next shown None,
    and a client's JSON parser reads it."""
    from chalicelib.api.polling import fitted_tree
    from chalicelib.api.rq_vocabulary import job_info
    from chalicelib.domain.job import utcnow

    chain = _chain(n)
    shown, nested = fitted_tree([chain[0]], {job.id: job for job in chain[1:]})
    info = json.loads(json.dumps(job_info(shown[chain[0].id], utcnow(), nested)))
    assert _depth(info) == min(n - 1, JOBINFO_MAX_LEVELS)
    last = info
    for _ in range(_depth(info)):
        last = last["children"]["0"][0]
    assert last["children"] == ({} if n - 1 <= JOBINFO_MAX_LEVELS else {"0": [None]})
    batch, batch_nested = fitted_tree([chain[0], chain[10]], {job.id: job for job in chain[1:]})
    assert _depth(job_info(batch[chain[10].id], utcnow(), batch_nested)) == min(n - 11, JOBINFO_MAX_LEVELS)


def test_records_that_name_an_ancestor_end_the_nesting():
    """Stored records naming a job above them (or themselves) as a child are shown None there,
    once each: the nesting, its measure and its answer end instead of recursing without end."""
    from chalicelib.api.polling import fitted_tree, in_answer_order
    from chalicelib.api.rq_vocabulary import job_info
    from chalicelib.domain.job import utcnow

    parent = _job(0).model_copy(update={"id": "p", "children": ["a"]})
    child = _job(0).model_copy(update={"id": "a", "children": ["p", "a", "b"]})
    grandchild = _job(0).model_copy(update={"id": "b", "children": ["p"]})
    tree = {"a": child, "p": parent, "b": grandchild}
    assert [job.id for job in in_answer_order([parent], tree)] == ["p", "a", "b"]
    shown, nested = fitted_tree([parent], tree)
    info = job_info(shown["p"], utcnow(), nested)
    assert info["children"]["0"][0]["children"] == {
        "0": [None], "1": [None], "2": [info["children"]["0"][0]["children"]["2"][0]]}
    assert info["children"]["0"][0]["children"]["2"][0]["children"] == {"0": [None]}


def test_a_short_job_shows_its_result_and_progress_details_as_placeholders_and_its_message_as_events_carry_it():
    from chalicelib.defaults import MAX_EVENT_TEXT_CHARS
    from chalicelib.domain.job import Progress

    job = _job(1).model_copy(update={"progress": Progress(percent=40, step="load", message="m" * 5_000,
                                                          details={"rows": list(range(100))})})
    shortened = short(job)
    assert shortened.payload == claim_check_placeholder(job.payload)
    assert shortened.result == {"claim_check": {"bytes": len('{"pad":"' + "y" * 200 + '"}')}}
    assert shortened.progress.details == claim_check_placeholder({"rows": list(range(100))})
    assert shortened.progress.message == "m" * (MAX_EVENT_TEXT_CHARS - 1) + "…"
    assert (shortened.progress.percent, shortened.progress.step) == (40, "load")


def test_a_batch_past_its_budget_counts_a_job_asked_for_twice_twice_in_every_form():
    """POST /jobs/status echoes an id asked for twice, so each of its forms takes its bytes twice:
    the bare count the budget starts from, the room a fuller form takes, and what it spends."""
    parents = [_parent(n) for n in range(2)]
    asked = [parents[0], parents[0], parents[1]]
    whole, shortened, bared = ({p.id: _answer(p, form(p)) for p in parents}
                               for form in (lambda p: p, short, lambda p: bare(short(p))))
    budget = 2 * whole[parents[0].id] + shortened[parents[1].id]
    shown = fitted_batch(asked, budget=budget)
    assert [shown[p.id] for p in parents] == [parents[0], short(parents[1])]
    tighter = fitted_batch(asked, budget=budget - 1)
    assert [tighter[p.id] for p in parents] == [parents[0], bare(short(parents[1]))]
    assert 2 * whole[parents[0].id] + bared[parents[1].id] <= budget - 1
    assert sum(_answer(p, tighter[p.id]) for p in asked) <= budget - 1
    fits_whole_once = fitted_batch(asked, budget=sum(whole.values()))
    assert sum(_answer(p, fits_whole_once[p.id]) for p in asked) <= sum(whole.values())


def test_a_batch_whose_bare_jobs_alone_pass_the_budget_shows_them_all_bare():
    parents = [_parent(n) for n in range(3)]
    shown = fitted_batch(parents, budget=0)
    assert [shown[p.id] for p in parents] == [bare(short(p)) for p in parents]


def _big(job_id: str, children: tuple[str, ...] | list[str] = (), result_bytes: int = 10_000) -> Job:
    return _job(0).model_copy(update={"id": job_id, "children": list(children), "result": {"pad": "r" * result_bytes}})


def _jobinfo_bytes(job: Job) -> int:
    return answer_bytes(job.model_copy(update={"payload": {}}).public())


def test_a_jobinfo_tree_measures_its_jobs_without_their_payloads():
    """A jobinfo answer never shows a payload: children with large payloads and small results
    are nested whole when their results fit."""
    parent = _job(1).model_copy(update={"id": "p", "children": ["a", "b"]})
    tree = {c: _job(2).model_copy(update={"id": c, "payload": {"pad": "x" * 100_000}}) for c in ("a", "b")}
    budget = sum(_jobinfo_bytes(j) for j in (parent, *tree.values()))
    from chalicelib.api.polling import fitted_tree

    shown, nested = fitted_tree([parent], tree, budget=budget)
    assert nested == tree and shown == {"p": parent, "a": tree["a"], "b": tree["b"]}


def test_a_jobinfo_tree_that_takes_exactly_the_budget_nests_every_descendant_and_shows_them_short_past_it():
    from chalicelib.api.polling import fitted_tree

    parent = _big("p", ["a", "b"])
    tree = {"a": _big("a"), "b": _big("b")}
    exact = sum(_jobinfo_bytes(j) for j in (parent, *tree.values()))
    assert fitted_tree([parent], tree, budget=exact)[1] == tree
    shown, nested = fitted_tree([parent], tree, budget=exact - 1)
    assert nested == {"a": tree["a"], "b": short(tree["b"])} and shown["b"] == short(tree["b"])


def test_a_jobinfo_root_counts_towards_the_budget_its_descendants_share():
    from chalicelib.api.polling import fitted_tree

    parent = _big("p", ["a"], result_bytes=50_000)
    tree = {"a": _big("a")}
    budget = _jobinfo_bytes(parent) + _jobinfo_bytes(short(tree["a"])) - 1
    shown, nested = fitted_tree([parent], tree, budget=budget)
    assert shown["p"] == parent and nested == {}


def test_a_child_two_roots_share_is_nested_under_both_once_it_entered():
    """Nested under each root that lists it, its bytes count each time; once kept it is never
    left out, or its first place would show None after all."""
    from chalicelib.api.polling import fitted_tree

    roots = [_big("p", ["c"], result_bytes=100), _big("q", ["c"], result_bytes=100)]
    tree = {"c": _big("c", result_bytes=20_000)}
    budget = sum(_jobinfo_bytes(r) for r in roots) + _jobinfo_bytes(tree["c"]) + 1_000
    shown, nested = fitted_tree(roots, tree, budget=budget)
    assert nested == tree


def test_a_jobinfo_tree_measures_only_the_levels_it_nests():
    """A descendant deeper than JOBINFO_MAX_LEVELS is not shown, so it takes nothing of the
    budget: a later child that fits with what is shown is nested whole; and one at the deepest
    level shown that does not fit is left out."""
    from chalicelib.api.polling import fitted_tree

    chain = [f"a{i}" for i in range(1, JOBINFO_MAX_LEVELS + 2)]  # a1 at level 1, ... past the last level
    parent = _big("p", ["a1", "b"], result_bytes=100)
    tree = {name: _big(name, [chain[i + 1]] if i + 1 < len(chain) else [], result_bytes=100)
            for i, name in enumerate(chain)}
    tree[chain[-1]] = _big(chain[-1], result_bytes=200_000)  # below the last level nested
    tree["b"] = _big("b", result_bytes=5_000)
    shown_levels = [parent, *(tree[name] for name in chain[:-1]), tree["b"]]
    budget = sum(_jobinfo_bytes(j) for j in shown_levels)
    shown, nested = fitted_tree([parent], tree, budget=budget)
    assert nested["b"] == tree["b"] and all(nested[name] == tree[name] for name in chain[:-1])

    deepest = chain[JOBINFO_MAX_LEVELS - 1]  # the last level shown
    tree[deepest] = _big(deepest, [chain[-1]], result_bytes=300_000)
    budget = sum(_jobinfo_bytes(j) for j in (parent, *(tree[name] for name in chain[:-2])))
    shown, nested = fitted_tree([parent], tree, budget=budget + _jobinfo_bytes(short(tree[deepest])) - 1)
    assert deepest not in nested and all(nested[name] == tree[name] for name in chain[:-2])


def test_a_root_past_the_budget_even_short_is_shown_and_takes_the_room_of_its_descendants():
    """A short job keeps its error's text: a root whose error alone passes the budget is still
    shown (short), and its descendants are left out."""
    from chalicelib.api.polling import fitted_tree
    from chalicelib.domain.job import JobErrorInfo

    parent = _big("p", ["a"]).model_copy(update={"error": JobErrorInfo(code="upstream", message="e" * 20_000)})
    tree = {"a": _big("a", result_bytes=100)}
    shown, nested = fitted_tree([parent], tree, budget=_jobinfo_bytes(short(parent)) - 1)
    assert shown["p"] == short(parent) and nested == {}

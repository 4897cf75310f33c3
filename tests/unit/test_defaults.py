"""Every limit, timeout and interval the behaviour rests on lives in chalicelib/defaults.py with
a line on why (STYLE.md habit 19): a module-level number elsewhere in chalicelib/ fails here,
naming file and line, unless it is listed below as what it is instead (a format, a layout, a
demo's own setting)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# name -> why it is not a default: changing it is not tuning behaviour.
NOT_DEFAULTS = {
    "FINISHED_SHARDS": "the finished-jobs index's key layout: stored items are read back by it",
    "DUE_SHARDS": "the due index's key layout: stored items are read back by it",
    "CHAOS_TIMEOUT_S": "demo.chaos's own registration, beside its handler (a demo, not the pipeline)",
}


def _numeric(node: ast.expr) -> bool:
    """A number written out: a literal, a sign on one, or arithmetic of literals."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _numeric(node.operand)
    if isinstance(node, ast.BinOp):
        return _numeric(node.left) and _numeric(node.right)
    return False


def module_level_numbers() -> list[tuple[str, str, int]]:
    """(file, name, line) of every UPPER_CASE module-level name bound to a number outside defaults.py."""
    found = []
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        if path.name == "defaults.py" and path.parent.name == "chalicelib":
            continue
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) and node.value is not None else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id.lstrip("_").isupper() and _numeric(node.value):
                    found.append((str(path.relative_to(ROOT)), target.id, node.lineno))
    return found


def test_every_limit_timeout_and_interval_is_in_defaults():
    stray = [f"{file}:{line} {name}" for file, name, line in module_level_numbers() if name not in NOT_DEFAULTS]
    assert stray == [], "move these into chalicelib/defaults.py with a line on why:\n" + "\n".join(stray)


def test_what_is_left_outside_defaults_is_still_there():
    """An entry of NOT_DEFAULTS whose constant is gone would excuse a later one of that name."""
    assert set(NOT_DEFAULTS) <= {name for _, name, _ in module_level_numbers()}


def test_the_defaults_that_rest_on_each_other_agree():
    """An hour's counters are read back over windows of up to MAX_STATS_WINDOW_HOURS; a batch of
    ids is one BatchGetItem; an unreadable stream batch is held as long as SQS may hide it."""
    from chalicelib import defaults

    assert defaults.STATS_HOUR_TTL_S > defaults.MAX_STATS_WINDOW_HOURS * 3600
    assert defaults.MAX_BATCH_IDS <= defaults.BATCH_GET_MAX
    assert defaults.UNREADABLE_HOLD_S <= defaults.SQS_MAX_HOLD_S
    assert defaults.STATS_SEEN_TTL_S > 24 * 3600  # the stream redelivers a batch for 24 hours


def test_the_api_bounds_its_requests_by_the_defaults():
    """A request model's bound written as a number drifted from the rule it mirrors: a cursor's
    2048 characters were written three times beside MAX_CURSOR_CHARS, a job type's 128 twice
    beside the registry's. Bounds of 0 and 1 (none, at least one) say no limit of their own."""
    found = []
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        if relative in ("chalicelib/defaults.py", "chalicelib/settings.py") or "/job_types/" in relative \
                or "/adapters/" in relative:
            continue  # settings' are held to the template's (test_settings), adapters' are AWS's formats
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg in ("le", "ge", "lt", "gt", "max_length", "min_length") \
                            and _numeric(keyword.value) and ast.literal_eval(keyword.value) not in (0, 1):
                        found.append(f"{relative}:{node.lineno} {keyword.arg}={ast.unparse(keyword.value)}")
    assert found == [], "bound these by a name in chalicelib/defaults.py:\n" + "\n".join(found)


def test_a_delivery_record_outlives_every_copy_of_its_event_on_the_bridges_queues():
    """A copy of a delivered event can wait on the ERP bridge's queue or its dead-letter queue
    for their retention, and a redrive (receive, send, delete) puts it back as a new message:
    the record that it was delivered must still be there then, and through the retries that
    follow, or the ERP gets the event again. Seven days were shorter than the DLQ's fourteen."""
    import json

    from chalicelib import defaults

    resources = json.loads((ROOT / "infra" / "resources.json").read_text())["Resources"]
    retention = max(resources[name]["Properties"]["MessageRetentionPeriod"]
                    for name in ("ErpWebhookQueue", "ErpWebhookDeadLetterQueue"))
    retries = defaults.DELIVERY_RETRY_MAX_S * 100  # about 24 h of tries once redriven, at most
    assert defaults.DELIVERY_RECORD_TTL_S >= retention + retries


def _defaults_aliases() -> list[str]:
    """Each module outside defaults.py that renames a default (`X = TOKEN_MAX_LIFETIME_S`) or
    hands one (or such a renaming) on in its `__all__`: a second name or home for it."""
    names = set(vars(__import__("chalicelib.defaults", fromlist=["_"])))
    modules = [(p.relative_to(ROOT), ast.parse(p.read_text()).body) for p in sorted((ROOT / "chalicelib").rglob("*.py"))
               if not (p.name == "defaults.py" and p.parent.name == "chalicelib")]
    assigns = [(where, node) for where, body in modules for node in body if isinstance(node, ast.Assign)]
    found = []
    for where, node in assigns:
        if isinstance(node.value, ast.Name) and node.value.id in names:
            renamed = [t.id for t in node.targets if isinstance(t, ast.Name)]
            found.append(f"{where}:{node.lineno} {renamed[0]} = {node.value.id}")
            names.update(renamed)
    for where, node in assigns:
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets) \
                and isinstance(node.value, (ast.List, ast.Tuple)):
            found += [f"{where}:{node.lineno} __all__ names {e.value}" for e in node.value.elts
                      if isinstance(e, ast.Constant) and e.value in names]
    return found


def test_a_default_has_one_name_and_is_imported_from_defaults():
    assert _defaults_aliases() == [], "import these from chalicelib/defaults.py by their own name"

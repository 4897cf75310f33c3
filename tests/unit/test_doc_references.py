"""Names the docs give a user, read against the code that answers to them: every error `code`
the API can answer is in docs/api.md's table under its status (and nothing the API never says
is there), every route and query parameter the pages name is a route of the app declared so
in GET /openapi.json, every `jobpipe` command and flag the pages show is one the CLI takes,
every `make` target one the Makefile has, and README's table of `make run` variables is the
one scripts/stack_config.py reads."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


def text(page: str) -> str:
    return (ROOT / page).read_text()


def table_after(page: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after the line starting with `heading`."""
    lines = text(page).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set(cells[0]) <= set("-: "):
                rows.append(cells)
        elif seen:
            break
    return rows[1:]  # the header row dropped


def codes(cell: str) -> list[str]:
    """The `code` names a cell lists: its backticked snake_case words before the first sentence
    or explanation ends (". ", ": "), words in brackets left out."""
    flat = re.sub(r"\([^()]*\)", "", re.sub(r"\([^()]*\)", "", cell))
    listed = re.split(r"[.:] ", flat)[0]
    return re.findall(r"`([a-z][a-z_]*)`", listed)


# --- error codes ---------------------------------------------------------------------------

def _api_codes() -> dict[str, int]:
    """Each `code` a route of the API function can answer, with its status."""
    from chalicelib.api import errors

    answered = {kind.code: status for kind, status in errors._STATUS}
    answered[errors.internal_error_response().body["error"]["code"]] = 500
    return answered


def _gateway_codes() -> dict[str, str]:
    """The codes of the gateway responses infra/resources.json declares, with their status
    (`4xx` for the default one, whose status is the gateway's)."""
    declared = {}
    for resource in json.loads(text("infra/resources.json"))["Resources"].values():
        for kind, response in resource.get("Properties", {}).get("GatewayResponses", {}).items():
            code = json.loads(response["ResponseTemplates"]["application/json"].replace(
                "$context.error.messageString", '""'))["error"]["code"]
            declared[code] = response.get("StatusCode", "4xx")
    return declared


def _documented_codes() -> dict[str, str]:
    documented: dict[str, str] = {}
    for status, cell in table_after("docs/api.md", "Errors, by status"):
        for code in codes(cell):
            assert code not in documented, f"{code} is under two statuses"
            documented[code] = status
    return documented


def test_every_error_code_the_api_answers_is_in_the_errors_table_under_its_status():
    documented = _documented_codes()
    expected = {code: str(status) for code, status in _api_codes().items()} | _gateway_codes()
    assert documented == expected


def test_each_status_and_code_the_pages_name_together_is_one_the_api_answers():
    """`409 job_finished`, `404 (route_not_found)`: wherever a page names a 4xx/5xx with a code,
    the API answers that code with that status (`404 miss` is the cache's answer, not an error)."""
    answered = {code: str(status) for code, status in _api_codes().items()} | _gateway_codes()
    named = [(page, status, code) for page in PAGES
             for status, code in re.findall(r"\b([45]\d\d) \(?`([a-z_]+)`", text(page)) if code != "miss"]
    assert named
    assert [n for n in named if answered.get(n[2]) != n[1]] == []


def test_each_error_class_the_pages_name_with_a_code_has_that_code():
    """A job's `error.code` is what an author's code and a consumer branch on: wherever a page
    names an error beside its code (`AttemptEndedError` (`attempt_ended`), "raises
    `RecordFullError`, nothing made, and uncaught the job fails `record_full`", the handler
    errors' own `retryable_error` and `fatal_error`), the class has that code."""
    from chalicelib.domain import errors

    named = set()
    for page in PAGES:
        flat = " ".join(text(page).split())
        named |= set(re.findall(r"`([A-Z]\w+Error)`(?: \(`|[^`.]{0,60}?the job fails `)([a-z_]+)`", flat))
        for first, second, one, two in re.findall(
                r"`(\w+Error)`/`(\w+Error)`'s own `code` [^.]*? its class's \(`([a-z_]+)`, `([a-z_]+)`\)", flat):
            named |= {(first, one), (second, two)}
    named = {(name, code) for name, code in named if hasattr(errors, name)}  # the client's are its own
    assert {"AttemptEndedError", "RetryableJobError", "FatalJobError", "TooManyChildrenError",
            "PayloadTooDeepError"} <= {name for name, _ in named}
    assert [(name, code) for name, code in sorted(named) if getattr(errors, name).code != code] == []


# --- the Python client and the CLI ----------------------------------------------------------

def test_every_client_call_the_pages_show_exists_and_docs_api_md_names_each_one_and_each_error():
    """A reader of docs/api.md meets every public method of JobpipeClient and every error the
    package exports (what a wait raises when its timeout runs out was in none), and no page
    shows a `client.<call>` the client lacks."""
    import jobpipe_client

    methods = {name for name in dir(jobpipe_client.JobpipeClient) if not name.startswith("_")}
    shown = {name for page in PAGES for name in re.findall(r"\bclient\.([a-z_]+)\(", text(page))}
    assert shown and shown <= methods
    api = text("docs/api.md")
    assert [m for m in sorted(methods) if not re.search(rf"(client\.|`){m}\b", api)] == []
    errors = [name for name in jobpipe_client.__all__
              if isinstance(getattr(jobpipe_client, name), type) and issubclass(getattr(jobpipe_client, name), BaseException)]
    assert [e for e in errors if f"`{e}`" not in api] == []
    denied = [(page, m) for page in PAGES
              for m in re.findall(r"client has no\s+(\w+) call", " ".join(text(page).split())) if m in methods]
    assert denied == []  # migrating.md said the client had no artifact call after it had one


def _cli_options() -> dict[str, set[str]]:
    """Each `jobpipe` command with the option strings it takes."""
    from jobpipe_client.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: {o for a in sub._actions for o in a.option_strings} for name, sub in commands.choices.items()}


def _cli_lines() -> list[tuple[str, str]]:
    """(page, command line) of every `jobpipe ...` in a code span or a shell block."""
    found = []
    for page in PAGES:
        page_text = text(page)
        found += [(page, c) for c in re.findall(r"`(jobpipe [^`]+)`", page_text)]
        for block in re.findall(r"```sh\n(.*?)```", page_text, re.S):
            found += [(page, line.split("  #")[0]) for line in block.splitlines() if line.startswith("jobpipe ")]
    return found


def test_every_jobpipe_command_and_flag_the_pages_show_is_one_the_cli_takes_and_each_command_is_shown():
    options = _cli_options()
    unknown, shown = [], set()
    for page, line in _cli_lines():
        command, *words = line.split()[1:]
        if command.startswith("-"):  # `jobpipe --help`
            continue
        shown.add(command)
        flags = [w.strip("[]").split("=")[0] for w in words if w.strip("[]").startswith("-") and w.strip("[]") != "-"]
        unknown += [(page, command, f) for f in flags if f not in options.get(command, ())]
    assert unknown == []
    assert set(options) <= shown, "a command docs/api.md does not show"
    assert [c for c in options if f"jobpipe {c} " not in text("docs/api.md")] == []


# --- routes ----------------------------------------------------------------------------------

def _template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def _declared_operations() -> dict[tuple[str, str], set[str]]:
    """(METHOD, path template) of each operation of GET /openapi.json, with its query parameters."""
    from chalicelib.api.openapi import openapi_document

    return {(method.upper(), _template(path)): {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
            for path, item in openapi_document()["paths"].items() for method, op in item.items()}


ROUTE = re.compile(r"\b(GET|POST|PUT|DELETE|PATCH) (?:\$JOBPIPE_API_URL|\{JOBPIPE_API_URL\})?(/[A-Za-z0-9_{}./-]*)\??([A-Za-z0-9_=&-]*)")
# A page's mentions of the routes of the systems jobpipe replaces (docs/migrating.md).
FOREIGN = ("/rq-engine/", "/api/v1/")


def test_every_route_the_pages_name_is_served_and_declared_and_every_route_is_in_a_page():
    from app import app

    served = {(method, _template(path)) for path, methods in app.routes.items() for method in methods}
    declared = _declared_operations()
    assert set(declared) == served
    named: set[tuple[str, str]] = set()
    for page in PAGES:
        for method, path, query in ROUTE.findall(text(page)):
            if path == "/" or path.startswith(FOREIGN):
                continue
            exact = (method, _template(path.rstrip("/")))
            key = exact if exact in served else next((k for k in served if k[0] == method and re.fullmatch(
                re.escape(k[1]).replace(r"\{\}", "[^/]+"), _template(path.rstrip("/")))), None)
            assert key is not None, (page, method, path)
            named.add(key)
            params = {q.split("=")[0] for q in query.split("&") if q}
            assert params <= declared[key], (page, method, path, params - declared[key])
    assert served - named == set()


def test_the_batch_routes_declare_the_query_ids_docs_api_md_gives_them_and_an_optional_body():
    """api.md: a batch route takes `?job_id=` / `?job_ids=` when the body is empty or not JSON;
    GET /openapi.json declared neither and a required body, so a client built from it could
    not send the ids as the page says."""
    from chalicelib.api.openapi import openapi_document

    assert "`?job_id=` / `?job_ids=`" in text("docs/api.md")
    for path in ("/jobs/status", "/api/jobinfo"):
        operation = openapi_document()["paths"][path]["post"]
        query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        assert set(query) == {"job_id", "job_ids"}, path
        assert all(p["schema"]["type"] == "array" and p.get("explode", True) for p in query.values()), path
        assert operation["requestBody"]["required"] is False, path


# --- make, and the variables of `make run` ---------------------------------------------------

def test_every_make_target_the_pages_name_is_in_the_makefile():
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", text("Makefile"), re.M))
    named = {(page, target) for page in PAGES for target in re.findall(r"`make ([a-z][a-z0-9-]*)", text(page))}
    named |= {(page, line.split()[1]) for page in PAGES for block in re.findall(r"```sh\n(.*?)```", text(page), re.S)
              for line in block.splitlines() if re.match(r"(\S+=\S+ )*make [a-z]", line)
              for line in [re.sub(r"^(\S+=\S+ )*", "", line)]}
    assert {"run", "test", "bench", "unit"} <= {t for _, t in named}
    assert [(page, t) for page, t in sorted(named) if t not in targets] == []


def _bounds(parameter: dict) -> list[str]:
    """How a rule states the template's bounds on a parameter, each number as every refusal
    shows one (domain.numbers): `0-300`, `0-1,000`, or `at least 400` and `at most 3,650`;
    `32 to 128 characters`, or `... 1,024 characters` for a maximum alone."""
    from chalicelib.domain.numbers import shown_number

    if "MinLength" in parameter and "MaxLength" in parameter:
        return [f"{shown_number(parameter['MinLength'])} to {shown_number(parameter['MaxLength'])} characters"]
    if "MaxLength" in parameter:
        return [f"{shown_number(parameter['MaxLength'])} characters"]
    if "MinValue" in parameter:
        low, high = shown_number(parameter["MinValue"]), shown_number(parameter["MaxValue"])
        return [f"{low}-{high}"] if parameter["MaxValue"] < 1000 or parameter["MinValue"] == 0 \
            else [f"at least {low}", f"at most {high}"]
    return []


def test_the_readme_table_of_make_run_variables_is_the_one_stack_config_reads_with_the_templates_bounds():
    """Each row's variable is the one scripts/stack_config.py reads for its parameter, every
    variable it reads has a row, its default is the one `make run` deploys (a changed default
    in chalicelib/defaults.py left the row's number behind), and each rule states the bounds
    the template holds the parameter to (BlobRetentionDays' maximum, 3,650 days, was refused
    but not written)."""
    from scripts.stack_config import VARIABLES

    template = json.loads(text("infra/resources.json"))["Parameters"]
    rows = {row[1].strip("`"): row for row in table_after("README.md", "The stack's parameters come from")}
    assert {param: row[0].strip("`") for param, row in rows.items()} == {p: v for p, (v, _) in VARIABLES.items()}
    for param, (variable, _, default, rule) in rows.items():
        first = [re.match(r"[\w.]+", text.lstrip("`")).group() for text in (default, VARIABLES[param][1])]
        assert first[0] == first[1], f"README gives {variable} the default {default!r}; make run deploys {first[1]}"
        parameter = template[param]
        missing = [b for b in _bounds(parameter) if b not in rule.replace("0 - ", "0-")]
        assert missing == [], (variable, rule)
        if "AllowedValues" in parameter and param == "LogRetentionDays":
            assert re.findall(r"\d+", rule) == [str(v) for v in parameter["AllowedValues"]], rule


# --- the model tests ---------------------------------------------------------------------------

def _hypothesis_settings(path: Path) -> dict[str, object]:
    """The keywords of the module-level `....settings = settings(...)` a state machine's file gives
    its TestCase, read from the source (the functional tier's modules are not imported here)."""
    import ast

    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and getattr(node.value.func, "id", None) == "settings":
            return {k.arg: ast.literal_eval(k.value) for k in node.value.keywords
                    if isinstance(k.value, ast.Constant)}
    raise AssertionError(f"{path} gives its state machine no settings")


def test_the_model_tests_the_readme_calls_derandomized_are_so():
    """README says its state machines run derandomized and without an example database, the same
    on every run: a model that draws new examples each run fails one day on a change that
    did not break it, and a failure seen once may not be seen again."""
    paragraph = next(p for p in text("README.md").split("\n\n") if "Hypothesis state machines" in p)
    assert "derandomized and without an example database" in paragraph
    models = sorted(set(re.findall(r"`(tests/[\w/]+_model\.py)`", paragraph)))
    assert models == sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("tests/*/test_*_model.py")), models
    for model in models:
        chosen = _hypothesis_settings(ROOT / model)
        assert (chosen.get("derandomize"), chosen.get("database", "unset")) == (True, None), (model, chosen)


# --- the layout table ----------------------------------------------------------------------

def test_each_layout_row_that_lists_a_folders_modules_names_every_one():
    """README's layout table: a folder's row that names its modules names all of them, so a
    module added beside them is placed in the map a newcomer reads first."""
    rows = [(path.strip("`"), description) for path, description, *_ in table_after("README.md", "## Layout")]
    own_rows = {path for path, _ in rows}  # `chalicelib/domain/stats.py` has a row of its own
    missing = {}
    for path, description in rows:
        folder = ROOT / path
        if not path.endswith("/") or not folder.is_dir():
            continue
        modules = {p.name for p in folder.iterdir()
                   if p.suffix in {".py", ".js"} and p.name != "__init__.py" and f"{path}{p.name}" not in own_rows}
        named = set(re.findall(r"`([\w.]+\.(?:py|js))`", description))
        if named & modules and modules - named:
            missing[path] = sorted(modules - named)
    assert not missing, f"README's layout table does not name these modules in their folder's row: {missing}"


def test_the_readmes_first_lines_name_the_tiers_make_test_runs():
    """The README opens with `make test` and the tiers it runs: the faults tier was left out of
    that list while the Makefile ran it, so a reader meeting its failure looked for a tier the
    README did not name."""
    makefile = (ROOT / "Makefile").read_text()
    tiers = re.search(r"^test: (.+)$", makefile, re.M).group(1).split()
    said = re.search(r"^make test +# .*\(([^)]*)\)$", text("README.md"), re.M).group(1)
    assert said.split(", ") == tiers

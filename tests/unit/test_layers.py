"""Layers point one way (docs: STYLE.md habit 18; README "Layout"):

    domain <- ports <- use cases <- adapters, handlers <- composition root

Every module under chalicelib/ is parsed with `ast` (imports inside functions count too) and
each import of another chalicelib module is checked against LAYERS and ALLOWED, so a new
upward import, a module placed in no layer, or an import circle fails `make unit`. The same
trees show that boto3 and botocore are imported by the adapters and the composition root only
(never the domain), that settings.py alone reads the environment, and that the JobStore's
status writes are called from the chalicelib/lifecycle/ package only; each failure names file
and line."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "chalicelib"

# Layer -> module name prefixes; a module belongs to the layer of its longest matching prefix.
LAYERS: dict[str, tuple[str, ...]] = {
    # Pure: the job, its status table, errors, events, stats, cache names, defaults.
    "domain": ("chalicelib.domain", "chalicelib.defaults"),
    # What the core needs from outside (Protocols and the values they carry).
    "ports": ("chalicelib.ports",),
    # Structured logs, metrics and traces (Powertools), usable by everything above the domain.
    "observability": ("chalicelib.observability",),
    # What the pipeline does, over ports only.
    "use cases": (
        "chalicelib.lifecycle", "chalicelib.reconciler", "chalicelib.maintenance",
        "chalicelib.quota", "chalicelib.dead_letters",
        "chalicelib.job_reads", "chalicelib.events", "chalicelib.subscribers", "chalicelib.worker",
        "chalicelib.job_types",
    ),
    # AWS and in-memory implementations of the ports.
    "adapters": ("chalicelib.adapters", "chalicelib.aws_requests"),
    # Entry points: the HTTP routes, the dashboard, the Lambda functions and their wrapper.
    "handlers": (
        "chalicelib.api", "chalicelib.dashboard", "chalicelib.invocation", "chalicelib.events.handlers",
        "chalicelib.subscribers.handlers", "chalicelib.worker.handlers", "chalicelib.worker.scheduled",
    ),
    # Reads the settings once and wires adapters into use cases.
    "composition root": ("chalicelib.composition", "chalicelib.settings"),
}

ALLOWED: dict[str, set[str]] = {
    "domain": {"domain"},
    "ports": {"domain", "ports"},
    "observability": {"domain", "observability"},
    "use cases": {"domain", "ports", "observability", "use cases"},
    "adapters": {"domain", "ports", "adapters"},
    "handlers": {"domain", "ports", "observability", "use cases", "handlers"},
    "composition root": {"domain", "ports", "observability", "use cases", "adapters", "composition root"},
}

# The upward imports left, each with its reason: (importing layer, imported module) -> the
# names it may import, and why.
EXCEPTIONS: dict[tuple[str, str], tuple[set[str], str]] = {
    ("handlers", "chalicelib.composition"): (
        {"container", "Container", "take_aws_requests", "SettingsError", "report_misconfiguration"},
        "Chalice builds every function and route from module-level functions at import time, so "
        "the root cannot call them with their services: each entry point calls container() once "
        "and passes the services down (and the wrapper logs the invocation's AWS requests); a "
        "route answers the root's refusal of the function's settings as `misconfigured`.",
    ),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def parse_modules() -> dict[str, tuple[ast.Module, bool]]:
    """Module name -> (its syntax tree, whether it is a package's __init__)."""
    return {module_name(p): (ast.parse(p.read_text(), str(p)), p.name == "__init__.py")
            for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def imports(module: str, tree: ast.Module, is_package: bool, modules: set[str]) -> list[tuple[str, set[str], int]]:
    """(imported chalicelib module, names imported from it, line) for every import in `tree`
    (relative imports resolved from `module`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, set(), node.lineno) for alias in node.names if alias.name.startswith(PACKAGE)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if not base.startswith(PACKAGE):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules:  # `from package import module`
                    found.append((submodule, set(), node.lineno))
                else:
                    found.append((base, {alias.name}, node.lineno))
    return found


def layer_of(module: str) -> str | None:
    best, layer = "", None
    for name, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, layer = prefix, name
    return layer


def violations(graph: dict[str, list[tuple[str, set[str], int]]]) -> list[str]:
    """Every import in `graph` (module -> its imports) that goes against ALLOWED and EXCEPTIONS."""
    found = []
    for module, targets in graph.items():
        source = layer_of(module)
        for target, names, line in targets:
            target_layer = layer_of(target)
            if target_layer in ALLOWED[source]:
                continue
            allowed_names, _ = EXCEPTIONS.get((source, target), (set(), ""))
            if names and names <= allowed_names:
                continue
            found.append(f"{module}:{line} ({source}) imports {target} {sorted(names) or ''} ({target_layer})")
    return found


def cycles(graph: dict[str, list[tuple[str, set[str], int]]]) -> list[list[str]]:
    """The import circles of `graph` (strongly connected components of more than one module).
    A submodule's implicit import of its own package is not an edge."""
    edges = {m: {t for t, _, _ in targets if t != m} for m, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, set[str], int]]]:
    trees = parse_modules()
    names = set(trees)
    return {module: imports(module, tree, is_package, names) for module, (tree, is_package) in trees.items()}


def test_every_module_is_in_a_layer(graph):
    unplaced = [m for m in graph if m != PACKAGE and layer_of(m) is None]
    assert not unplaced, f"place these modules in a layer of LAYERS: {unplaced}"
    imported = {t for targets in graph.values() for t, _, _ in targets}
    assert imported <= set(graph), f"imports of modules that do not exist: {imported - set(graph)}"


def test_imports_point_down_the_layers(graph):
    found = violations({m: t for m, t in graph.items() if m != PACKAGE})
    assert not found, "upward imports:\n" + "\n".join(found)


def test_no_import_circle(graph):
    assert cycles(graph) == []


def test_the_checks_catch_an_upward_import_a_circle_and_an_unlisted_name():
    graph = {
        "chalicelib.adapters.eventbridge": [("chalicelib.events.publishing", {"SOURCE"}, 3)],
        "chalicelib.api.routes": [("chalicelib.composition", {"container"}, 1),
                                  ("chalicelib.composition", {"_container"}, 2)],
        "chalicelib.lifecycle": [("chalicelib.reconciler", {"Reconciler"}, 1)],
        "chalicelib.reconciler": [("chalicelib.lifecycle", {"JobLifecycle"}, 1)],
    }
    assert violations(graph) == [
        "chalicelib.adapters.eventbridge:3 (adapters) imports chalicelib.events.publishing ['SOURCE'] (use cases)",
        "chalicelib.api.routes:2 (handlers) imports chalicelib.composition ['_container'] (composition root)",
    ]
    assert cycles(graph) == [["chalicelib.lifecycle", "chalicelib.reconciler"]]


def test_relative_imports_are_resolved_from_the_importing_module():
    tree = ast.parse("from ..composition import container\nfrom . import errors\nfrom .events import SOURCE\n")
    modules = {"chalicelib.domain.job", "chalicelib.domain.errors", "chalicelib.domain.events", "chalicelib.composition"}
    assert imports("chalicelib.domain.job", tree, False, modules) == [
        ("chalicelib.composition", {"container"}, 1),
        ("chalicelib.domain.errors", set(), 2),
        ("chalicelib.domain.events", {"SOURCE"}, 3),
    ]
    assert imports("chalicelib.domain", ast.parse("from .events import SOURCE"), True, modules) == [
        ("chalicelib.domain.events", {"SOURCE"}, 1),
    ]


def _layout_row(path: str) -> str:
    """The README "Layout" table's row of `path`."""
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| `{path}` |")]
    assert len(rows) == 1, f"README's layout table has no row for {path}"
    return rows[0]


def test_the_readme_layout_names_every_port_and_every_adapter_module():
    """The row of ports/ says "every port", and the adapters' row names each module: a port or
    an adapter added without its line in the layout fails here. Every name a module of ports/
    defines is imported from the package too (`from chalicelib.ports import JobStore`)."""
    import importlib
    import pkgutil
    from typing import Protocol

    from chalicelib import ports

    defined = {}  # each public name a module of ports/ defines (not imports), as it defines it
    for info in pkgutil.iter_modules(ports.__path__):
        module = importlib.import_module(f"{ports.__name__}.{info.name}")
        for node in ast.parse(Path(module.__file__).read_text()).body:
            names = ([node.name] if isinstance(node, (ast.ClassDef, ast.FunctionDef))
                     else [t.id for t in node.targets] if isinstance(node, ast.Assign) else [])
            defined.update((name, getattr(module, name)) for name in names if not name.startswith("_"))
    assert sorted(ports.__all__) == sorted(defined)
    assert [name for name, value in defined.items() if getattr(ports, name) is not value] == []
    protocols = [name for name, value in defined.items() if isinstance(value, type) and Protocol in value.__mro__[1:]]
    row = _layout_row("chalicelib/ports/")
    assert protocols and [p for p in protocols if f"`{p}`" not in row] == []
    row = _layout_row("chalicelib/adapters/")
    modules = sorted(p.name for p in (ROOT / PACKAGE / "adapters").glob("*.py") if p.name != "__init__.py")
    assert [m for m in modules if f"`{m}`" not in row] == []


def test_the_readme_layout_names_every_dashboard_file():
    """The dashboard's row names index.html, the stylesheet and every script index.html runs:
    the one concern a change is about is found by its file's name."""
    from chalicelib.dashboard.page import ASSETS, STYLESHEET, scripts

    row = _layout_row("chalicelib/dashboard/")
    files = ["index.html", STYLESHEET, *scripts((ASSETS / "index.html").read_text())]
    assert [f for f in files if f"`{f}`" not in row] == []

# -- what a layer may use from outside chalicelib ---------------------------------------------

# The AWS SDK is used behind the ports only: by the adapters, and by the root that builds its
# clients once. The domain, the use cases and the handlers never see it (nor its error codes).
AWS_SDK = ("boto3", "botocore")
AWS_SDK_LAYERS = {"adapters", "composition root"}
# The environment is read once, validated, in one module: the domain reads none of it, and
# neither does anything else (a setting reaches its user through the composition root).
ENVIRONMENT_READERS = {"chalicelib.settings"}
ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def _path_of(module: str, is_package: bool) -> str:
    return module.replace(".", "/") + ("/__init__.py" if is_package else ".py")


def outside_uses(module: str, tree: ast.Module, path: str) -> list[str]:
    """`path:line ...` for each import of the AWS SDK and each read of the environment in
    `tree` that the layer of `module` may not make (imports inside functions count too)."""
    found = []
    sdk_allowed = layer_of(module) in AWS_SDK_LAYERS
    environment_allowed = module in ENVIRONMENT_READERS
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            roots = [(node.module or "").split(".")[0]]
            if roots == ["os"] and not environment_allowed:
                found += [f"{path}:{node.lineno} reads the environment (os.{alias.name})"
                          for alias in node.names if alias.name in ENVIRONMENT_NAMES]
        elif isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES and not environment_allowed:
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append(f"{path}:{node.lineno} reads the environment (os.{node.attr})")
            continue
        else:
            continue
        if not sdk_allowed:
            found += [f"{path}:{node.lineno} imports {root} ({layer_of(module)})" for root in roots if root in AWS_SDK]
    return sorted(found, key=lambda use: (int(use.split(":")[1].split()[0]), use))


def test_only_the_adapters_and_the_root_use_the_aws_sdk_and_only_settings_reads_the_environment():
    """The domain (and every layer but the adapters and the root) imports no boto3 or botocore;
    only settings.py reads the environment."""
    found = [use for module, (tree, is_package) in parse_modules().items()
             for use in outside_uses(module, tree, _path_of(module, is_package))]
    assert not found, "the AWS SDK or the environment used outside its place:\n" + "\n".join(found)


def test_the_outside_check_catches_the_sdk_and_the_environment_in_the_domain():
    source = ("import os\nimport boto3.session\nfrom botocore.exceptions import ClientError\n"
              "from os import environ\n\ndef f():\n    return os.environ.get('X') or os.getenv('Y')\n")
    assert outside_uses("chalicelib.domain.job", ast.parse(source), "chalicelib/domain/job.py") == [
        "chalicelib/domain/job.py:2 imports boto3 (domain)",
        "chalicelib/domain/job.py:3 imports botocore (domain)",
        "chalicelib/domain/job.py:4 reads the environment (os.environ)",
        "chalicelib/domain/job.py:7 reads the environment (os.environ)",
        "chalicelib/domain/job.py:7 reads the environment (os.getenv)",
    ]
    assert outside_uses("chalicelib.adapters.sqs", ast.parse("import boto3\n"), "chalicelib/adapters/sqs.py") == []
    assert outside_uses("chalicelib.settings", ast.parse(source), "chalicelib/settings.py") == []
    assert outside_uses("chalicelib.api.routes", ast.parse(source), "chalicelib/api/routes.py")[0] == (
        "chalicelib/api/routes.py:2 imports boto3 (handlers)")


# -- one place changes a job's status ---------------------------------------------------------

# The JobStore writes that set a job's status (a new job's first one, or a change), called only
# by the lifecycle (README "Layout": chalicelib/lifecycle/, every status change of a job, a
# module per family of transitions); the adapters carry them out. Every other JobStore method
# is listed as what it is, so a new one is placed in one list or the other.
STATUS_WRITES = {"create", "create_keyed", "create_child", "apply", "apply_expected"}
OTHER_STORE_METHODS = {
    "get", "get_many", "list_jobs", "runs", "due", "count_unfinished", "submission_key",  # reads
    "record_progress", "cut_progress_message", "add_child", "keep_parts",  # writes that keep the status
}
STATUS_WRITER = "chalicelib.lifecycle"  # the package and each of its modules


def status_writes(module: str, tree: ast.Module, path: str) -> list[str]:
    """`path:line` for each call of a status-setting JobStore method in `tree` that `module`
    may not make: any module but the lifecycle's and the adapters (which implement the store)."""
    if module == STATUS_WRITER or module.startswith(STATUS_WRITER + ".") or layer_of(module) == "adapters":
        return []
    return [f"{path}:{node.lineno} calls .{node.func.attr}()" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in STATUS_WRITES]


def test_every_job_store_method_is_a_status_write_or_not():
    from chalicelib.ports import JobStore

    methods = {name for name, value in vars(JobStore).items() if callable(value) and not name.startswith("_")}
    assert methods == STATUS_WRITES | OTHER_STORE_METHODS
    assert not STATUS_WRITES & OTHER_STORE_METHODS


def test_only_the_lifecycle_writes_a_jobs_status():
    found = [call for module, (tree, is_package) in parse_modules().items()
             for call in status_writes(module, tree, _path_of(module, is_package))]
    assert not found, ("a job's status is written through chalicelib/lifecycle/ only "
                       "(these call the JobStore's status writes):\n" + "\n".join(found))


def test_the_status_check_catches_a_write_outside_the_lifecycle():
    source = "def settle(store, job, changes):\n    store.record_progress(job)\n    return store.apply(job, job.status, changes)\n"
    assert status_writes("chalicelib.reconciler", ast.parse(source), "chalicelib/reconciler.py") == [
        "chalicelib/reconciler.py:3 calls .apply()"]
    assert status_writes("chalicelib.lifecycle.claims", ast.parse(source), "chalicelib/lifecycle/claims.py") == []
    assert status_writes("chalicelib.lifecycle_rules", ast.parse(source), "chalicelib/lifecycle_rules.py") == [
        "chalicelib/lifecycle_rules.py:3 calls .apply()"]  # a module named like the package is not in it
    assert status_writes("chalicelib.adapters.faults", ast.parse(source), "chalicelib/adapters/faults.py") == []


def test_the_readme_layout_names_every_module():
    """Each module of chalicelib is in the README's "Layout" table: by its path, or by its file
    name in its folder's row, so a new engineer finds where a thing lives and a new module is
    placed there with a line on what it holds."""
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):text.index("\nLayers point one way")]
    unnamed = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py" or f"`{relative}`" in layout:
            continue
        folder = path.parent.relative_to(ROOT).as_posix()
        if folder != PACKAGE and f"`{path.name}`" in _layout_row(f"{folder}/"):
            continue
        unnamed.append(relative)
    assert unnamed == [], "name these in README's layout table:\n" + "\n".join(unnamed)

"""Every Lambda function loads the same `app.py`, so whatever it imports every function pays for
at its cold start. The heavy packages that only some functions use are imported where they are
first needed (the composition root, the adapter or the handler that uses them); this guards
that `import app` alone does not load them again. It counts modules, not milliseconds.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Module name prefixes `import app` must not load, each with the functions that use it.
DEFERRED = {
    "boto3": "AWS clients: built by the composition root on first use",
    "s3transfer": "boto3's, with it",
    "urllib3": "botocore's HTTP, with the first client",
    "botocore.": "the SDK itself (Powertools imports the bare `botocore` package for its user agent)",
    "jwt": "the API function's authentication, on its first request",
    "cryptography": "PyJWT's, with it",
    "aws_lambda_powertools.utilities.batch": "the SQS consumers: workers and subscribers",
    "aws_lambda_powertools.utilities.data_classes": "Powertools batch's, with it",
    "aws_lambda_powertools.utilities.parser": "Powertools batch's, with it",
    "aws_xray_sdk": "Powertools' Tracer, only where tracing is on (chalicelib/observability.py)",
}


def modules_after(code: str) -> list[str]:
    """The modules loaded in a fresh interpreter after running `code` in the project root."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def _matches(module: str, prefix: str) -> bool:
    """`pkg` matches the package and its submodules; `pkg.` only its submodules."""
    return module.startswith(prefix) if prefix.endswith(".") else module == prefix or module.startswith(prefix + ".")


def deferred_in(modules: list[str]) -> list[str]:
    return [m for m in modules if any(_matches(m, prefix) for prefix in DEFERRED)]


def test_import_app_loads_none_of_the_deferred_packages():
    modules = modules_after("import app")
    assert "chalice" in modules and "chalicelib.worker.handlers" in modules  # the probe saw the app load
    assert deferred_in(modules) == []


def test_the_probe_sees_a_deferred_package_once_it_is_used():
    """The same check fails when a deferred package is loaded: here PyJWT, by making a token."""
    modules = modules_after("import app\nfrom chalicelib.api.auth import issue_token\n"
                            "issue_token('x' * 32, user='u', tenant='t')")
    assert "jwt" in deferred_in(modules)
    assert deferred_in(["botocore", "botocore.session", "boto3", "jwtx"]) == ["botocore.session", "boto3"]

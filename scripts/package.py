"""Build the deployment: `chalice package --merge-template infra/resources.json` into a SAM
template and a zip, then drop from the zip what the Lambda Python runtime already provides.

Usage: python -m scripts.package OUT_DIR
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Provided by the Lambda Python runtime; pulled in here only as dependencies of aws-xray-sdk.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")


def _is_runtime_provided(name: str) -> bool:
    top = name.split("/", 1)[0]
    if top.endswith(".dist-info"):
        top = top.split("-", 1)[0].lower().replace("python_", "")
    return top.removesuffix(".py") in RUNTIME_PROVIDED


def strip_runtime_packages(zip_path: Path) -> tuple[int, int]:
    """Rewrite `zip_path` without runtime-provided packages; returns (bytes before, after)."""
    before = zip_path.stat().st_size
    stripped = zip_path.with_suffix(".tmp")
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(stripped, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if not _is_runtime_provided(info.filename):
                target.writestr(info, source.read(info.filename))
    stripped.replace(zip_path)
    return before, zip_path.stat().st_size


def main(out_dir: str) -> None:
    out = (ROOT / out_dir).resolve()
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    chalice = Path(sys.executable).with_name("chalice")
    subprocess.run(
        [str(chalice), "package", "--merge-template", "infra/resources.json", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
    )
    before, after = strip_runtime_packages(out / "deployment.zip")
    print(f"deployment.zip: {after / 1e6:.1f} MB ({before / 1e6:.1f} MB before leaving out the runtime's boto3/botocore)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build")

"""Build moto resources from the same infra template that deploys to AWS."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from scripts.package import folder_lock

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "resources.json"
BUILD = ROOT / "build"


def resources() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())["Resources"]


def create_table(dynamodb: Any, logical_id: str, name: str, *, with_ttl: bool = True) -> None:
    """The template's table `logical_id` as `name`, with its TTL unless `with_ttl` is False (as an
    emulator's CloudFormation makes it)."""
    props = resources()[logical_id]["Properties"]
    args = {
        "TableName": name,
        "BillingMode": props["BillingMode"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
    }
    if "GlobalSecondaryIndexes" in props:
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if "StreamSpecification" in props:
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    dynamodb.create_table(**args)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and with_ttl:
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)


def package_is_stale() -> bool:
    """True when build/ is missing or older than any source that goes into it."""
    built = [BUILD / "sam.json", BUILD / "deployment.zip"]
    if not all(p.exists() for p in built):
        return True
    built_at = min(p.stat().st_mtime for p in built)
    sources = [ROOT / "app.py", ROOT / "requirements.txt", *ROOT.glob(".chalice/*.json"),
               *ROOT.glob("infra/**/*"), *ROOT.glob("chalicelib/**/*")]
    return any(p.is_file() and p.stat().st_mtime > built_at for p in sources)


def ensure_package() -> None:
    """`make package` (build/sam.json and build/deployment.zip) unless build/ is up to date.
    One process at a time, on a lock of the checkout's directory: tests run in parallel workers
    find the package built once, not once each (a build never shows a half-written file either:
    scripts/package.py puts its files in place each in one rename)."""
    with folder_lock(ROOT):
        if package_is_stale():
            subprocess.run([sys.executable, "-m", "scripts.package", "build"], cwd=ROOT, check=True)


def packaged_template() -> dict[str, Any]:
    """build/sam.json, packaged first when stale: the template as it deploys."""
    ensure_package()
    return json.loads((BUILD / "sam.json").read_text())

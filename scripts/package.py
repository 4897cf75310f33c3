"""Build the deployment: `chalice package --merge-template infra/resources.json` into a SAM
template and a zip, then drop from the zip what the Lambda Python runtime already provides.

Usage: python -m scripts.package OUT_DIR
"""
from __future__ import annotations

import fcntl
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
# What `chalice package` writes into the build folder: the template and the functions' code.
TEMPLATE_NAME = "sam.json"
CODE_NAME = "deployment.zip"
# Where a build is made before its files replace the last build's: inside the build folder.
STAGING_PREFIX = ".staging-"
# Provided by the Lambda Python runtime; pulled in here only as dependencies of aws-xray-sdk.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")


def _is_runtime_provided(name: str) -> bool:
    top = name.split("/", 1)[0]
    if top.endswith(".dist-info"):
        top = top.split("-", 1)[0].lower().replace("python_", "")
    return top.removesuffix(".py") in RUNTIME_PROVIDED


def _bytecode(source: bytes, name: str, work: Path) -> bytes | None:
    """`source` compiled by this interpreter (in the scratch folder `work`) into a .pyc used
    without checking the source (unchecked hash: a zip's timestamps do not survive extraction
    exactly); None when it does not compile (a module no import reaches, as compileall skips it)."""
    py, pyc = work / "module.py", work / "module.pyc"
    py.write_bytes(source)
    try:
        py_compile.compile(str(py), cfile=str(pyc), dfile=name, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except py_compile.PyCompileError:
        return None
    return pyc.read_bytes()


def _pyc_name(py_name: str) -> str:
    """`pkg/mod.py` -> `pkg/__pycache__/mod.cpython-311.pyc`, this interpreter's tag (where
    the import system looks first; `cache_from_source` would follow a PYTHONPYCACHEPREFIX)."""
    folder, _, file = py_name.rpartition("/")
    cached = f"__pycache__/{file.removesuffix('.py')}.{sys.implementation.cache_tag}.pyc"
    return f"{folder}/{cached}" if folder else cached


def rewrite_zip(zip_path: Path, compile_bytecode: bool) -> tuple[int, int]:
    """Rewrite `zip_path` without runtime-provided packages or any `__pycache__` of the build
    tree and, with `compile_bytecode`, with every module's .pyc next to it. Lambda's /var/task
    is read-only, so without them every cold start compiles each module it imports (pydantic,
    Powertools, chalicelib) again. Returns (bytes before, after)."""
    before = zip_path.stat().st_size
    rewritten = zip_path.with_suffix(".tmp")
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as target, \
            tempfile.TemporaryDirectory() as work:
        for info in source.infolist():
            if _is_runtime_provided(info.filename) or "__pycache__/" in info.filename:
                continue
            data = source.read(info.filename)
            target.writestr(info, data)
            if compile_bytecode and info.filename.endswith(".py"):
                pyc = _bytecode(data, info.filename, Path(work))
                if pyc is not None:
                    compiled = zipfile.ZipInfo(_pyc_name(info.filename), date_time=info.date_time)
                    compiled.external_attr = info.external_attr
                    target.writestr(compiled, pyc, zipfile.ZIP_DEFLATED)
    rewritten.replace(zip_path)
    return before, zip_path.stat().st_size


def template_path(build_dir: Path) -> Path:
    """The packaged template in `build_dir`."""
    return build_dir / TEMPLATE_NAME


def code_path(build_dir: Path) -> Path:
    """The functions' packaged code in `build_dir`."""
    return build_dir / CODE_NAME


def runtime_matches(template: Path) -> bool:
    """True when every function of the template runs this interpreter's Python (X.Y): only
    then is the bytecode this interpreter writes used, not ignored."""
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"
    resources = json.loads(template.read_text())["Resources"].values()
    runtimes = {r["Properties"].get("Runtime") for r in resources if r.get("Type") == "AWS::Serverless::Function"}
    return runtimes == {here}


def _build(out: Path) -> None:
    """`chalice package` into the new folder `out`, then the zip rewritten there."""
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    chalice = Path(sys.executable).with_name("chalice")
    subprocess.run(
        [str(chalice), "package", "--merge-template", "infra/resources.json", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
    )
    compile_bytecode = runtime_matches(template_path(out))
    if not compile_bytecode:
        print(f"no bytecode in {CODE_NAME}: the functions' runtime is not this interpreter's "
              f"python{sys.version_info.major}.{sys.version_info.minor}")
    before, after = rewrite_zip(code_path(out), compile_bytecode)
    print(f"{CODE_NAME}: {after / 1e6:.1f} MB ({before / 1e6:.1f} MB before leaving out the runtime's "
          f"boto3/botocore{', with bytecode' if compile_bytecode else ''})")


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder`, held while the block runs: one process at a time."""
    lock = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)  # and with it the lock


def main(out_dir: str) -> None:
    """Build into a staging folder inside `out_dir`, then move each file it wrote into
    `out_dir` in one rename, one build at a time (an exclusive lock on `out_dir`). A deploy or a
    test reading the package while `make run` or another test builds it again finds the last
    whole build, never a missing or half-written file; a failed build leaves it as it was."""
    out = (ROOT / out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        for left in out.glob(f"{STAGING_PREFIX}*"):  # from a build that was killed
            shutil.rmtree(left, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=out, prefix=STAGING_PREFIX) as staging:
            staged = Path(staging) / "package"
            _build(staged)
            for built in staged.iterdir():
                os.replace(built, out / built.name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build")

"""The deployment zip (scripts/package.py): the runtime's own packages and the build tree's
`__pycache__` left out, and every module's bytecode added, used as is where the zip is
extracted (Lambda's /var/task is read-only: nothing compiled there is kept)."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scripts import package
from scripts.package import rewrite_zip, runtime_matches

TAG = sys.implementation.cache_tag


def build_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("app.py", "import pkg.mod\nVALUE = pkg.mod.VALUE\n")
        archive.writestr("pkg/__init__.py", "")
        archive.writestr("pkg/mod.py", "VALUE = 'from the zip'\n")
        archive.writestr(f"pkg/__pycache__/mod.{TAG}.pyc", b"stale bytes of the build tree")
        archive.writestr("pkg/template.py", "def broken(:\n")  # shipped as data by some packages
        archive.writestr("pkg/data.json", "{}")
        archive.writestr("boto3/__init__.py", "")
        archive.writestr("boto3-1.0.dist-info/METADATA", "")
    return path


def test_bytecode_is_added_beside_each_module_and_nothing_else_changes(tmp_path):
    zip_path = build_zip(tmp_path / "deployment.zip")
    rewrite_zip(zip_path, compile_bytecode=True)
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(archive.namelist())
        header = archive.read(f"pkg/__pycache__/mod.{TAG}.pyc")[4:8]
    assert names == sorted([
        "app.py", f"__pycache__/app.{TAG}.pyc", "pkg/__init__.py", f"pkg/__pycache__/__init__.{TAG}.pyc",
        "pkg/mod.py", f"pkg/__pycache__/mod.{TAG}.pyc", "pkg/template.py", "pkg/data.json",
    ])
    assert int.from_bytes(header, "little") == 0b01  # hash-based, source not checked (PEP 552)


def test_the_runtime_loads_the_shipped_bytecode_without_compiling(tmp_path):
    """The source is changed after extraction: the value still comes from the shipped bytecode."""
    zip_path = build_zip(tmp_path / "deployment.zip")
    rewrite_zip(zip_path, compile_bytecode=True)
    task = tmp_path / "task"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(task)
    (task / "pkg" / "mod.py").write_text("VALUE = 'compiled on import'\n")
    env = {**os.environ, "PYTHONPATH": str(task), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPYCACHEPREFIX", None)
    out = subprocess.run([sys.executable, "-c", "import app; print(app.VALUE)"], cwd=task, env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "from the zip"


def test_without_bytecode_only_the_left_out_entries_go(tmp_path):
    zip_path = build_zip(tmp_path / "deployment.zip")
    rewrite_zip(zip_path, compile_bytecode=False)
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == ["app.py", "pkg/__init__.py", "pkg/data.json", "pkg/mod.py",
                                              "pkg/template.py"]


def test_bytecode_only_for_a_template_whose_functions_run_this_python(tmp_path):
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"

    def template(*runtimes):
        functions = {f"F{i}": {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": r}}
                     for i, r in enumerate(runtimes)}
        path = tmp_path / "sam.json"
        path.write_text(json.dumps({"Resources": {**functions, "Q": {"Type": "AWS::SQS::Queue", "Properties": {}}}}))
        return path

    assert runtime_matches(template(here, here))
    assert not runtime_matches(template(here, "python3.9"))
    assert not runtime_matches(template("python3.9"))


def test_the_packaged_code_carries_every_file_the_dashboard_page_is_built_from(tmp_path):
    """Chalice ships chalicelib/ whole and the rewrite keeps every file that is not a module:
    the page built from the zip's own dashboard folder is the one built here (a file it names
    but the zip lacks, or one it ships unnamed, fails the build)."""
    from chalicelib.dashboard.page import build_page
    from scripts.package import code_path
    from tests.support.infra import BUILD, ensure_package

    ensure_package()
    folder = "chalicelib/dashboard/"
    with zipfile.ZipFile(code_path(BUILD)) as archive:
        shipped = [n for n in archive.namelist() if n.startswith(folder) and "/" not in n[len(folder):]]
        for name in shipped:
            (tmp_path / name[len(folder):]).write_bytes(archive.read(name))
    assert build_page(tmp_path) == build_page()


class FakeChalice:
    """Stands in for `chalice package OUT`: writes a template and a zip into OUT, having first
    looked at the build folder as a reader running beside the build would see it."""

    def __init__(self, build, version, fail=False):
        self.build, self.version, self.fail = build, version, fail
        self.templates_seen, self.lock_held = {}, None

    def __call__(self, command, **kwargs):
        out = Path(command[-1])
        self.templates_seen = {p.name: p.read_text() for p in self.build.glob("*.json")}
        probe = os.open(self.build, os.O_RDONLY)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.lock_held = False
        except BlockingIOError:
            self.lock_held = True
        finally:
            os.close(probe)
        if self.fail:
            raise subprocess.CalledProcessError(1, command)
        out.mkdir()
        here = f"python{sys.version_info.major}.{sys.version_info.minor}"
        (out / "sam.json").write_text(json.dumps({"version": self.version, "Resources": {
            "F": {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": here}}}}))
        build_zip(out / "deployment.zip")


def build_with(monkeypatch, tmp_path, chalice):
    monkeypatch.setattr(package, "ROOT", tmp_path)
    monkeypatch.setattr(package.subprocess, "run", chalice)
    package.main("build")


def test_a_build_replaces_the_last_one_only_once_it_is_whole(tmp_path, monkeypatch):
    """While a build runs (`make run` beside a test that deploys), the last build stays in
    place, whole, and a second build waits for the lock; then its files replace it, and no
    staging folder is left."""
    build_with(monkeypatch, tmp_path, FakeChalice(tmp_path / "build", 1))
    second = FakeChalice(tmp_path / "build", 2)
    build_with(monkeypatch, tmp_path, second)
    assert json.loads(second.templates_seen["sam.json"])["version"] == 1
    assert second.lock_held
    assert json.loads((tmp_path / "build" / "sam.json").read_text())["version"] == 2
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == ["deployment.zip", "sam.json"]
    with zipfile.ZipFile(tmp_path / "build" / "deployment.zip") as archive:
        assert f"pkg/__pycache__/mod.{TAG}.pyc" in archive.namelist()


def test_a_failed_build_leaves_the_last_one_and_a_killed_builds_staging_is_cleared(tmp_path, monkeypatch):
    build_with(monkeypatch, tmp_path, FakeChalice(tmp_path / "build", 1))
    killed = tmp_path / "build" / f"{package.STAGING_PREFIX}killed"
    (killed / "package").mkdir(parents=True)
    with pytest.raises(subprocess.CalledProcessError):
        build_with(monkeypatch, tmp_path, FakeChalice(tmp_path / "build", 2, fail=True))
    assert json.loads((tmp_path / "build" / "sam.json").read_text())["version"] == 1
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == ["deployment.zip", "sam.json"]

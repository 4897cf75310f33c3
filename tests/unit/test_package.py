"""The deployment zip (scripts/package.py): the runtime's own packages and the build tree's
`__pycache__` left out, and every module's bytecode added, used as is where the zip is
extracted (Lambda's /var/task is read-only: nothing compiled there is kept)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

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

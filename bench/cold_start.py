"""(d) Cold start: the median time to import `app` in a fresh interpreter, from the extracted
deployment zip (the packaged dependencies first on the path, boto3 from the environment as
the Lambda runtime provides it), beside a bare Chalice app's; and the zip's size. Nothing
compiled on import is kept between runs, as on Lambda's read-only /var/task: each run uses the
bytecode the zip ships (scripts/package.py) or compiles the source again."""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

BARE_APP = 'from chalice import Chalice\napp = Chalice(app_name="bare")\n\n\n@app.route("/")\ndef index():\n    return {}\n'
PROBE = "import time; t = time.perf_counter(); import app; print(time.perf_counter() - t)"


def _import_times(directory: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE], cwd=directory,
                             env={"PYTHONPATH": str(directory), "PYTHONDONTWRITEBYTECODE": "1"},
                             capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip()) * 1000)
    return times


def measure(zip_path: Path, runs: int = 15) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as packaged, tempfile.TemporaryDirectory() as bare:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(packaged)
        (Path(bare) / "app.py").write_text(BARE_APP)
        jobpipe = _import_times(Path(packaged), runs)
        chalice_only = _import_times(Path(bare), runs)
    return {
        "runs": runs,
        "import_app_median_ms": round(statistics.median(jobpipe), 1),
        "import_bare_chalice_median_ms": round(statistics.median(chalice_only), 1),
        "zip_bytes": zip_path.stat().st_size,
        "zip_mb": round(zip_path.stat().st_size / 1e6, 2),
    }

"""Measured figures of the README and docs/capacity.md against the bench runs they cite: each
figure is where the page says, equals (as rounded there) what its run's JSON in bench/results/
recorded, and that run is named beside it, so a reader can open the file a figure came from."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BURST_REQUESTS = ("throughput", "requests_per_job", "total")
BURST_INVOCATIONS = ("throughput", "invocations_per_job", "total")
BURST_RATE = ("throughput", "jobs_per_s")
ALONE = ("requests_per_job", "total")
COLD_MEDIAN = ("cold_burst", "median_s")
COLD_RSS = ("cold_burst", "peak_rss_mb")

# (the row's first words, the figure as the README writes it, the run, where the run keeps it)
FIGURES = [
    ("AWS requests per job, 200-job burst", "14.5", "2026-11-30T135114Z", BURST_REQUESTS),
    ("AWS requests per job, 200-job burst", "5.39", "2026-12-01T023516Z", BURST_REQUESTS),
    ("AWS requests per job, 200-job burst", "4.79", "2026-12-01T023402Z", BURST_REQUESTS),
    ("Lambda invocations per job, burst", "4.1", "2026-11-30T135114Z", BURST_INVOCATIONS),
    ("Lambda invocations per job, burst", "1.61", "2026-12-01T023516Z", BURST_INVOCATIONS),
    ("burst throughput", "4.9", "2026-11-30T135114Z", BURST_RATE),
    ("burst throughput", "73.7", "2026-12-01T023516Z", BURST_RATE),
    ("burst throughput", "42.2", "2026-12-01T003125Z", BURST_RATE),
    ("AWS requests, one 10 s job", "38", "2026-11-30T135114Z", ALONE),
    ("AWS requests, one 10 s job", "37", "2026-12-01T023516Z", ALONE),
    ("AWS requests, one 10 s job", "21", "2026-12-01T023402Z", ALONE),
    ("cold burst", "1,214", "2026-11-30T143513Z", COLD_RSS),
    ("cold burst", "0.39", "2026-12-01T023516Z", COLD_MEDIAN),
    ("cold burst", "1,249", "2026-12-01T023516Z", COLD_RSS),
]


def performance_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("\n## Performance\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("row, figure, run, path", FIGURES, ids=[f"{f[1]}@{f[2]}" for f in FIGURES])
def test_each_performance_figure_is_what_the_run_it_names_recorded(row, figure, run, path):
    section = performance_section()
    (line,) = [line for line in section.splitlines() if line.startswith(f"| {row}")]
    assert re.search(rf"(?<![\d.,]){re.escape(figure)}(?![\d,]|\.\d)", line), (figure, line)
    recorded = json.loads((ROOT / "bench" / "results" / f"{run}.json").read_text())
    for key in path:
        recorded = recorded[key]
    decimals = len(figure.partition(".")[2])
    assert round(float(recorded), decimals) == float(figure.replace(",", "")), (run, path, recorded)
    assert run in section, f"the README's performance figures do not name {run}, where {figure} comes from"


def durations_paragraph() -> str:
    capacity = (ROOT / "docs" / "capacity.md").read_text()
    return capacity.split("**Durations**", 1)[1].split("\n\n", 1)[0]


def test_the_capacity_durations_are_those_of_the_run_the_paragraph_names():
    """docs/capacity.md's local p50 durations (APIHandler 187 ms ... JobWorker 633 ms "for its
    500 ms job") were said to come from 2026-11-30T211855Z, whose burst ran 0 ms jobs and
    measured 104, 147, 117 and 477 ms: they are 2026-11-30T143513Z's."""
    paragraph = " ".join(durations_paragraph().split())
    runs = re.findall(r"\d{4}-\d{2}-\d{2}T\d{6}Z", paragraph)
    assert runs, "the durations name no run"
    recorded = json.loads((ROOT / "bench" / "results" / f"{runs[0]}.json").read_text())["throughput"]["durations"]
    shown_by_function = re.findall(r"(APIHandler|EventPublisher|ErpBridge|JobWorker) (\d+) ms", paragraph)
    assert len(shown_by_function) == 4, paragraph
    for function, shown in shown_by_function:
        assert recorded[function]["p50_ms"] == float(shown), (runs[0], function, shown, recorded[function])

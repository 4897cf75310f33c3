"""Measured figures of the README and docs/capacity.md against the bench runs they cite: each
figure is where the page says, equals (as rounded there) what its run's JSON in bench/results/
recorded, and that run is named beside it, so a reader can open the file a figure came from."""
from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal
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
NOW = "2026-12-07T064759Z"
MIDDLING_BEFORE = "2026-12-06T183942Z"
BEFORE_NOW = "2026-12-06T065956Z"
SAME_SPEED = "2026-12-06T052310Z"
FAST_HOUR = "2026-12-06T002232Z"
MIDDLING = "2026-12-05T211929Z"
SLOWER_HOUR = "2026-12-05T191500Z"
NOW_WITHOUT_LEDGER = "2026-12-02T134407Z"
GET_P50 = ("polling", "get_job", "p50_ms")

FIGURES = [
    ("AWS requests per job, 200-job burst", "14.5", "2026-11-30T135114Z", BURST_REQUESTS),
    ("AWS requests per job, 200-job burst", "5.47", NOW, BURST_REQUESTS),
    ("AWS requests per job, 200-job burst", "4.77", NOW_WITHOUT_LEDGER, BURST_REQUESTS),
    ("Lambda invocations per job, burst", "4.1", "2026-11-30T135114Z", BURST_INVOCATIONS),
    ("Lambda invocations per job, burst", "1.66", NOW, BURST_INVOCATIONS),
    ("burst throughput", "4.9", "2026-11-30T135114Z", BURST_RATE),
    ("burst throughput", "68.42", NOW, BURST_RATE),
    ("burst throughput", "54.37", MIDDLING_BEFORE, BURST_RATE),
    ("burst throughput", "40.38", BEFORE_NOW, BURST_RATE),
    ("burst throughput", "50.93", SAME_SPEED, BURST_RATE),
    ("burst throughput", "65.11", FAST_HOUR, BURST_RATE),
    ("burst throughput", "44.62", MIDDLING, BURST_RATE),
    ("burst throughput", "41.46", SLOWER_HOUR, BURST_RATE),
    ("burst throughput", "39.75", "2026-12-03T224425Z", BURST_RATE),
    ("burst throughput", "35.0", "2026-12-03T064752Z", BURST_RATE),
    ("AWS requests, one 10 s job", "38", "2026-11-30T135114Z", ALONE),
    ("AWS requests, one 10 s job", "37", NOW, ALONE),
    ("AWS requests, one 10 s job", "21", NOW_WITHOUT_LEDGER, ALONE),
    ("cold burst", "1,214", "2026-11-30T143513Z", COLD_RSS),
    ("cold burst", "0.39", NOW, COLD_MEDIAN),
    ("cold burst", "1,270", NOW, COLD_RSS),
    ("`GET /jobs/{id}` p50", "20.0", "2026-11-30T135114Z", GET_P50),
    ("`GET /jobs/{id}` p50", "12.8", NOW, GET_P50),
    ("`GET /jobs/{id}` p50", "13.3", MIDDLING_BEFORE, GET_P50),
    ("`GET /jobs/{id}` p50", "11.4", BEFORE_NOW, GET_P50),
    ("`GET /jobs/{id}` p50", "13.4", SAME_SPEED, GET_P50),
    ("`GET /jobs/{id}` p50", "11.8", FAST_HOUR, GET_P50),
    ("`GET /jobs/{id}` p50", "11.4", MIDDLING, GET_P50),
    ("`GET /jobs/{id}` p50", "17.7", SLOWER_HOUR, GET_P50),
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


# the columns of docs/performance.md's table of runs after the first two, and where a run keeps each
RUN_COLUMNS = [
    [ALONE, ("requests_per_job", "invocations_total")],
    [BURST_REQUESTS, BURST_INVOCATIONS],
    [BURST_RATE],
    [("throughput", "cpu_ms_per_job", "emulator"), ("throughput", "cpu_ms_per_job", "functions")],
    [COLD_MEDIAN, ("cold_burst", "max_s"), COLD_RSS],
    [("cold_start", "import_app_median_ms"), ("cold_start", "import_bare_chalice_median_ms")],
    [GET_P50],
]


def runs_table() -> list[tuple[str, list[str]]]:
    page = (ROOT / "docs" / "performance.md").read_text()
    table = page.split("### Every run since the cost work", 1)[1].split("\n\n")[2]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((re.fullmatch(r"`(\S+)`", cells[0]).group(1), cells[2:]))
    return rows


def test_every_figure_of_the_table_of_runs_is_what_its_run_recorded():
    rows = runs_table()
    assert len(rows) >= 5
    for run, cells in rows:
        recorded = json.loads((ROOT / "bench" / "results" / f"{run}.json").read_text())
        assert len(cells) == len(RUN_COLUMNS), (run, cells)
        for cell, paths in zip(cells, RUN_COLUMNS):
            shown = re.findall(r"\d[\d,]*(?:\.\d+)?", cell)
            assert len(shown) == len(paths), (run, cell)
            for figure, path in zip(shown, paths):
                value = recorded
                for key in path:
                    value = value[key]
                written = Decimal(figure.replace(",", ""))
                rounded = Decimal(str(value)).quantize(written, rounding=ROUND_HALF_UP)  # as a reader rounds
                assert rounded == written, (run, path, value, cell)


def test_where_it_stands_names_the_latest_run_of_the_table_at_the_defaults():
    page = (ROOT / "docs" / "performance.md").read_text()
    (heading,) = re.findall(r"^## Where it stands: `bench/results/(\S+)\.json`$", page, re.M)
    at_the_defaults = [run for run, _ in runs_table() if json.loads(
        (ROOT / "bench" / "results" / f"{run}.json").read_text()).get("parameters", {}).get("ErpReceiverDeduplicates", "false") == "false"]
    assert heading == max(at_the_defaults) == NOW

"""`jobpipe artifacts` and `jobpipe artifact`: a job's artifacts listed as the other commands list
jobs, one fetched to stdout or a file, and a clear line and exit code for each way that fails,
with no file left half-written or overwritten unasked (no sockets)."""
import io
import json
import tempfile
from pathlib import Path
import tracemalloc

import pytest
import requests
from rich.console import Console

from jobpipe_client import JobpipeClient
from jobpipe_client.artifacts import ARTIFACT_PAGE_LIMIT, DOWNLOAD_PIECE_BYTES
from jobpipe_client.cli import build_parser, client_from, main
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeS3, FakeSession
from tests.unit.test_cli import ENV, URL, Run
from tests.unit.test_client_artifacts import Generated, appearing_during_the_download, streaming_s3

BUCKET = "https://jobs-bucket.s3.amazonaws.com"
SIGNED = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=5ec2e7"


class Stdout(io.TextIOWrapper):
    """A stdout with a binary buffer under it, as sys.stdout has."""

    def __init__(self):
        super().__init__(io.BytesIO(), encoding="utf-8", write_through=True)

    def bytes(self):
        self.flush()
        return self.buffer.getvalue()


def run_cli(argv, api, s3=None, terminal=False):
    def make_client(args, env):
        client_from(args, env)
        return JobpipeClient(URL, "tok", session=FakeSession({URL: api, BUCKET: s3 or FakeS3()}))

    out, err = Stdout(), io.StringIO()
    console = Console(file=out, width=200, force_terminal=terminal, force_interactive=terminal)
    code = main(argv, environ=ENV, out=console, err=err, make_client=make_client)
    run = Run(code, out.bytes().decode("utf-8", errors="replace"), err.getvalue())
    run.raw = out.bytes()
    return run


@pytest.fixture
def api():
    return FakeApi()


@pytest.fixture
def job(api):
    return api.add("completed")


def in_s3(api, s3, job_id, name, data, **fields):
    url = f"{BUCKET}/jobs/{job_id}/artifacts/0001/{name}"
    s3.objects[url] = data
    return api.add_artifact(job_id, name, data, "application/pdf", url=url + SIGNED, **fields)


def test_artifacts_into_a_pipe_prints_a_header_and_a_line_per_artifact(api, job):
    api.add_artifact(job["id"], "report.csv", b"a,b\n1,2\n", "text/csv; charset=utf-8")
    api.add_artifact(job["id"], "scan.pdf", b"%PDF" * 100, "application/pdf", url=f"{BUCKET}/k{SIGNED}")
    result = run_cli(["artifacts", job["id"]], api)
    assert result.code == 0 and result.err == ""
    header, csv, pdf = result.out.splitlines()
    assert header.split() == ["name", "size", "location", "created_at", "content_type"]
    assert csv.split(maxsplit=4) == ["report.csv", "8", "inline", "2026-01-01T00:00:00.000Z", "text/csv; charset=utf-8"]
    assert pdf.split() == ["scan.pdf", "400", "s3", "2026-01-01T00:00:00.000Z", "application/pdf"]
    assert header.index("size") == csv.index("8")  # columns aligned


def test_artifacts_json_lists_every_page(api, job):
    names = [f"row-{n:04d}.json" for n in range(ARTIFACT_PAGE_LIMIT + 3)]
    for name in names:
        api.add_artifact(job["id"], name, b"{}", "application/json")
    result = run_cli(["artifacts", job["id"], "--json"], api)
    assert result.code == 0
    assert [a["name"] for a in json.loads(result.out)] == names


def test_artifacts_of_a_job_with_none(api, job):
    assert run_cli(["artifacts", job["id"]], api).out.split() == ["name", "size", "location", "created_at",
                                                                   "content_type"]
    assert run_cli(["artifacts", job["id"]], api, terminal=True).out.strip() == "no artifacts"
    assert json.loads(run_cli(["artifacts", job["id"], "--json"], api).out) == []


def test_artifacts_on_a_terminal_is_a_table_with_the_servers_text_escaped(api, job):
    api.add_artifact(job["id"], "report.csv", b"x", "text/csv\x1b]52;c;bad\x07")
    result = run_cli(["artifacts", job["id"]], api, terminal=True)
    assert result.code == 0 and "report.csv" in result.out
    assert "\x1b]52" not in result.out and "\\x1b]52" in result.out


@pytest.mark.parametrize("argv,line", [
    (["artifacts", "no-such-job"], "jobpipe: refused: job no-such-job not found (job_not_found)"),
    (["artifact", "no-such-job", "report.csv"], "jobpipe: refused: job no-such-job not found (job_not_found)"),
    (["artifacts", "a/b"], "jobpipe: refused by the client before sending: 'a/b' is not a job id "
                              "(invalid_job_id)"),
    (["artifact", "a/b", "report.csv"], "jobpipe: refused by the client before sending: 'a/b' is not a job id "
                              "(invalid_job_id)"),
    (["artifact", "JOB", "../report.csv"], "jobpipe: artifact names are 1-128 characters of letters, digits, '.', "
                                           "'_' and '-', starting with a letter or digit, not '../report.csv'"),
    (["artifact", "JOB", "missing.csv"], "jobpipe: refused: job JOB has no artifact 'missing.csv' (artifact_not_found)"),
])
def test_a_bad_job_id_or_name_or_an_unknown_one_is_exit_2_and_one_line(api, argv, line):
    job = api.add("completed")
    api.jobs["JOB"] = {**job, "id": "JOB"}
    result = run_cli(argv, api)
    assert (result.code, result.err_lines, result.out) == (2, [line], "")


def test_artifact_writes_its_bytes_to_stdout_exactly(api, job):
    data = "id;city\nRené;Zürich\r\n".encode()
    api.add_artifact(job["id"], "report.csv", data, "text/csv")
    result = run_cli(["artifact", job["id"], "report.csv"], api)
    assert (result.code, result.err, result.raw) == (0, "", data)


def test_artifact_from_s3_to_a_file(api, job, tmp_path):
    s3 = FakeS3()
    data = bytes(range(256)) * 10
    in_s3(api, s3, job["id"], "scan.pdf", data)
    target = tmp_path / "scan.pdf"
    result = run_cli(["artifact", job["id"], "scan.pdf", "-o", str(target)], api, s3)
    assert result.code == 0, result.err
    assert target.read_bytes() == data
    assert result.out.strip() == f"saved scan.pdf to {target} (2560 bytes)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.pdf"]


def test_artifact_to_stdout_with_a_dash(api, job):
    s3 = FakeS3()
    in_s3(api, s3, job["id"], "scan.pdf", b"\x00\xff%PDF")
    result = run_cli(["artifact", job["id"], "scan.pdf", "-o", "-"], api, s3)
    assert (result.code, result.raw) == (0, b"\x00\xff%PDF")


def test_a_file_that_appears_during_the_download_is_kept_and_the_line_says_so(api, job, tmp_path):
    """The same line as a file there before the download (not `cannot write ...: File exists`,
    which reads as a permissions problem), the file that appeared left as it is."""
    target = tmp_path / "data.bin"
    s3 = appearing_during_the_download(api, job["id"], target)
    result = run_cli(["artifact", job["id"], "data.bin", "-o", str(target)], api, s3)
    assert result.code == 2 and result.err_lines == [f"jobpipe: {target} exists: pass --force to replace it"]
    assert target.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_an_existing_file_is_kept_unless_force_and_nothing_is_asked_for_it(api, job, tmp_path):
    api.add_artifact(job["id"], "report.csv", b"new\n", "text/csv")
    target = tmp_path / "report.csv"
    target.write_bytes(b"mine\n")
    result = run_cli(["artifact", job["id"], "report.csv", "-o", str(target)], api)
    assert result.code == 2 and result.err_lines == [f"jobpipe: {target} exists: pass --force to replace it"]
    assert target.read_bytes() == b"mine\n" and api.requests == []
    target.chmod(0o640)
    result = run_cli(["artifact", job["id"], "report.csv", "-o", str(target), "--force"], api)
    assert result.code == 0 and target.read_bytes() == b"new\n"
    assert target.stat().st_mode & 0o777 == 0o640  # replaced, not made anew with other permissions
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]


@pytest.mark.parametrize("where", ["missing-dir/out.csv", "."])
def test_a_file_that_cannot_be_written_is_exit_2_before_any_request(api, job, tmp_path, where):
    api.add_artifact(job["id"], "report.csv", b"x", "text/csv")
    target = tmp_path / where
    result = run_cli(["artifact", job["id"], "report.csv", "-o", str(target), "--force"], api)
    assert result.code == 2 and len(result.err_lines) == 1 and str(target) in result.err
    assert api.requests == []


@pytest.mark.parametrize("target, said", [("x" * 300, "File name too long"), ("", "not an empty one")],
                         ids=["too-long", "empty"])
def test_a_file_name_the_system_cannot_look_at_is_exit_2_one_line_never_a_traceback(api, job, tmp_path, target,
                                                                                   said):
    """`-o <300 characters>` ended in a traceback (OSError: File name too long, which
    Path.exists raises rather than answering False); `-o ""` said "is a directory"."""
    api.add_artifact(job["id"], "report.csv", b"x", "text/csv")
    result = run_cli(["artifact", job["id"], "report.csv", "-o", target and str(tmp_path / target)], api)
    assert result.code == 2 and len(result.err_lines) == 1 and said in result.err, result.err
    assert api.requests == []


def test_a_failed_download_is_exit_3_one_line_and_leaves_no_file(api, job, tmp_path):
    api.add_artifact(job["id"], "scan.pdf", b"%PDF", "application/pdf", url=f"{BUCKET}/k{SIGNED}")

    def expired(method, url, **_):
        return FakeS3.error(method, url, 403, "AccessDenied", "Request has expired")

    target = tmp_path / "scan.pdf"
    result = run_cli(["artifact", job["id"], "scan.pdf", "-o", str(target)], api, expired)
    assert result.code == 3 and result.out == ""
    assert result.err_lines == [f"jobpipe: artifact 'scan.pdf' of job {job['id']} could not be downloaded from "
                                f"{BUCKET}/k (HTTP 403 AccessDenied: Request has expired)"]
    assert list(tmp_path.iterdir()) == []


def test_on_a_terminal_a_binary_artifact_is_refused_and_text_is_shown_escaped(api, job):
    s3 = FakeS3()
    in_s3(api, s3, job["id"], "scan.pdf", b"%PDF\x00\xff\xfe")
    api.add_artifact(job["id"], "notes.txt", b"line one\n\x1b]52;c;evil\x07 two\n", "text/plain")
    binary = run_cli(["artifact", job["id"], "scan.pdf"], api, s3, terminal=True)
    assert binary.code == 2 and binary.raw == b""
    assert binary.err_lines == ["jobpipe: scan.pdf is not text (7 bytes): pass -o FILE, or send stdout to a "
                                "file or a pipe"]
    text = run_cli(["artifact", job["id"], "notes.txt"], api, terminal=True)
    assert text.code == 0 and "\x1b" not in text.out
    assert text.out.splitlines() == ["line one", "\\x1b]52;c;evil\\x07 two"]


def test_the_help_names_the_commands_and_their_exit_codes():
    text = build_parser().format_help()
    assert "artifacts" in text and "artifact" in text
    assert "download" in text  # exit 3's line
    assert "--force" in build_parser()._subparsers._group_actions[0].choices["artifact"].format_help()


class Sink(io.RawIOBase):
    """A binary stdout that keeps only the count of what it was given."""

    count = 0

    def writable(self):
        return True

    def write(self, data):
        self.count += len(data)
        return len(data)


def peak_bytes(call):
    """`call()`'s result and the most memory Python held above the start while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = call()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_artifact_streams_a_large_one_to_a_file_or_stdout_never_whole_in_memory(api, job, tmp_path):
    size = 24 * DOWNLOAD_PIECE_BYTES + 1
    api.add_artifact(job["id"], "data.bin", b"", "application/octet-stream", url=f"{BUCKET}/k{SIGNED}", size=size)
    target = tmp_path / "data.bin"
    argv = ["artifact", job["id"], "data.bin", "-o", str(target)]
    result, peak = peak_bytes(lambda: run_cli(argv, api, streaming_s3(Generated(size))))
    assert result.code == 0, result.err
    assert result.out.strip() == f"saved data.bin to {target} ({size} bytes)"
    assert target.stat().st_size == size and peak < 4 * DOWNLOAD_PIECE_BYTES

    def make_client(args, env):
        return JobpipeClient(URL, "tok", session=FakeSession({URL: api, BUCKET: streaming_s3(Generated(size))}))

    sink = Sink()
    out = Console(file=io.TextIOWrapper(sink, encoding="utf-8", write_through=True))
    code, peak = peak_bytes(lambda: main(argv[:3], environ=ENV, out=out, err=io.StringIO(), make_client=make_client))
    assert code == 0 and sink.count == size and peak < 4 * DOWNLOAD_PIECE_BYTES


@pytest.mark.parametrize("error,code,line", [
    (KeyboardInterrupt(), 130, "jobpipe: interrupted"),
    (requests.exceptions.ChunkedEncodingError("IncompleteRead"), 3, None),
])
def test_a_download_interrupted_or_cut_off_midway_leaves_no_file(api, job, tmp_path, error, code, line):
    size = 3 * DOWNLOAD_PIECE_BYTES
    api.add_artifact(job["id"], "data.bin", b"", "application/octet-stream", url=f"{BUCKET}/k{SIGNED}", size=size)
    target = tmp_path / "data.bin"
    s3 = streaming_s3(Generated(size, error, fail_after=DOWNLOAD_PIECE_BYTES))
    result = run_cli(["artifact", job["id"], "data.bin", "-o", str(target)], api, s3)
    assert result.code == code and result.out == "" and len(result.err_lines) == 1
    assert result.err_lines == [line] if line else "cut off" in result.err
    assert list(tmp_path.iterdir()) == []


def test_a_large_text_artifact_is_shown_on_a_terminal_line_by_line(api, job):
    lines = [f"row {n}: {'x' * 100}" for n in range(30_000)]  # past one piece
    data = ("\r\n".join(lines) + "\n").encode()
    s3 = FakeS3()
    in_s3(api, s3, job["id"], "rows.txt", data)
    result = run_cli(["artifact", job["id"], "rows.txt"], api, s3, terminal=True)
    assert result.code == 0 and result.out.splitlines() == lines


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_a_descriptors_path_is_written_through_not_replaced(api, job, tmp_path, force):
    """`-o /dev/stdout` (or /dev/fd/N, /proc/self/fd/N) while stdout goes to a file: the link the
    system makes to the descriptor was taken for a file to replace, so the bytes went into a
    temporary file beside the link and were renamed over it (as root, /dev/stdout itself became
    a regular file); without --force it was refused as existing. The bytes go to what the
    descriptor is, whatever it is, with or without --force, and nothing else is written there."""
    api.add_artifact(job["id"], "report.csv", b"id;city\n", "text/csv")
    with open(tmp_path / "out.csv", "ab") as redirected:
        redirected.write(b"header\n")
        redirected.flush()
        target = f"/proc/self/fd/{redirected.fileno()}"
        result = run_cli(["artifact", job["id"], "report.csv", "-o", target, *force], api)
    assert (result.code, result.err) == (0, ""), result.err
    assert (tmp_path / "out.csv").read_bytes() == b"header\nid;city\n"
    assert result.out == ""  # the bytes alone, as with `-o -`: no `saved ...` line after them


def test_a_device_is_written_without_force(api, job):
    """`-o /dev/null` discards the artifact, as curl's does: a device is no file to replace, so
    it needs no --force (refused before as `/dev/null exists`)."""
    api.add_artifact(job["id"], "report.csv", b"x\n", "text/csv")
    result = run_cli(["artifact", job["id"], "report.csv", "-o", "/dev/null"], api)
    assert (result.code, result.err) == (0, ""), result.err


def test_a_target_ending_in_a_slash_names_a_directory_and_no_file_is_made_for_it(api, job, tmp_path):
    """`-o reports/` where reports does not exist: the trailing slash was dropped and a file
    named `reports` written. It names a directory, which is not there: refused, nothing asked."""
    api.add_artifact(job["id"], "report.csv", b"x", "text/csv")
    target = f"{tmp_path}/reports/"
    result = run_cli(["artifact", job["id"], "report.csv", "-o", target], api)
    assert result.code == 2 and result.err_lines == [f"jobpipe: cannot write {target}: there is no directory {target}"]
    assert api.requests == [] and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm")
def test_a_regular_file_under_dev_is_replaced_not_appended_to(api, job):
    """Only a descriptor's link under /dev or /proc is written into: a file in /dev/shm is a
    file like any other, replaced whole with --force."""
    api.add_artifact(job["id"], "report.csv", b"new\n", "text/csv")
    with tempfile.NamedTemporaryFile(dir="/dev/shm", delete=False) as kept:
        kept.write(b"old\n")
    target = Path(kept.name)
    try:
        result = run_cli(["artifact", job["id"], "report.csv", "-o", str(target), "--force"], api)
        assert (result.code, target.read_bytes()) == (0, b"new\n"), result.err
        assert result.out.strip() == f"saved report.csv to {target} (4 bytes)"
    finally:
        target.unlink()

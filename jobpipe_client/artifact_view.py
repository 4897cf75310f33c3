"""`jobpipe artifacts` and `jobpipe artifact`'s output: the listing as a table, a target file
checked before anything is downloaded, and what a terminal may be shown."""
from __future__ import annotations

import codecs
from typing import Any, BinaryIO

from rich.table import Table
from rich.text import Text

from jobpipe_client.artifact_file import check_target as writable
from jobpipe_client.cli_options import UsageError
from jobpipe_client.progress_view import aligned
from jobpipe_client.terminal_text import shown

# content_type last: it is the one value that may hold spaces (`text/csv; charset=utf-8`).
ARTIFACT_COLUMNS = ("name", "size", "location", "created_at", "content_type")
TEXT_CHECK_BYTES = 1024 * 1024  # of a downloaded artifact read at a time to tell text from binary


def artifact_row(artifact: dict[str, Any]) -> list[str]:
    """An artifact's values for the ARTIFACT_COLUMNS, whole, control characters escaped."""
    return [shown("" if artifact.get(column) is None else artifact[column]) for column in ARTIFACT_COLUMNS]


def artifacts_table(artifacts: list[dict[str, Any]]) -> Table:
    """On a terminal: one row per artifact, fitted to its width; every cell is Text, never markup."""
    table = Table(box=None, pad_edge=False)
    for column in ARTIFACT_COLUMNS:
        table.add_column(column, no_wrap=column == "name", justify="right" if column == "size" else "left")
    for artifact in artifacts:
        table.add_row(*map(Text, artifact_row(artifact)))
    return table


def plain_artifacts(artifacts: list[dict[str, Any]]) -> str:
    """Into a pipe or a file: a header and one aligned line per artifact (`awk '{print $1}'`)."""
    return aligned(ARTIFACT_COLUMNS, [artifact_row(a) for a in artifacts])


def check_target(target: str, replace: bool) -> None:
    """UsageError, before anything is downloaded, when `target` cannot take the artifact: it is
    empty, or the download's own check (artifact_file.check_target) refuses it: it exists and
    `replace` is false, is a directory, its directory does not exist, or the system cannot look
    at it (a name too long, a directory not searchable)."""
    if not target:
        raise UsageError("-o takes a file name, not an empty one")
    try:
        writable(target, replace)
    except IsADirectoryError:
        raise UsageError(f"{target} is a directory: -o takes a file name") from None
    except FileExistsError:
        raise UsageError(f"{target} exists: pass --force to replace it") from None
    except OSError as exc:  # its directory missing, or the system cannot look at it
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None


def is_text(held: BinaryIO) -> bool:
    """True when the file holds UTF-8 text without a NUL, read from its start a piece at a time."""
    held.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while piece := held.read(TEXT_CHECK_BYTES):
            if "\x00" in decoder.decode(piece):
                return False
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True

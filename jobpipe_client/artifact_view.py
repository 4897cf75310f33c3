"""`jobpipe artifacts` and `jobpipe artifact`'s output: the listing as a table, and an
artifact's bytes written whole to a file (or refused) so no file is left half-written."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from jobpipe_client.cli_options import UsageError
from jobpipe_client.progress_view import aligned
from jobpipe_client.terminal_text import shown

# content_type last: it is the one value that may hold spaces (`text/csv; charset=utf-8`).
ARTIFACT_COLUMNS = ("name", "size", "location", "created_at", "content_type")


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
    """UsageError, before anything is downloaded, when `target` cannot take the artifact: it
    exists and `replace` is false, it is a directory, or its directory does not exist."""
    path = Path(target)
    if path.is_dir():
        raise UsageError(f"{target} is a directory: -o takes a file name")
    if path.exists() and not replace:
        raise UsageError(f"{target} exists: pass --force to replace it")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {target}: there is no directory {path.parent}")


def write_whole(target: str, data: bytes, replace: bool) -> None:
    """Writes `data` to `target` whole or not at all. A new file is created exclusively (one that
    appeared meanwhile is refused as an existing one is); a file replaced (`replace`) is written
    beside it and renamed over it, keeping its permissions, so a failed write leaves it as it
    was. Something that is not a file (a device, a pipe) is written to as it is. UsageError
    for what the file system refuses."""
    path = Path(target)
    try:
        if replace and path.exists():
            if not path.is_file():
                with open(path, "wb") as stream:
                    stream.write(data)
                return
            _replace(path, data)
            return
        try:
            stream = open(path, "xb")
        except FileExistsError:
            raise UsageError(f"{target} exists: pass --force to replace it") from None
        with stream:
            try:
                stream.write(data)
            except BaseException:
                stream.close()
                path.unlink(missing_ok=True)
                raise
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None


def _replace(path: Path, data: bytes) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

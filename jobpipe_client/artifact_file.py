"""An artifact written to a file whole or not at all: its bytes go into a temporary file beside
the target as they arrive, and that file takes the target's name only once they are all in and
checked. A failed or interrupted download (Ctrl-C too) removes it, and leaves a file it was to
replace as it was."""
from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO, Callable, Union

PathTarget = Union[str, "os.PathLike[str]"]
# A file system without hard links (some network or FAT mounts) cannot place a file without
# replacing one: there the target is checked just before the rename instead.
_NO_LINKS = {errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def written_in_place(path: Path) -> bool:
    """True when `path` is no file to replace but one to write into as it is: something there
    that is not a regular file (a device, a pipe, a terminal), or a link the system keeps under
    /dev or /proc (`/dev/stdout`, `/dev/fd/3`, `/proc/self/fd/3`: links to whatever a descriptor
    is, a file too, which a rename would replace with a file of its own). A regular file in
    /dev/shm is replaced as any other."""
    if not path.exists():
        return False
    return not path.is_file() or (path.is_symlink() and Path(os.path.abspath(path)).parts[1:2] in (("dev",), ("proc",)))


def check_target(target: PathTarget, overwrite: bool) -> Path:
    """`target` as a Path when a download may write it; before anything is asked for:
    IsADirectoryError for a directory, FileExistsError for an existing file unless `overwrite`
    (a device or a descriptor's path, written in place, is no file to replace), FileNotFoundError
    when its directory does not exist."""
    path = Path(target)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(target))
    if written_in_place(path):
        return path
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(errno.EEXIST, "exists", str(target))
    if os.fspath(target).endswith(("/", os.sep)):  # a directory's name, and none is there
        raise FileNotFoundError(errno.ENOENT, f"there is no directory {os.fspath(target)}", str(target))
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"there is no directory {path.parent}", str(target))
    return path


def write_whole(path: Path, overwrite: bool, fill: Callable[[BinaryIO], int]) -> int:
    """Calls `fill(stream)` with a temporary file beside `path` and, once it returns (the count
    of bytes it wrote), gives that file `path`'s name: replacing one (`overwrite`, its permissions
    kept) or, without `overwrite`, only where none has appeared meanwhile (FileExistsError).
    Something there that is not a file (a device, a pipe) or a descriptor's path is written to
    as it is (appended to: `{ echo header; ... -o /dev/stdout; } > file` keeps the header).
    Whatever `fill` raises, the temporary file is removed and the exception passes through."""
    if written_in_place(path):
        with open(path, "ab") as stream:
            return fill(stream)
    mode = stat.S_IMODE(path.stat().st_mode) if overwrite and path.exists() else None
    part = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    # 0o666 less the umask, as open() makes a file (mkstemp's would be 0o600).
    handle = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            count = fill(stream)
            stream.flush()
            os.fsync(stream.fileno())  # the bytes are on disk before the name says they are there
        if mode is not None:
            os.chmod(part, mode)
        _place(part, path, overwrite)
        return count
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _place(part: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(part, path)
        return
    try:
        os.link(part, path)  # fails when a file of that name appeared meanwhile: never replaced
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if path.exists() or path.is_symlink():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.replace(part, path)
        return
    part.unlink()

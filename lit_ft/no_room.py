"""A write that found no room (a full disk, a used-up quota, the file-size limit `ulimit -f`), as one line.

Every lit_ft output is written to a temporary name and renamed (`lit_ft.io`), so a failed write leaves the
previous good file in place; the message says where the room is missing, about how much is needed and what to do.
The `lit_ft` CLI ignores SIGXFSZ (whose default action kills the process without a word; CPython ignores it at
startup too), so a write over the file-size limit fails with EFBIG and is reported here too.
"""

from __future__ import annotations

import errno
import resource
import shutil
from pathlib import Path

from lit_ft.errors import UserError

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file is larger than the file-size limit",
}


class NoRoomError(UserError):
    """An output could not be written for lack of room; the previous file (if any) is unchanged."""


def no_room_cause(err: BaseException) -> OSError | None:
    """The first OSError in an exception's cause/context chain that says there is no room, if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in _REASONS:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def no_room_error(cause: OSError, path: str | Path, needed: int | None, what: str = "file") -> NoRoomError:
    """The one-line error for `cause` while writing `path`, with the bytes it needs (`needed`: an estimate)."""
    path = Path(path)
    directory = path.parent.absolute()
    need = f"about {needed:,} bytes" if needed else "room"
    if cause.errno == errno.EFBIG:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        shown = "unlimited" if limit == resource.RLIM_INFINITY else f"{limit:,} bytes"
        return NoRoomError(f"could not write the {what} '{path}': {_REASONS[cause.errno]} ({shown}); it needs "
                           f"{need} in {directory}: raise the limit (`ulimit -f unlimited`) and run again")
    try:
        free = f"{shutil.disk_usage(directory).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    reason = _REASONS.get(cause.errno or 0, cause.strerror or "no room")
    return NoRoomError(f"could not write the {what} '{path}': {reason}; it needs {need} in {directory} ({free}): "
                       "free space there, or write the run to another disk (--trainer.default_root_dir)")


def file_size(*paths: str | Path | None) -> int:
    """The largest size among the files that exist (0 when none does)."""
    sizes = [Path(p).stat().st_size for p in paths if p and Path(p).is_file()]
    return max(sizes, default=0)

"""One process per run directory: `fit`, `tune` and `export` hold an exclusive lock on the directories they write.

The lock is `fcntl.flock` on `<dir>/.lit_ft.lock`, a file holding the holder's pid and command (the message a
second process is refused with names them). The operating system releases a flock when its holder ends, however
it ends (kill -9 included), so no stale lock outlives a process: the file may stay behind, its lock does not. A
holder removes the file when it lets go; a process that opened the file just before is told so by the file's
identity (`_still_there`) and opens the new one, so two processes never both hold a directory.

Multi-process launches take one lock per run: only the launching process (global rank 0: no `RANK`,
`LOCAL_RANK`, `NODE_RANK`, `GROUP_RANK` or `SLURM_PROCID` other than 0) locks; Lightning starts the other ranks
of a DDP run with `LOCAL_RANK` set, and they write nothing that rank 0 does not coordinate.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from lit_ft.errors import UserError

LOCK_FILE = ".lit_ft.lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


class DirectoryLock:
    """A held lock on `directory`; `release()` lets go (idempotent)."""

    def __init__(self, directory: Path, fd: int | None, created: bool = False) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE
        self._fd: int | None = fd
        self._created = created  # the lock made the directory: a run that wrote nothing leaves none behind

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _still_there(fd, self.path):
                self.path.unlink()  # while still held: whoever opens it next gets a fresh file
        except OSError:
            pass
        os.close(fd)  # closing the last descriptor releases the flock
        if self._created:
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # only if empty


def is_launching_process() -> bool:
    """Whether this process is global rank 0 of its launch (or not part of one)."""
    return all(os.environ.get(name, "0") in ("", "0") for name in RANK_VARIABLES)


def lock_directory(directory: str | Path, command: str, writing: bool = True) -> DirectoryLock:
    """Lock `directory` (created if missing) for this process, or refuse with one line naming the holder.

    Args:
        directory: The run or output directory.
        command: What this process runs (`lit_ft fit ...`), recorded for the message a second process gets.
        writing: Whether this process writes the directory; a directory only read (the run an export reads)
            that this process may not write is not locked: no lit_ft process can write it either.
    """
    import fcntl

    where = Path(directory)
    created = writing and not where.exists()
    if writing:
        where.mkdir(parents=True, exist_ok=True)
    path = where / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            if writing:
                raise
            return DirectoryLock(where, None)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UserError(f"{where} is in use by another lit_ft process ({holder}); one process at a time writes "
                            "a directory: wait for it to end (or stop it), or write to another directory") from None
        if _still_there(fd, path):
            break
        os.close(fd)  # the previous holder removed this file as we opened it: lock the one there now
    record = {"pid": os.getpid(), "command": command[:300], "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(record).encode())
    return DirectoryLock(where, fd, created)


@contextlib.contextmanager
def holding(directory: str | Path, command: str, writing: bool = True) -> Iterator[DirectoryLock]:
    """`lock_directory` for the length of a `with` block."""
    lock = lock_directory(directory, command, writing)
    try:
        yield lock
    finally:
        lock.release()


def _still_there(fd: int, path: Path) -> bool:
    try:
        held, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


def _read_holder(fd: int) -> str:
    """`pid N: COMMAND` from the holder's record (it may be mid-write: then only what is known)."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        record = {}
    pid = record.get("pid", "unknown") if isinstance(record, dict) else "unknown"
    command = record.get("command") if isinstance(record, dict) else None
    return f"pid {pid}: {command}" if command else f"pid {pid}"

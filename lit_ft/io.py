"""File helpers: every output is written to a temporary name in its own directory and renamed into place.

A rename within one directory is atomic, so a reader (or a resumed run) sees the previous good file or the
new one, never half a file. Temporary names carry the writer's process id (`.<name>.lit_ft-tmp-<pid>-...`);
`clean_stale_temps` removes those whose process is gone (a killed run), at the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lit_ft.no_room import NoRoomError, file_size, no_room_cause, no_room_error

TMP_MARK = ".lit_ft-tmp-"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> None:
    """Write one JSON object per line, atomically (temporary file, then rename)."""
    write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), path)


def write_bytes(data: bytes, path: str | Path) -> None:
    with atomic_file(path, size=len(data)) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(text: str, path: str | Path) -> None:
    write_bytes(text.encode("utf-8"), path)


def temp_name(path: str | Path) -> Path:
    """A hidden sibling of `path` for this process: `.<name>.lit_ft-tmp-<pid>-<random>`."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}")


@contextlib.contextmanager
def atomic_file(path: str | Path, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is flushed to disk and renamed to `path`.

    On any failure (including KeyboardInterrupt) the temporary file is removed and `path` is left as it was; a
    full disk or the file-size limit is a `NoRoomError` naming the directory and the bytes needed (`size` when
    the caller knows it, else about: what was written, or the previous file's size).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException as err:
        needed = size or file_size(tmp, path)
        remove_path(tmp)
        cause = no_room_cause(err)
        if cause is not None and not isinstance(err, NoRoomError):
            raise no_room_error(cause, path, needed) from err
        raise


def commit(tmp: Path, path: Path) -> None:
    """Put the finished temporary file (or directory) `tmp` in place of `path`."""
    if tmp.is_dir():
        replace_dir(tmp, path)
        return
    _fsync(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


def replace_dir(tmp: Path, target: Path) -> None:
    """Move a finished directory `tmp` to `target`, replacing an existing `target` (kept aside until the swap)."""
    old = temp_name(target) if target.exists() else None
    if old is not None:
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        remove_path(old)


def remove_path(path: Path) -> None:
    """Remove a file or a whole tree, quietly (also non-recursive for deep trees: shutil walks iteratively)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale_temps(directory: str | Path) -> list[Path]:
    """Remove temporary outputs left in `directory` by processes that no longer run (a killed write)."""
    removed: list[Path] = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for entry in directory.glob(f".*{TMP_MARK}*"):
        pid = entry.name.rpartition(TMP_MARK)[2].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            remove_path(entry)
            removed.append(entry)
    return removed


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())



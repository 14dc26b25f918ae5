"""Atomic file writes: a run interrupted half-way never leaves a half-written file behind, and two
processes writing one path at once both finish with a whole file (the last one wins)."""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _mode_for(path: Path) -> int:
    """The existing file's permission bits, else what a new file gets under the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


STALE_AFTER_S = 3600  # a temporary file this old is a killed write's, whoever made it


def _writer_pid(temp: Path) -> int | None:
    """The process id in a temporary file's name (``.<name>.<pid>.<random>.tmp``), if it has one."""
    parts = temp.name.rsplit(".", 3)
    return int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def stray_temp_files(path: Path) -> list[Path]:
    """Temporary files ``.<name>.*.tmp`` beside ``path`` that killed writes left behind: their
    process is gone, or they are older than ``STALE_AFTER_S``. A running writer's are not strays."""
    strays = []
    for temp in sorted(path.parent.glob(f".{path.name}.*.tmp")):
        try:
            age = time.time() - temp.stat().st_mtime
        except FileNotFoundError:
            continue  # its writer just finished
        pid = _writer_pid(temp)
        if age > STALE_AFTER_S or (pid is not None and not _running(pid)):
            strays.append(temp)
    return strays


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The result keeps the mode of the file it replaces (a new file follows the umask). The temporary
    file is named after this process, and only the temporary files of earlier, killed writes of
    ``path`` (``stray_temp_files``) are removed: a concurrent writer's are left to finish.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stray in stray_temp_files(path):
        stray.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of the bytes of the file ``path`` (``hashlib.file_digest``, read in chunks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()

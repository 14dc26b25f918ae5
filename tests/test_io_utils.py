"""Atomic writes: the file mode is kept (new files follow the umask), stray temp files are cleaned."""
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from helpers.io_utils import STALE_AFTER_S, atomic_path, write_text_atomic


def test_new_files_follow_the_umask_and_existing_files_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "new.txt", "a")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        (tmp_path / "script.sh").write_text("#!/bin/sh\n")
        os.chmod(tmp_path / "script.sh", 0o750)
        write_text_atomic(tmp_path / "script.sh", "#!/bin/sh\necho\n")
        assert (tmp_path / "script.sh").stat().st_mode & 0o777 == 0o750
        assert (tmp_path / "script.sh").read_text().endswith("echo\n")
    finally:
        os.umask(old)


def _dead_pid() -> int:
    """The pid of a process that has finished."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stray_temp_files_of_a_killed_write_are_cleaned_on_the_next_save(tmp_path):
    dead = tmp_path / f".m.pt.{_dead_pid()}.abc123.tmp"  # its writer is gone
    dead.write_bytes(b"half a file")
    old = tmp_path / ".m.pt.abc123.tmp"  # no pid in the name, and over an hour old
    old.write_bytes(b"half a file")
    os.utime(old, (time.time() - 2 * STALE_AFTER_S,) * 2)
    running = tmp_path / f".m.pt.{os.getppid()}.def456.tmp"  # a running writer's: left to finish
    running.write_bytes(b"being written")
    other = tmp_path / ".other.pt.xyz.tmp"  # another file's: left alone
    other.write_bytes(b"x")
    write_text_atomic(tmp_path / "m.pt", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, ".other.pt.xyz.tmp", "m.pt"])


def _save_repeatedly(path: str, marker: int, start: float, seconds: float) -> None:
    from helpers.io_utils import write_text_atomic as write

    time.sleep(max(0.0, start - time.time()))  # both writers start together
    while time.time() < start + seconds:
        write(path, str(marker) * 100_000)


def test_concurrent_saves_to_one_path_both_finish_and_leave_a_whole_file(tmp_path):
    target = tmp_path / "m.json"
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 3.0  # after both have imported
    writers = [ctx.Process(target=_save_repeatedly, args=(str(target), marker, start, 1.5)) for marker in (1, 2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    assert [w.exitcode for w in writers] == [0, 0]  # neither lost its temporary file to the other
    text = target.read_text()
    assert text in ("1" * 100_000, "2" * 100_000)  # whole: one writer's, never a mix or a part
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    write_text_atomic(tmp_path / "r.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "r.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"] and (tmp_path / "r.json").read_text() == "old"

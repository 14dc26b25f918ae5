"""Atomic writes: the file mode is kept (new files follow the umask), stray temp files are cleaned."""
import os

import pytest

from helpers.io_utils import atomic_path, write_text_atomic


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


def test_stray_temp_files_of_a_killed_write_are_cleaned_on_the_next_save(tmp_path):
    stray = tmp_path / ".m.pt.abc123.tmp"
    stray.write_bytes(b"half a file")
    other = tmp_path / ".other.pt.xyz.tmp"  # another file's: left alone
    other.write_bytes(b"x")
    write_text_atomic(tmp_path / "m.pt", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.xyz.tmp", "m.pt"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    write_text_atomic(tmp_path / "r.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "r.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"] and (tmp_path / "r.json").read_text() == "old"

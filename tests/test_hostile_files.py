"""Crafted, hostile model files (``tests/hostile_files.py``): each raises a ``ModelFileError``
subclass naming the file, runs no pickled code, never advises ``weights_only=False``, and stays far
below 1 GB of memory. They run in one child process, so its memory high-water mark is its own."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

PEAK_MB = 200  # the largest case (the LZMA bomb) inflates at most 64 MiB before it is refused
RUNNER = Path(__file__).with_name("hostile_files.py")


@pytest.fixture(scope="module")
def rows():
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure peak memory per case")
    done = subprocess.run([sys.executable, str(RUNNER), "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {r["case"]: r for r in json.loads(done.stdout.splitlines()[-1])}


def test_every_crafted_file_is_refused_with_a_model_file_error_naming_it(rows):
    assert len(rows) >= 16
    for name, row in rows.items():
        assert row["model_file_error"], f"{name}: {row['error']}: {row['message'][:300]}"
        assert "case." in row["message"], f"{name}: the message does not name the file: {row['message']}"
        assert "weights_only=False" not in row["message"] and "set to `False`" not in row["message"], name


def test_no_crafted_file_costs_more_than_a_bounded_amount_of_memory_or_time(rows):
    for name, row in rows.items():
        assert row["peak_mb"] < PEAK_MB, f"{name}: {row['peak_mb']} MB"
        assert row["seconds"] < 10, f"{name}: {row['seconds']} s"


def test_pickled_code_never_runs(rows):
    assert not any(row["pickle_ran"] for row in rows.values())
    assert "pickled code" in rows["pt: pickle that runs os.system"]["message"]


@pytest.mark.parametrize("case, words", [
    ("pt: meta nested 200,000 lists deep", "levels deep"),
    ("sparse: header nested 200,000 lists deep", "levels deep"),
    ("pt: a 20000x20000 stride-0 tensor (4 bytes stored)", "400,000,000 values"),
    ("pt: config with 100,000-wide layers, signed", "not built"),
    ("ccz: LZMA bomb inflating to 1 GiB", "inflates past"),
    ("pt: file larger than any model (sparse on disk)", "not read"),
    ("sparse: shape that does not match its bytes", "do not fit shape"),
])
def test_each_refusal_says_what_was_wrong(rows, case, words):
    assert words in rows[case]["message"]

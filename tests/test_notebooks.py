"""Every numbered notebook runs under papermill in QUICK mode and writes its outputs, into a
temporary folder: the committed FULL figures, weights and results are left untouched. A notebook
that writes no weights or results (08 only reads results) says so in its metadata:
``"course": {"writes": ["figures"]}``."""
import hashlib
import json

import pytest

from helpers.paths import REPO_ROOT
from helpers.run_notebooks import numbered_notebooks, run_one


def _fingerprint(folders=("figures", "weights", "results")) -> dict:
    return {str(p.relative_to(REPO_ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted((REPO_ROOT / folder).glob("*")) if p.is_file()}


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", numbered_notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_in_quick_mode_and_writes_its_outputs(notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "outputs"))
    before = _fingerprint()
    run_one(notebook, tmp_path / notebook.name, quick=True)
    prefix = notebook.name[:2]
    out = tmp_path / "outputs"
    expected = json.loads(notebook.read_text())["metadata"].get("course", {}).get(
        "writes", ["figures", "weights", "results"])
    assert list((out / "figures").glob(f"{prefix}_*.png")), "no figure written"
    if "weights" in expected:
        assert list((out / "weights").glob(f"{prefix}_*")), "no weights written"
    results = list((out / "results").glob(f"{prefix}_*.json"))
    assert results or "results" not in expected, "no results written"
    for path in results:
        records = json.loads(path.read_text())
        assert records and all(r["quick"] is True for r in records)
    assert _fingerprint() == before, "a QUICK run changed the committed outputs"

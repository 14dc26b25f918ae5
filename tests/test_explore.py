"""The explore path, as a person runs a notebook: 01 loads the committed baseline instead of training,
08 shows its live budget view; both write only into their own output folder (committed files untouched)."""
import json

import pytest

from helpers.paths import NOTEBOOKS_DIR, REPO_ROOT
from helpers.run_notebooks import run_explore
from test_notebooks import _fingerprint


def _outputs(path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                   for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []))


@pytest.mark.notebook
def test_the_explore_path_loads_committed_files_and_leaves_them_untouched(tmp_path, monkeypatch):
    if not (REPO_ROOT / "weights" / "01_baseline.pt").is_file():
        pytest.skip("no committed baseline to explore")
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "outputs"))
    before = _fingerprint()
    outcomes = run_explore([NOTEBOOKS_DIR / "01_baseline_training.ipynb", NOTEBOOKS_DIR / "08_comparison.ipynb"],
                           runs_dir=tmp_path / "runs")
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.detail for o in outcomes]
    text = _outputs(tmp_path / "runs" / "explore" / "01_baseline_training.ipynb")
    assert "explore: loaded 01_baseline.pt" in text and "training time" not in text  # loaded, not trained
    executed = json.loads((tmp_path / "runs" / "explore" / "08_comparison.ipynb").read_text())
    assert not any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in executed["cells"])
    assert "the live view appears when you run this cell in Jupyter" in _outputs(
        tmp_path / "runs" / "explore" / "08_comparison.ipynb")  # the defaults drawn once, headless
    records = json.loads((tmp_path / "outputs" / "results" / "01_baseline.json").read_text())
    assert all(r["quick"] is True for r in records)  # explore results never pass for FULL ones
    assert _fingerprint() == before, "an explore run changed the committed outputs"

"""Colab: the README badges and each notebook's Colab cell come from REPO_URL, and the cell works.

The cell is run as Colab runs it (a stand-in ``google.colab`` module) in a child virtual environment
that sees this one's packages but installs into itself, so the editable install of this checkout is
never touched; it clones a local repository holding this checkout's ``helpers`` (a file:// URL)."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from helpers.colab import (COLAB_DIR_ENV, REPO_URL, REPO_URL_ENV, badge_link, colab_cell, main,
                           stale_files, sync_notebook)
from helpers.paths import NOTEBOOKS_DIR, REPO_ROOT

FORK = "https://github.com/someone/compression-fork"
FIRST = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))[0]


def cells_after_sync(notebook_text: str, url: str) -> tuple[list, list]:
    before = nbformat.reads(notebook_text, as_version=4).cells
    after = nbformat.reads(sync_notebook(notebook_text, url), as_version=4).cells
    return before, after


def test_readme_badges_and_colab_cells_match_repo_url(capsys):
    assert main(["--check"]) == 0, capsys.readouterr().err


def test_a_fork_changes_only_the_colab_cell_and_the_badge_links(tmp_path):
    (tmp_path / "notebooks").mkdir()
    shutil.copy(REPO_ROOT / "README.md", tmp_path / "README.md")
    shutil.copy(FIRST, tmp_path / "notebooks" / FIRST.name)
    stale = stale_files(tmp_path, FORK)
    assert set(stale) == {tmp_path / "README.md", tmp_path / "notebooks" / FIRST.name}
    readme = stale[tmp_path / "README.md"]
    assert badge_link(f"notebooks/{FIRST.name}", FORK) in readme
    assert "compression-course/model-compression-course/blob" not in readme
    before, after = cells_after_sync(FIRST.read_text(), FORK)
    changed = [i for i, (b, a) in enumerate(zip(before, after)) if b != a]
    first_code = next(i for i, c in enumerate(before) if c.cell_type == "code")
    assert len(before) == len(after) and first_code in changed
    assert after[first_code].source == colab_cell(FORK) and FORK in after[first_code].source
    for i in changed:
        if i != first_code:  # the rest only where a markdown cell holds a badge link
            assert before[i].cell_type == "markdown" and "colab.research.google.com" in before[i].source
            assert before[i].source.replace(REPO_URL.split("github.com/")[1], "someone/compression-fork") \
                == after[i].source
    for path, text in stale.items():
        path.write_text(text)
    assert stale_files(tmp_path, FORK) == {}


def test_an_up_to_date_notebook_is_byte_identical():
    text = FIRST.read_text()
    assert sync_notebook(text, REPO_URL) == text


def test_bad_urls_and_notebooks_without_a_colab_cell_are_refused():
    with pytest.raises(ValueError, match="is not https://github.com/<owner>/<name>"):
        colab_cell("https://gitlab.com/someone/fork")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch")])
    with pytest.raises(ValueError, match="07_x.ipynb: the first code cell is not the Colab cell"):
        sync_notebook(nbformat.writes(nb), REPO_URL, "07_x.ipynb")


# --- the cell itself, with a stand-in google.colab ---------------------------------------------

RUN_AS_COLAB = r"""
import json, os, sys, types
from IPython.core.inputtransformer2 import TransformerManager
google = types.ModuleType("google"); google.colab = types.ModuleType("google.colab")
sys.modules.update({"google": google, "google.colab": google.colab})
namespace = {}
for source in json.loads(sys.argv[1]):  # the Colab cell, then the cell after it
    exec(compile(TransformerManager().transform_cell(source), "<cell>", "exec"), namespace)
print(json.dumps({"helpers": sys.modules["helpers"].__file__, "cwd": os.getcwd()}))
"""

RUN_ELSEWHERE = r"""
import importlib.util, json, os, sys
exec(compile(sys.argv[1], "<colab cell>", "exec"), {})
print(json.dumps({"helpers": importlib.util.find_spec("helpers").origin, "cwd": os.getcwd()}))
"""


def child_venv(folder: Path) -> Path:
    """A venv that imports this one's packages (appended, without their .pth hooks) but installs into itself."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "parent_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def source_repository(folder: Path) -> Path:
    """A git repository holding this checkout's helpers package and pyproject.toml (what the cell installs)."""
    shutil.copytree(REPO_ROOT / "helpers", folder / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", folder)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-C", str(folder)]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "course"]):
        subprocess.run(git + args, check=True)
    return folder


def editable_install_files() -> dict[str, float]:
    site = Path(sysconfig.get_paths()["purelib"])
    return {p.name: p.stat().st_mtime for p in site.glob("*compression_course_helpers*")}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_colab_cell_clones_installs_and_the_next_cell_imports_helpers_from_the_clone(tmp_path):
    nb = nbformat.read(str(FIRST), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "helpers" in code[1], "the cell after the Colab cell should import helpers"
    python = child_venv(tmp_path / "venv")
    source = source_repository(tmp_path / "source")
    clone, work = tmp_path / "content" / "model-compression-course", tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # helpers must come from the clone
    env.update({REPO_URL_ENV: source.as_uri(), COLAB_DIR_ENV: str(clone), "MPLBACKEND": "Agg",
                # the cell's `pip install -e` without fetching a build backend (Colab has the network)
                "PIP_NO_BUILD_ISOLATION": "0", "PIP_NO_INDEX": "1"})
    before = editable_install_files()

    colab = subprocess.run([str(python), "-c", RUN_AS_COLAB, json.dumps(code[:2])], cwd=work, env=env,
                           capture_output=True, text=True, timeout=300)
    assert colab.returncode == 0, colab.stderr[-3000:]
    seen = json.loads(colab.stdout.strip().splitlines()[-1])
    assert Path(seen["helpers"]) == clone / "helpers" / "__init__.py"
    assert Path(seen["cwd"]) == clone
    assert (clone / ".git").is_dir()

    # Outside Colab the cell does nothing; a later session (a restarted kernel) imports the clone's
    # helpers from anywhere, through the editable install the cell made in the child venv.
    env.update({REPO_URL_ENV: "file:///nowhere", COLAB_DIR_ENV: str(tmp_path / "not-made")})
    later = subprocess.run([str(python), "-c", RUN_ELSEWHERE, code[0]], cwd=work, env=env,
                           capture_output=True, text=True, timeout=300)
    assert later.returncode == 0, later.stderr[-3000:]
    seen = json.loads(later.stdout.strip().splitlines()[-1])
    assert Path(seen["helpers"]) == clone / "helpers" / "__init__.py" and Path(seen["cwd"]) == work
    assert not (tmp_path / "not-made").exists()
    assert editable_install_files() == before, "the cell touched this venv's editable install"


def test_the_colab_cell_installs_torchao_only_when_colab_lacks_it(tmp_path, monkeypatch):
    import importlib.util
    import types

    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv(COLAB_DIR_ENV, str(tmp_path))  # already cloned: no git, no pip -e
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: calls.append(args))
    monkeypatch.chdir(tmp_path)
    cell = colab_cell()
    exec(cell, {})
    assert calls == []  # this venv has torchao
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else object())
    exec(cell, {})
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "torchao"]]  # no --upgrade, no torch pin

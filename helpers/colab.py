"""The course on Colab: the repository URL in one place; the README badges and every notebook's
Colab cell (its first code cell) are made from it.

    python -m helpers.colab --check   # exit 1 when a badge or a Colab cell is out of date
    python -m helpers.colab --write   # rewrite them from REPO_URL (a fork edits REPO_URL, then runs this)

The Colab cell clones the repository and installs ``helpers`` without dependencies, so Colab's own
torch and ipywidgets are kept, and installs torchao (PT2E int8, notebooks 06 and 07) when Colab lacks it. ``$COURSE_REPO_URL`` and ``$COURSE_COLAB_DIR`` override the URL and
the clone's folder (a test points them at a local clone).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .io_utils import write_text_atomic
from .paths import REPO_ROOT

REPO_URL = "https://github.com/compression-course/model-compression-course"
BRANCH = "main"
COLAB_DIR = "/content/model-compression-course"
REPO_URL_ENV = "COURSE_REPO_URL"
COLAB_DIR_ENV = "COURSE_COLAB_DIR"
CELL_MARKER = "# Colab only:"  # the first line of every notebook's Colab cell
BADGE_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^\s()\"'\]]+?/blob/[^\s/()\"'\]]+/"
                        r"(notebooks/[^\s/()\"'\]]+\.ipynb)")
GITHUB_URL = re.compile(r"https://github\.com/([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:\.git)?/?")

COLAB_CELL_TEMPLATE = '''\
# Colab only: fetch the course, install its helpers (no dependencies) and, if Colab lacks it, torchao
# (the int8 of notebooks 06 and 07); Colab's own torch and ipywidgets are kept.
# The URL is REPO_URL in helpers/colab.py; $COURSE_REPO_URL and $COURSE_COLAB_DIR override it.
import importlib.util, os, subprocess, sys
if "google.colab" in sys.modules:
    repo_url = os.environ.get("{url_env}", "{repo_url}")
    course_dir = os.environ.get("{dir_env}", "{colab_dir}")
    if not os.path.isdir(course_dir):
        subprocess.run(["git", "clone", "--depth=1", repo_url, course_dir], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", course_dir], check=True)
    if importlib.util.find_spec("torchao") is None:  # torchao declares no torch requirement: Colab's torch stays
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "torchao"], check=True)
    os.chdir(course_dir)  # so `import helpers` finds the package in this session already'''


def github_repo(repo_url: str = REPO_URL) -> str:
    """``owner/name`` of a ``https://github.com/owner/name`` URL (Colab opens notebooks from GitHub)."""
    match = GITHUB_URL.fullmatch(repo_url)
    if not match:
        raise ValueError(f"REPO_URL {repo_url!r} is not https://github.com/<owner>/<name>: "
                         f"Colab's badges open notebooks from GitHub")
    return match.group(1)


def badge_link(notebook_path: str, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """The "Open in Colab" link of ``notebooks/NN_name.ipynb``."""
    return f"https://colab.research.google.com/github/{github_repo(repo_url)}/blob/{branch}/{notebook_path}"


def colab_cell(repo_url: str = REPO_URL, colab_dir: str = COLAB_DIR) -> str:
    """The source of every notebook's first code cell."""
    github_repo(repo_url)  # a clear error for a URL the badges could not use
    return COLAB_CELL_TEMPLATE.format(url_env=REPO_URL_ENV, repo_url=repo_url, dir_env=COLAB_DIR_ENV,
                                      colab_dir=colab_dir)


def sync_badges(text: str, repo_url: str = REPO_URL) -> str:
    """``text`` with every Colab badge link pointing at ``repo_url`` (the notebook path kept)."""
    return BADGE_LINK.sub(lambda m: badge_link(m.group(1), repo_url), text)


def sync_notebook(text: str, repo_url: str = REPO_URL, name: str = "notebook") -> str:
    """The notebook JSON ``text`` with its Colab cell and badge links made from ``repo_url``.

    Only the first code cell's source and the badge links in markdown cells change; the rest is
    written back as nbformat (and papermill) write it, so an up-to-date notebook is byte-identical.
    """
    import nbformat

    nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or not code[0].source.startswith(CELL_MARKER):
        raise ValueError(f"{name}: the first code cell is not the Colab cell (it must start with "
                         f"{CELL_MARKER!r})")
    code[0].source = colab_cell(repo_url)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = sync_badges(cell.source, repo_url)
    new = nbformat.writes(nb)
    return new + "\n" if text.endswith("\n") and not new.endswith("\n") else new


def stale_files(root: Path = REPO_ROOT, repo_url: str = REPO_URL) -> dict[Path, str]:
    """README.md and the numbered notebooks under ``root`` that differ from ``repo_url``: path -> new text."""
    targets = [(root / "README.md", sync_badges)]
    targets += [(nb, lambda t, url, nb=nb: sync_notebook(t, url, nb.name))
                for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    stale = {}
    for path, sync in targets:
        text = path.read_text(encoding="utf-8")
        new = sync(text, repo_url)
        if new != text:
            stale[path] = new
    return stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="README badges and the notebooks' Colab cell from REPO_URL.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="exit 1 when any is out of date")
    action.add_argument("--write", action="store_true", help="rewrite what is out of date")
    args = parser.parse_args(argv)
    stale = stale_files()
    names = [str(p.relative_to(REPO_ROOT)) for p in stale]
    if args.check:
        if stale:
            print(f"out of date with REPO_URL {REPO_URL}: {', '.join(names)}\n"
                  f"run: python -m helpers.colab --write", file=sys.stderr)
            return 1
        print(f"README badges and Colab cells match {REPO_URL}")
        return 0
    for path, text in stale.items():
        mode = path.stat().st_mode
        write_text_atomic(path, text)
        path.chmod(mode)  # a rewrite keeps the file's permissions
    print(f"rewrote {', '.join(names)}" if names else f"already up to date with {REPO_URL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

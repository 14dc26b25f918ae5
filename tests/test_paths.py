"""Run modes and the output folder of each: explore by default, FULL only when asked for."""
import shutil
import subprocess

import pytest

from helpers.paths import MODE_ENV, OUTPUT_ENV, REPO_ROOT, output_dirs, run_mode


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(MODE_ENV, raising=False)
    monkeypatch.delenv(OUTPUT_ENV, raising=False)


def test_a_person_gets_explore_and_the_runner_chooses_full(monkeypatch):
    assert run_mode(False) == "explore"
    monkeypatch.setenv(MODE_ENV, "full")
    assert run_mode(False) == "full"
    assert run_mode(True) == "quick"  # QUICK = True wins over the environment
    monkeypatch.setenv(MODE_ENV, " explore ")
    assert run_mode(False) == "explore"


@pytest.mark.parametrize("value", ["FULL", "quick", "fast"])
def test_an_unknown_mode_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(MODE_ENV, value)
    with pytest.raises(ValueError, match=rf"\$COURSE_MODE='{value}' is not a mode: use one of explore, full"):
        run_mode(False)


def test_each_mode_writes_into_its_own_folder(monkeypatch):
    assert output_dirs(True).root == REPO_ROOT / ".quick"
    assert output_dirs(False).root == REPO_ROOT / ".explore"  # a person never overwrites FULL outputs
    assert output_dirs("full").root == REPO_ROOT
    monkeypatch.setenv(MODE_ENV, "full")
    assert output_dirs(False).root == REPO_ROOT and output_dirs(False).mode == "full"
    assert output_dirs(True).quick and not output_dirs(False).quick
    assert output_dirs("explore").quick  # explore records are never taken for FULL results


def test_the_output_dir_variable_wins_and_keeps_the_mode(monkeypatch, tmp_path):
    monkeypatch.setenv(OUTPUT_ENV, str(tmp_path))
    for arg, mode in [(True, "quick"), (False, "explore"), ("full", "full")]:
        outputs = output_dirs(arg)
        assert (outputs.root, outputs.mode) == (tmp_path, mode)
    assert output_dirs(True).results == tmp_path / "results" and (tmp_path / "results").is_dir()


@pytest.mark.parametrize("bad", ["Full", 1, None])
def test_output_dirs_rejects_what_is_neither_quick_nor_a_mode(bad):
    with pytest.raises(ValueError, match="neither QUICK"):
        output_dirs(bad)


@pytest.mark.skipif(shutil.which("git") is None or not (REPO_ROOT / ".git").exists(),
                    reason="not a git checkout")
def test_explore_and_quick_outputs_are_ignored_by_git():
    for folder in (".explore", ".quick"):
        probe = subprocess.run(["git", "check-ignore", "-q", f"{folder}/results/03_wanda.json"], cwd=REPO_ROOT)
        assert probe.returncode == 0, f"{folder}/ is not ignored by git"

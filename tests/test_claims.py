"""helpers.claims: a number typed into markdown fails unless an output shows it, a code cell sets it,
or the literature file lists it with its source; and the eight committed notebooks pass."""
import json

import pytest

from helpers import claims
from helpers.run_notebooks import numbered_notebooks


def notebook(tmp_path, markdown, outputs=(), code="x = 1", name="03_demo.ipynb"):
    """A notebook with one markdown cell and one code cell whose outputs are ``outputs``
    (strings: stream text; dicts: a display_data's data)."""
    cell_outputs = [{"output_type": "stream", "name": "stdout", "text": o} if isinstance(o, str)
                    else {"output_type": "display_data", "metadata": {}, "data": o} for o in outputs]
    cells = [{"cell_type": "markdown", "metadata": {}, "source": markdown},
             {"cell_type": "code", "metadata": {}, "source": code, "outputs": cell_outputs, "execution_count": 1}]
    path = tmp_path / name
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def failures(path, literature=()):
    return [f.text for f in claims.check_notebook(path, list(literature)).failures]


def test_a_typed_number_fails_and_names_its_cell_and_context(tmp_path):
    path = notebook(tmp_path, "The model reaches 93.74% on the test set.", ["accuracy 93.61%"])
    report = claims.check_notebook(path, [])
    assert report.checked == 1 and [f.text for f in report.failures] == ["93.74%"]
    failure = report.failures[0]
    assert failure.cell == 0 and "reaches 93.74% on the test" in failure.context and "03_demo" in str(failure)


def test_the_same_number_in_an_output_passes(tmp_path):
    assert failures(notebook(tmp_path, "The model reaches 93.74% on the test set.", ["accuracy 93.74%\n"])) == []


@pytest.mark.parametrize("typed, shown", [
    ("1,367,226 bytes", "size 1367226"),          # thousands separator, unit vs none
    ("93.70%", "93.7"),                           # trailing zero, % vs none
    ("−0.42 pp", "difference -0.42"),             # unicode minus, sign
    ("0.42 pp", "−0.420 pp"),                     # sign, trailing zero, same unit
    ("70%", "sparsity 0.700"),                    # a percentage as a fraction
    ("94.5%", "val 94.53"),                       # decimals round a longer output
    ("84%", "fc1 holds 83.6% of the weights"),    # an integer with a unit rounds the same unit
    ("1.37M parameters", "1,367,226 parameters"), # a magnitude suffix
    ("10.3 min", "training took 10.3 min"),
])
def test_formatting_variants_pass(tmp_path, typed, shown):
    assert failures(notebook(tmp_path, f"Here: {typed}.", [shown])) == []


def test_html_and_markdown_outputs_count(tmp_path):
    shown = [{"text/html": "<td>9.83&times;</td><td>0.96</td>"}, {"text/markdown": "int8 **10.12×**"}]
    assert failures(notebook(tmp_path, "int8 gets 9.83× and 10.12× and 0.96×", shown)) == []


@pytest.mark.parametrize("typed, shown", [
    ("84%", "84"),           # an integer with a unit needs that unit in the output, not a bare integer
    ("4×", "4.0"),
    ("3×", "2.52×"),         # an integer rounds one decimal at most
    ("10.1%", "10.12×"),     # another unit
    ("93.7%", "93.61"),      # a different value
    ("455 s", "455 ms"),
])
def test_near_misses_fail(tmp_path, typed, shown):
    assert failures(notebook(tmp_path, f"Here: {typed}.", [shown])) == [typed]


def test_what_is_not_a_measured_number_is_not_checked(tmp_path):
    text = ("See section 3.2 and Table 1 (arXiv:1510.00149), torch 2.4.1, `lr = 0.37`, $2^{b-1}-1$ and "
            "$0.3530$, 4-bit and 2:4 patterns on 28×28 images in conv3x3 and W8A8 layers, 38 epochs, "
            "run on 2026-01-05, [a link](https://x.org/1.5), <img width=\"0.5\">, the 95% paired interval, "
            "a 90% confidence level")
    assert claims.check_notebook(notebook(tmp_path, text), []).checked == 0


def test_a_range_shares_its_unit(tmp_path):
    numbers = [(n.text, n.unit) for n in claims.numbers_in("loses 13–20 pp at 70–80%") if n.is_claim]
    assert numbers == [("13", "pp"), ("20 pp", "pp"), ("70", "%"), ("80%", "%")]


def test_a_float_literal_of_a_code_cell_passes_and_an_integer_does_not(tmp_path):
    path = notebook(tmp_path, "weight decay 0.05, keep 30% of units, 4× the rate", code="fit(wd=0.05, keep=0.3, k=4)")
    assert failures(path) == ["4×"]


LITERATURE = """# Literature
| key | notebooks | value | cited as | source | where | checked |
|---|---|---|---|---|---|---|
| dc/lenet-300-100/ratio | 03 | 40× | Deep Compression | Han et al. 2016, ICLR | Table 1 | paper text |
| dc/lenet-300-100/error | 07 | 1.64% | Deep Compression | Han et al. 2016, ICLR | Table 1 | paper text |
"""


def test_a_listed_literature_figure_passes_where_its_source_is_cited(tmp_path):
    (tmp_path / "lit.md").write_text(LITERATURE)
    literature = claims.read_literature(tmp_path / "lit.md")
    assert [f.value.text for f in literature] == ["40×", "1.64%"]
    cited = notebook(tmp_path, "Deep Compression reached 40× on LeNet-300-100.")
    assert claims.check_notebook(cited, literature).failures == []
    assert claims.check_notebook(cited, literature).literature == 1
    uncited = notebook(tmp_path, "Others reached 40× on LeNet-300-100.", name="03_b.ipynb")
    other_notebook = notebook(tmp_path, "Deep Compression reached 40× on LeNet.", name="05_c.ipynb")
    other_value = notebook(tmp_path, "Deep Compression reached 41× on LeNet.", name="03_d.ipynb")
    for path in (uncited, other_notebook, other_value):
        assert len(claims.check_notebook(path, literature).failures) == 1


def test_a_malformed_literature_row_is_refused(tmp_path):
    (tmp_path / "lit.md").write_text("| dc/ratio | 03 | 40× or 39× | Deep Compression | Han | Table 1 | x |\n")
    with pytest.raises(ValueError, match="one number"):
        claims.read_literature(tmp_path / "lit.md")
    (tmp_path / "lit.md").write_text(LITERATURE + LITERATURE.splitlines()[-1] + "\n")
    with pytest.raises(ValueError, match="keys used twice"):
        claims.read_literature(tmp_path / "lit.md")


def test_code_can_print_a_literature_figure_by_its_key(tmp_path):
    (tmp_path / "lit.md").write_text(LITERATURE)
    figure = claims.literature_figure("dc/lenet-300-100/error", tmp_path / "lit.md")
    assert figure.text == "1.64%" and float(figure.value.value) == 1.64 and figure.where == "Table 1"
    with pytest.raises(KeyError, match="not a key"):
        claims.literature_figure("dc/none", tmp_path / "lit.md")


def test_main_prints_counts_and_fails_on_a_typed_number(tmp_path, capsys):
    bad, good = notebook(tmp_path, "It got 93.74%."), notebook(tmp_path, "It got 93.74%.", ["93.74"], name="04_x.ipynb")
    assert claims.main([str(good), "--literature", str(tmp_path / "none.md")]) == 0
    assert "04_x.ipynb: 1 numbers checked" in capsys.readouterr().out
    assert claims.main([str(bad), str(good), "--literature", str(tmp_path / "none.md")]) == 1
    out = capsys.readouterr().out
    assert "03_demo.ipynb cell 0: '93.74%'" in out and "FAILED: 1" in out


def test_every_literature_row_of_the_course_parses_and_names_its_source():
    figures = claims.read_literature()
    assert len(figures) >= 20, "notebooks/literature.md lists too few figures"
    for figure in figures:
        assert figure.source and figure.where and figure.notebooks, figure
    deep_compression = {f.key: f.text for f in figures if f.key.startswith("deep-compression/lenet")}
    assert deep_compression == {  # Han et al. 2016, Table 1, read in the paper's text
        "deep-compression/lenet-300-100/error-ref": "1.64%", "deep-compression/lenet-300-100/error-compressed": "1.58%",
        "deep-compression/lenet-300-100/ratio": "40×", "deep-compression/lenet-5/error-ref": "0.80%",
        "deep-compression/lenet-5/error-compressed": "0.74%", "deep-compression/lenet-5/ratio": "39×",
        "deep-compression/lenet/accuracy-change": "0.06 pp"}


@pytest.mark.parametrize("path", numbered_notebooks(), ids=lambda p: p.stem)
def test_committed_notebooks_state_no_typed_in_number(path):
    report = claims.check_notebook(path)
    assert not report.failures, "\n".join(map(str, report.failures))


def test_the_committed_notebooks_give_the_check_numbers_to_check():
    # a notebook may type no number at all (06 prints all of its own); the series as a whole does,
    # so an extraction that silently found nothing would fail here
    assert sum(claims.check_notebook(path).checked for path in numbered_notebooks()) >= 20

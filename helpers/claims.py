"""No typed-in measured number: every number a notebook's markdown states must be one its outputs show.

    python -m helpers.claims                      # all numbered notebooks
    python -m helpers.claims notebooks/03_wanda.ipynb notebooks/06_quantization.ipynb

A *claim* is a number in a markdown cell written with a decimal point (``94.26``), a percent sign
(``84%``) or a unit (``pp``, ``×``/``x``, ``B``/``kB``/``MB``/``GB``/``bytes``, ``ns``/``µs``/``ms``/
``s``/``min``/``h``); a range shares its unit (``13–20 pp``). Not claims: numbers in code spans,
LaTeX, links and HTML tags, versions and ids (``2.4.1``, ``arXiv:1510.00149``), section, table and
figure numbers, parts of names (``fc1``, ``W8A8``, ``conv3x3``), sizes like ``28×28``, integers
without a unit (``2:4``, ``4-bit``, ``38 epochs``), confidence levels (``95% interval``). Worked
examples belong in code spans (```round(2.5) = 2```).

A claim passes when

* an output of the same notebook shows it (stream text, ``text/plain``, ``text/markdown`` and
  ``text/html`` of display data and results), formatting aside: thousands separators, trailing
  zeros, sign (``−0.3`` and ``0.3``), ``%`` or none, a percentage as a fraction (``70%`` and
  ``0.7``); a claim with decimals may round a longer output (``94.5`` for ``94.53``), an integer
  with a unit may round an output with the same unit or with decimals (``84%`` for ``84.3%``);
* or a code cell of the notebook sets it literally (a parameter: ``weight_decay=0.05``);
* or it is a literature figure: a row of ``notebooks/literature.md`` (``LITERATURE_FILE``) names
  the notebook, the exact value, and a citation that the same markdown cell mentions.

Everything else fails, with the notebook, the cell index and the sentence around the number.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tokenize
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from .paths import NOTEBOOKS_DIR

LITERATURE_FILE = NOTEBOOKS_DIR / "literature.md"

# a unit: its family (what it may be compared with when rounding) --------------------------------
UNIT_FAMILY = {"%": "percent", "pp": "percent", "×": "times", "x": "times",
               "B": "B", "byte": "B", "bytes": "B", "kB": "kB", "KB": "kB", "kiB": "kB", "KiB": "kB",
               "MB": "MB", "MiB": "MB", "GB": "GB", "GiB": "GB",
               "ns": "ns", "µs": "µs", "μs": "µs", "us": "µs", "ms": "ms", "s": "s", "sec": "s",
               "seconds": "s", "second": "s", "min": "min", "minutes": "min", "minute": "min",
               "h": "h", "hours": "h", "hour": "h"}
MAGNITUDE = {"k": Decimal(1000), "K": Decimal(1000), "M": Decimal(10) ** 6, "G": Decimal(10) ** 9}
_UNIT_RE = re.compile(r"[ \u00a0\u2009\u202f]?(?P<unit>%|pp\b|×(?![ \u00a0\u2009\u202f]?\d)|x(?![\w])|"
                      r"bytes?\b|[kK]i?B\b|[MG]i?B\b|B\b|ns\b|[µμ]s\b|us\b|ms\b|sec\b|seconds?\b|"
                      r"minutes?\b|min\b|hours?\b|h\b|s\b)")
_MAGNITUDE_RE = re.compile(r"(?P<mag>[kKMG])(?![\w])")
_NUMBER_RE = re.compile(r"(?<![\w.,^/\\])(?P<sign>[-−–]?)(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?"
                        r"(?P<more>(?:\.\d+)+|[eE][-+−]?\d+)?")
_RANGE_GAP_RE = re.compile(r"^[ \u00a0\u2009\u202f]*(?:–|—|-|→|->)[ \u00a0\u2009\u202f]*$")
_NOT_A_CLAIM_BEFORE = re.compile(
    r"(?:arxiv[: ]*|sections?[ \u00a0]+|§[ \u00a0]?|tables?[ \u00a0]+|fig(?:ure)?s?\.?[ \u00a0]+|eq(?:uation)?s?\.?[ \u00a0]+|"
    r"appendix[ \u00a0]+|v|version[ \u00a0]+|python[ \u00a0]+|torch[ \u00a0]+|pytorch[ \u00a0]+|cuda[ \u00a0]+|"
    r"notebooks?[ \u00a0]+|issues?[ \u00a0]+#?|#)$", re.IGNORECASE)
_NOT_A_CLAIM_AFTER = re.compile(r"[ \u00a0]*(?:paired[ \u00a0]+|bootstrap[ \u00a0]+)?(?:confidence|interval|CI\b|quantile|percentile)",
                                re.IGNORECASE)  # 95% interval: a confidence level, not a measurement
_HIDDEN = [re.compile(p, re.DOTALL) for p in (
    r"```.*?```", r"~~~.*?~~~", r"`[^`\n]*`", r"\$\$.*?\$\$", r"(?<!\\)\$[^$\n]+?(?<!\\)\$", r"\\\(.*?\\\)",
    r"\\\[.*?\\\]", r"<[^>\n]*>", r"\]\([^)\s]*(?:\s+\"[^\"]*\")?\)", r"https?://\S+", r"&#?\w+;")]


@dataclass(frozen=True)
class Number:
    """A number as written: its absolute value, decimals, unit (or None) and magnitude suffix."""

    value: Decimal
    decimals: int
    unit: str | None
    magnitude: Decimal
    text: str
    start: int

    @property
    def family(self) -> str | None:
        return UNIT_FAMILY.get(self.unit) if self.unit else None

    @property
    def quantum(self) -> Decimal:
        """The value of the last written digit (0.01 for 94.26, 10,000 for 1.37M)."""
        return Decimal(10) ** -self.decimals * self.magnitude

    @property
    def is_claim(self) -> bool:
        """A measured-looking number: decimals, or a percent sign or unit."""
        return self.decimals > 0 or self.unit is not None

    def candidates(self) -> list[tuple[Decimal, Decimal, bool]]:
        """(value, half the last written digit, as a fraction) for what this number can stand for:
        as written, times its magnitude suffix, and a percentage as a fraction (``70%``: 0.7)."""
        half = Decimal(5) * Decimal(10) ** -(self.decimals + 1)
        found = [(self.value, half, False)]
        if self.magnitude != 1:
            found.append((self.value * self.magnitude, half * self.magnitude, False))
        if self.family == "percent":
            found.append((self.value / 100, half / 100, True))
        return found


def _decimal(text: str) -> Decimal | None:
    try:
        return abs(Decimal(text.replace(",", "").replace("−", "-")))
    except InvalidOperation:
        return None


def numbers_in(text: str, prose: bool = True) -> list[Number]:
    """The numbers of ``text`` with their units; ``prose`` drops versions, ids, section and table
    numbers (markdown), otherwise every number counts (outputs)."""
    found = []
    for m in _NUMBER_RE.finditer(text):
        more = m.group("more")
        if more and not more[0].lower() == "e":
            continue  # a version or a section number: 2.4.1
        if len(m.group("int")) > 1 and m.group("int")[0] == "0":
            continue  # zero-padded: a date or a time (2026-01-05, 09:30)
        if prose and _NOT_A_CLAIM_BEFORE.search(text[max(0, m.start() - 14):m.start()]):
            continue
        end = m.end()
        magnitude, unit = Decimal(1), None
        mag = _MAGNITUDE_RE.match(text, end)
        if mag and not _UNIT_RE.match(text, end):
            magnitude, end = MAGNITUDE[mag.group("mag")], mag.end()
        unit_match = _UNIT_RE.match(text, end)
        if unit_match:
            unit = unit_match.group("unit")
            end = unit_match.end()
            if prose and unit == "%" and _NOT_A_CLAIM_AFTER.match(text, end):
                continue
        elif prose and end < len(text) and (text[end].isalnum() or text[end] == "_"):
            continue  # part of a name: 3x3 is caught above as a size, "2nd", "4bit"
        if prose and m.start() > 0 and text[m.start() - 1] in "×x" and unit is None and not m.group("frac"):
            continue  # the second factor of a size: 28×28
        number_text = m.group("int") + (m.group("frac") or "") + (more if more and more[0] in "eE" else "")
        value = _decimal(number_text.replace("−", "-"))
        if value is None:
            continue
        decimals = len(m.group("frac") or ".")-1
        found.append(Number(value, decimals, unit, magnitude, text[m.start():end], m.start()))
    return _share_range_units(text, found)


def _share_range_units(text: str, numbers: list[Number]) -> list[Number]:
    """``13–20 pp``: the first number of a range takes the unit of the second."""
    out = list(numbers)
    for i in range(len(out) - 2, -1, -1):
        first, second = out[i], out[i + 1]
        gap = text[first.start + len(first.text):second.start]
        if first.unit is None and second.unit is not None and _RANGE_GAP_RE.match(gap):
            out[i] = Number(first.value, first.decimals, second.unit, first.magnitude, first.text, first.start)
    return out


def prose_of(markdown: str) -> str:
    """``markdown`` with code, math, links' targets, tags and URLs blanked (same length, so positions hold)."""
    for pattern in _HIDDEN:
        markdown = pattern.sub(lambda m: " " * len(m.group(0)), markdown)
    return markdown


# ------------------------------------------------------------------------------------- what a notebook shows
def _cell_text(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def output_texts(cell) -> list[str]:
    """What the outputs of a code cell show as text: streams, and the text/plain, text/markdown and
    text/html (tags stripped) of results and display data."""
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append(_joined(output.get("text", "")))
        for mime in ("text/plain", "text/markdown", "text/html"):
            data = output.get("data", {}).get(mime)
            if data is not None:
                text = _joined(data)
                texts.append(re.sub(r"<[^>]*>", " ", text).replace("&nbsp;", " ") if mime == "text/html" else text)
    return texts


def _joined(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def code_literals(cell) -> set[Decimal]:
    """The float literals of a code cell (``0.05``, ``5e-4``; magics and shell lines skipped): a
    parameter a reader may find in the text. Integers are left out: they match too much by chance."""
    lines = [line for line in _cell_text(cell).splitlines() if not line.lstrip().startswith(("%", "!"))]
    found = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            is_float = any(c in token.string.lower() for c in ".e") and not token.string.lower().startswith("0x")
            if token.type == tokenize.NUMBER and is_float and not token.string.lower().endswith("j"):
                value = _decimal(token.string.replace("_", ""))
                if value is not None and not token.string.lower().startswith(("0x", "0o", "0b")):
                    found.add(value)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return found


@dataclass
class Shown:
    """The numbers a notebook's outputs show, and the literals its code cells set."""

    outputs: list[Number] = field(default_factory=list)
    literals: set[Decimal] = field(default_factory=set)

    def explains(self, claim: Number) -> str | None:
        """What shows ``claim`` ("output '94.53%'", "code literal 0.05"), None when nothing does.

        An output explains it when their units agree (or one has none) and the output, written
        with decimals or with the same unit, equals it or rounds to it (``94.5`` for ``94.53``); an
        integer with a unit (``84%``, ``455 s``; below 1,000) needs the same unit in the output (rounding
        one decimal at most: ``83.6%``), or a fraction for a percentage (``0.84``). A code cell's float literal explains an equal claim."""
        for value, half, fraction in claim.candidates():
            if value in self.literals:
                return f"code literal {value}"
            for shown in self.outputs:
                same_family = claim.family is not None and shown.family == claim.family
                if not (same_family or shown.family is None or claim.family is None):
                    continue
                amount = shown.value * shown.magnitude
                if amount == value and value >= 1000:  # 1,367,226 bytes: no coincidence
                    return f"output {shown.text!r}"
                if not (same_family or shown.decimals > 0 or claim.magnitude > 1) or (claim.decimals == 0 and not (same_family or fraction)):
                    continue
                if amount == value:
                    return f"output {shown.text!r}"
                finer = shown.quantum < claim.quantum
                close = claim.decimals > 0 or shown.decimals == 1  # 84% of 83.6%, not 3× of 2.52×
                if finer and close and abs(amount - value) <= half:
                    return f"output {shown.text!r} (rounded)"
        return None


def shown_in(notebook: dict) -> Shown:
    shown = Shown()
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            shown.literals |= code_literals(cell)
            for text in output_texts(cell):
                shown.outputs += numbers_in(text, prose=False)
    return shown


# ------------------------------------------------------------------------------------- literature
@dataclass(frozen=True)
class LiteratureFigure:
    """A row of the literature file: its key, the notebooks that quote it, the value, how a cell
    cites it, the source and where in it."""

    key: str
    notebooks: tuple[str, ...]
    value: Number
    cited_as: str
    source: str
    where: str

    @property
    def text(self) -> str:
        """The value as the paper prints it (``1.64%``, ``40×``)."""
        return self.value.text

    def covers(self, claim: Number, notebook_number: str, cell_text: str) -> bool:
        return ((notebook_number in self.notebooks or "all" in self.notebooks)
                and claim.value * claim.magnitude == self.value.value * self.value.magnitude
                and claim.family == self.value.family
                and self.cited_as.lower() in cell_text.lower())


def read_literature(path: str | Path = LITERATURE_FILE) -> list[LiteratureFigure]:
    """The figures of the literature file's table: rows ``| key | notebooks | value | cited as |
    source | where | checked |`` (``notebooks``: ``07`` or ``07, 08``; other rows are skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    figures = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        if len(cells) < 6 or not re.fullmatch(r"(?:\d\d|all)(?:\s*,\s*(?:\d\d|all))*", cells[1]):
            continue
        values = numbers_in(cells[2].replace("`", ""), prose=False)
        if len(values) != 1:
            raise ValueError(f"{path}:{number}: the value column must hold one number, got {cells[2]!r}")
        if not cells[0] or not cells[3]:
            raise ValueError(f"{path}:{number}: the key or the 'cited as' column is empty")
        figures.append(LiteratureFigure(cells[0], tuple(n.strip() for n in cells[1].split(",")), values[0],
                                        cells[3], cells[4], cells[5]))
    keys = [f.key for f in figures]
    if len(keys) != len(set(keys)):
        raise ValueError(f"{path}: keys used twice: {sorted({k for k in keys if keys.count(k) > 1})}")
    return figures


def literature_figure(key: str, path: str | Path = LITERATURE_FILE) -> LiteratureFigure:
    """The literature file's figure ``key`` (``.text``: the value as printed, ``.value.value``: the
    number, ``.source``, ``.where``), for code that prints a paper's number."""
    found = {f.key: f for f in read_literature(path)}
    if key not in found:
        raise KeyError(f"{key!r} is not a key of {path}; it has {sorted(found)}")
    return found[key]


# ------------------------------------------------------------------------------------- the check
@dataclass(frozen=True)
class Failure:
    notebook: str
    cell: int
    text: str
    context: str

    def __str__(self) -> str:
        return f"{self.notebook} cell {self.cell}: {self.text!r} is shown by no output: …{self.context}…"


@dataclass
class Report:
    """One notebook's claims: how many were checked, what explained each (cell, number, why), the failures."""

    notebook: str
    checked: int
    failures: list[Failure]
    literature: int = 0
    explained: list[tuple[int, str, str]] = field(default_factory=list)


def _context(text: str, start: int, end: int, width: int = 60) -> str:
    return " ".join(text[max(0, start - width):end + width].split())


def check_notebook(path: str | Path, literature: list[LiteratureFigure] | None = None) -> Report:
    """Every claim of the markdown cells of the notebook at ``path``, checked against its outputs,
    its code literals and ``literature`` (default: the literature file)."""
    path = Path(path)
    notebook = json.loads(path.read_text())
    literature = read_literature() if literature is None else literature
    number = path.name[:2]
    shown = shown_in(notebook)
    report = Report(path.name, 0, [])
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = _cell_text(cell)
        for claim in (n for n in numbers_in(prose_of(text)) if n.is_claim):
            report.checked += 1
            source = next((figure for figure in literature if figure.covers(claim, number, text)), None)
            why = f"literature: {source.cited_as}, {source.where}" if source else shown.explains(claim)
            report.literature += source is not None
            if why is None:
                end = claim.start + len(claim.text)
                report.failures.append(Failure(path.name, index, claim.text, _context(text, claim.start, end)))
            else:
                report.explained.append((index, claim.text, why))
    return report


# ------------------------------------------------------------------------------------- printed speed-ups
_SPEEDUP_RE = re.compile(r"(?<![\d.])(\d+\.\d+)[ ]*[x×]?[ ]*\(?[ ]*(\d+\.\d+)[ ]*[-–][ ]*(\d+\.\d+)\)?")


def printed_speedups(notebook: dict) -> list[tuple[int, str, tuple[Decimal, Decimal, Decimal]]]:
    """The speed-ups a notebook's outputs print with their interquartile range, ``10.12x
    (9.74-10.44)`` or a table's ``10.12  9.74-10.44``: (cell index, text, (median, q1, q3))."""
    found = []
    for index, cell in enumerate(notebook["cells"]):
        for text in output_texts(cell) if cell["cell_type"] == "code" else []:
            found += [(index, m.group(0), tuple(Decimal(g) for g in m.groups())) for m in _SPEEDUP_RE.finditer(text)]
    return found


def _rounds_to(value: float, printed: Decimal) -> bool:
    return abs(Decimal(str(value)) - printed) <= Decimal(5) * Decimal(10) ** (printed.as_tuple().exponent - 1)


def speedup_problems(notebook_path: str | Path, speed_file: str | Path) -> list[str]:
    """Each speed-up with its range that the notebook prints and no record of ``speed_file``
    (``results/speed.json``: any file, batch and clock) holds: one printed from another run's timing."""
    from .records import read_speed_file

    triples = [tuple(spread[k] for k in ("median", "q1", "q3"))
               for record in read_speed_file(speed_file) for key, value in record.items()
               if key.endswith("speedup") and isinstance(value, dict)
               for spread in value.values() if isinstance(spread, dict) and "median" in spread]
    notebook = json.loads(Path(notebook_path).read_text())
    return [f"{Path(notebook_path).name} cell {index}: {text!r} is in no record of {Path(speed_file).name}"
            for index, text, printed in printed_speedups(notebook)
            if not any(all(_rounds_to(v, p) for v, p in zip(triple, printed)) for triple in triples)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.claims", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every numbered notebook")
    parser.add_argument("--literature", type=Path, default=LITERATURE_FILE)
    parser.add_argument("--show", action="store_true", help="also list each number that passed and what shows it")
    args = parser.parse_args(argv)
    literature = read_literature(args.literature)
    notebooks = args.notebooks or sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    reports = [check_notebook(p, literature) for p in notebooks]
    for report in reports if args.show else []:
        for cell, text, why in report.explained:
            print(f"{report.notebook} cell {cell}: {text!r} ok: {why}")
    for report in reports:
        for failure in report.failures:
            print(failure)
    for report in reports:
        print(f"{report.notebook}: {report.checked} numbers checked ({report.literature} literature), "
              f"{len(report.failures)} shown by no output")
    failed = sum(len(r.failures) for r in reports)
    print(f"{'FAILED' if failed else 'ok'}: {failed} typed-in numbers in {len(reports)} notebooks"
          + ("" if failed else f" ({sum(r.checked for r in reports)} numbers checked)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The records on disk, read and checked: ``results/NN_*.json`` and ``results/speed.json``.

The lowest layer under ``helpers.results`` (the README), ``helpers.comparison`` and
``helpers.benchmark``: they import from here, never the reverse, and this module imports no torch,
pandas or plotting. Every reader names the file and what is wrong with it (for broken JSON: the
line and column); ``write_speed_file`` replaces ``speed.json`` atomically.

* ``results/NN_*.json``: a list of records per notebook (``helpers.results.make_record``), read
  by ``read_results`` and checked by ``check_record``;
* ``results/speed.json``: one record per saved model (``python -m helpers.benchmark``), read by
  ``read_speed_file`` (a list) or ``read_speed`` (keyed by ``weights_file``); each record's
  ``sha256`` is ``sha256_of`` its file, so a re-saved file is seen.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .io_utils import file_digest, write_text_atomic
from .paths import REPO_ROOT
from .provenance import note_read

RESULTS_DIR = REPO_ROOT / "results"
SPEED_FILE = "speed.json"  # written by python -m helpers.benchmark; not a notebook's NN_*.json
VERDICTS_FILE = "verdicts.json"  # one record per comparison the course concludes something from
VERDICT_KEYS = ("notebook", "question", "a", "b", "split", "difference_pp", "ci95_pp", "p_value", "seeds_a",
                "seeds_b", "verdict", "quick")
REQUIRED_KEYS = ("name", "method", "test_accuracy", "sparsity", "params_nonzero", "weight_bits",
                 "activation_bits", "size_bytes", "latency_ms", "weights_file", "quick")
RETIME = "run python -m helpers.benchmark"


def read_json(path: str | os.PathLike, remedy: str):
    """The JSON value in ``path``; a ValueError naming the file, where the JSON breaks (line and
    column) and ``remedy`` when it does not parse."""
    path = Path(path)
    note_read(path)  # a figure drawn from it can name the bytes it drew (helpers.provenance)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg}: line {err.lineno} column {err.colno}); "
                         f"{remedy}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}); {remedy}") from err


def read_results(results_dir: str | os.PathLike = RESULTS_DIR) -> list[dict]:
    """All records of ``results/*.json``, in file order, each with its ``stage`` added.

    Every record is checked (keys, types, finite numbers, percentages in 0-100); a ValueError
    names the file and the record otherwise."""
    records = []
    for path in sorted(Path(results_dir).glob("[0-9][0-9]_*.json")):
        data = read_json(path, "restore it or run its notebook again")
        if not isinstance(data, list):
            raise ValueError(f"{path} must hold a list of records, got {type(data).__name__}")
        for index, record in enumerate(data):
            check_record(record, f"{path}, record {index}")
            records.append({"stage": path.stem, **record})
    return records


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _value_problems(record: dict) -> list[str]:
    """What is wrong with the values of ``record``'s required keys (empty when nothing)."""
    problems = []
    for key in ("name", "method"):
        if not isinstance(record[key], str) or not record[key]:
            problems.append(f"{key} must be a non-empty string, got {record[key]!r}")
    if not _is_number(record["test_accuracy"]) or not 0 <= record["test_accuracy"] <= 100:
        problems.append(f"test_accuracy must be a finite percentage in 0-100, got {record['test_accuracy']!r}")
    if not _is_number(record["sparsity"]) or not 0 <= record["sparsity"] <= 1:
        problems.append(f"sparsity must be a finite fraction in 0-1, got {record['sparsity']!r}")
    for key in ("params_nonzero", "size_bytes"):
        value = record[key]
        if not (value is None and key == "size_bytes") and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0):
            problems.append(f"{key} must be a non-negative integer, got {value!r}")
    for key in ("weight_bits", "activation_bits"):
        value = record[key]
        if not (value is None and key == "activation_bits") and (
                not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 32):
            problems.append(f"{key} must be an integer from 1 to 32, got {value!r}")
    latency = record["latency_ms"]
    if latency is not None and (not isinstance(latency, dict) or not all(
            _is_number(v) and v > 0 for v in latency.values())):
        problems.append(f"latency_ms must be null or a map of positive finite numbers, got {latency!r}")
    if record["weights_file"] is not None and not isinstance(record["weights_file"], str):
        problems.append(f"weights_file must be null or a path string, got {record['weights_file']!r}")
    if not isinstance(record["quick"], bool):
        problems.append(f"quick must be true or false, got {record['quick']!r}")
    return problems


def check_record(record, where: str) -> None:
    """A ValueError (naming ``where``) unless ``record`` has the required keys with sane values."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"{where}: record {record.get('name')!r} lacks {missing}")
    problems = _value_problems(record)
    if problems:
        raise ValueError(f"{where} ({record.get('name')!r}): " + "; ".join(problems))


def is_saved_model(record: dict) -> bool:
    """A FULL record of a model its own notebook saved (not a re-measured model of another stage)."""
    weights = record.get("weights_file")  # None, or NaN when the record came through a DataFrame
    return isinstance(weights, str) and bool(weights) and record.get("quick") is not True \
        and Path(weights).name[:2] == record["stage"][:2]


def read_speed_file(path: str | os.PathLike) -> list[dict]:
    """The records of a speed file (``results/speed.json`` or a copy of it), checked: a list of
    objects, each with a ``weights_file`` string and a ``speedup`` map. FileNotFoundError when the
    file is missing, a ValueError naming the file (and the record) when it is broken."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no speed file at {path}: {RETIME}")
    records = read_json(path, f"restore it from git or {RETIME}")
    shape = f"{path} is not a list of speed records (each with weights_file and speedup)"
    if not isinstance(records, list):
        raise ValueError(f"{shape}: it holds a {type(records).__name__}")
    for index, r in enumerate(records):
        if not (isinstance(r, dict) and isinstance(r.get("weights_file"), str)
                and isinstance(r.get("speedup"), dict)):
            raise ValueError(f"{shape}: record {index} is {json.dumps(r)[:80]}")
    return records


def read_speed(results_dir: str | os.PathLike = RESULTS_DIR) -> dict[str, dict]:
    """The records of ``<results_dir>/speed.json`` keyed by ``weights_file`` (``read_speed_file``)."""
    return {r["weights_file"]: r for r in read_speed_file(Path(results_dir) / SPEED_FILE)}


def write_speed_file(path: str | os.PathLike, records: list[dict]) -> None:
    """Write ``records`` to the speed file ``path`` atomically (indented JSON, as committed)."""
    write_text_atomic(path, json.dumps(records, indent=2) + "\n")


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 (hex) of the bytes of the file ``path``: a speed record's ``sha256``."""
    return file_digest(path, "sha256")


def format_spread(median: float, q1: float, q3: float) -> str:
    """A speed-up with its interquartile range as every table of the course shows it: ``2.55× (2.48–2.61)``."""
    return f"{median:.2f}× ({q1:.2f}–{q3:.2f})"


RERUN_SPREAD_PP = 0.1  # a FULL run's test accuracy moved by about this much on another host or day


def is_tie(a: float, b: float) -> bool:
    """Whether two test accuracies (percent) of separately trained models differ by no more than two
    re-runs could move them apart (2 x ``RERUN_SPREAD_PP``): such a difference is not a result."""
    return abs(a - b) <= 2 * RERUN_SPREAD_PP + 1e-9


def verdict_problems(record) -> list[str]:
    """What is wrong with one verdict record (``helpers.verdicts``): fields, types, ranges, and a
    winner whose validation interval holds 0 (only a tie may)."""
    if not isinstance(record, dict):
        return [f"a record must be an object, got {type(record).__name__}"]
    problems = [f"lacks {k!r}" for k in VERDICT_KEYS if k not in record]
    if problems:
        return problems
    interval, seeds = record["ci95_pp"], [*record["seeds_a"], *record["seeds_b"]]
    if not (isinstance(record["notebook"], str) and len(record["notebook"]) == 2 and record["notebook"].isdigit()):
        problems.append(f"notebook must be two digits like '02', got {record['notebook']!r}")
    if any(not isinstance(record[k], str) or not record[k] for k in ("question", "a", "b")):
        problems.append("question, a and b must be non-empty strings")
    if record["split"] not in ("validation", "test"):
        problems.append(f"split must be 'validation' or 'test', got {record['split']!r}")
    if record["verdict"] not in ("a", "b", "tie"):
        problems.append(f"verdict must be 'a', 'b' or 'tie', got {record['verdict']!r}")
    if not (isinstance(interval, list) and len(interval) == 2 and all(map(_is_number, interval))
            and interval[0] <= interval[1] and _is_number(record["difference_pp"])):
        problems.append(f"ci95_pp must be [low, high] with low <= high, got {interval!r}")
    elif (record["verdict"] == "a" and interval[0] <= 0) or (record["verdict"] == "b" and interval[1] >= 0):
        problems.append(f"verdict {record['verdict']!r} but the interval {interval} holds 0: only a tie may")
    if not (_is_number(record["p_value"]) and 0 <= record["p_value"] <= 1):
        problems.append(f"p_value must lie in [0, 1], got {record['p_value']!r}")
    if not all(isinstance(record[k], list) for k in ("seeds_a", "seeds_b")) or \
            not all(_is_number(v) and 0 <= v <= 100 for v in seeds):
        problems.append("seeds_a and seeds_b must be lists of accuracies in percent")
    return problems


def read_verdicts(results_dir: str | os.PathLike = RESULTS_DIR) -> list[dict]:
    """The checked records of ``results/verdicts.json`` (an empty list before any notebook wrote one);
    a ValueError naming the file and the record when one is broken."""
    path = Path(results_dir) / VERDICTS_FILE
    if not path.is_file():
        return []
    records = read_json(path, "restore it from git or run the notebooks that write verdicts")
    if not isinstance(records, list):
        raise ValueError(f"{path} must hold a list of verdict records, got {type(records).__name__}")
    for index, record in enumerate(records):
        problems = verdict_problems(record)
        if problems:
            raise ValueError(f"{path}, verdict {index}: {'; '.join(problems)}")
    return records

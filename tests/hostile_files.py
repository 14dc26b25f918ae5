"""Crafted model files, a few hundred bytes to a few MB each, built as an attacker would build them
(valid checksums and digests around hostile content), and a runner that loads each one in this
process and reports the error, the peak memory it cost and the time.

``python tests/hostile_files.py`` prints the table; ``tests/test_hostile_files.py`` runs it in a
child process and asserts every case. Peak memory is the growth of the process's high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs`` before each case)."""
from __future__ import annotations

import io
import json
import lzma
import re
import struct
import sys
import time
import zipfile
from pathlib import Path

import torch

from helpers import build_model, load, save
from helpers.models import CNNConfig
from helpers.storage import checkpoint, compressed, int8, packed, sparse
from helpers.storage.framing import MAX_FILE_BYTES, content_digest, frame, json_bytes, torch_bytes

DEEP = 200_000          # nesting levels of the deep cases (Python's recursion limit is 1,000)
HUGE = [20_000, 20_000]  # 400M values: 1.6 GB as float32
SMALL = CNNConfig(conv_channels=(4, 8, 8), fc_features=(16,))


# --------------------------------------------------------------------------- building blocks
def _pickle_str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _deep_pickle(fmt: str) -> bytes:
    """A pickle of ``{"format": fmt, "meta": [[[...]]]}`` nested ``DEEP`` lists deep, built with
    opcodes (no recursion in the writer)."""
    return (b"\x80\x02}" + _pickle_str("format") + _pickle_str(fmt) + b"s" + _pickle_str("meta")
            + b"]" * DEEP + b"a" * (DEEP - 1) + b"s.")


def _code_pickle(marker: Path) -> bytes:
    """A pickle that would create ``marker`` through ``os.system`` if it were ever run."""
    return (b"\x80\x02cos\nsystem\n" + _pickle_str(f"touch {marker}") + b"\x85R.")


def _torch_zip_with(pkl: bytes) -> bytes:
    """A ``torch.save`` zip whose ``data.pkl`` record is ``pkl``."""
    original = zipfile.ZipFile(io.BytesIO(torch_bytes({"format": "x"})))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name in original.namelist():
            z.writestr(name, pkl if name.endswith("data.pkl") else original.read(name))
    return out.getvalue()


def _signed(payload: dict) -> bytes:
    """``payload`` with the digest the loaders expect: the attacker can compute it too."""
    return torch_bytes({**payload, "sha256": content_digest(payload)})


def _pt(**changes) -> bytes:
    model = build_model(SMALL)
    payload = {"format": checkpoint.FORMAT, "config": SMALL.to_dict(),
               "state_dict": {k: v.clone() for k, v in model.state_dict().items()}, "meta": {}}
    return _signed({**payload, **changes})


def _sparse_with(header: dict, payload: bytes = b"") -> bytes:
    raw = json_bytes({"format": sparse.FORMAT, "config": SMALL.to_dict(), "meta": {}, **header})
    return frame(struct.pack("<8sII", sparse.MAGIC, sparse.VERSION, len(raw)) + raw, payload)


def _sparse_deep() -> bytes:
    raw = b'{"format":"' + sparse.FORMAT.encode() + b'","meta":' + b"[" * DEEP + b"]" * DEEP + b"}"
    return frame(struct.pack("<8sII", sparse.MAGIC, sparse.VERSION, len(raw)) + raw, b"")


def _packed_with(tensors: list, payload: bytes) -> bytes:
    raw = json_bytes({"format": packed.FORMAT, "config": SMALL.to_dict(), "meta": {},
                      "spec": {"weight_bits": 4, "act_bits": None, "edge_bits": 8}, "tensors": tensors})
    return frame(struct.pack("<8sHI", packed.MAGIC, packed.VERSION, len(raw)) + raw, payload)


def _ccz_of(plain: bytes) -> bytes:
    return frame(compressed.MAGIC, lzma.compress(plain, preset=0))


def _ccz_header(tensors: list) -> bytes:
    raw = json_bytes({"format": compressed.FORMAT, "config": SMALL.to_dict(), "meta": {},
                      "spec": {"weight_bits": 4, "act_bits": None, "edge_bits": 8}, "tensors": tensors})
    return _ccz_of(struct.pack("<I", len(raw)) + raw)


def _bomb() -> bytes:
    """An LZMA stream of a few KB that inflates to 1 GiB (built in 64 MiB pieces)."""
    encoder, zeros = lzma.LZMACompressor(preset=0), bytes(64 << 20)
    return frame(compressed.MAGIC, b"".join(encoder.compress(zeros) for _ in range(16)) + encoder.flush())


# --------------------------------------------------------------------------- the cases
def cases(workdir: Path) -> dict[str, tuple[str, object]]:
    """Case name -> (suffix, bytes or a function writing the file at a path)."""
    marker = workdir / "pickle_ran"
    huge_config = {**SMALL.to_dict(), "conv_channels": [100_000, 100_000, 100_000], "fc_features": [100_000]}
    stride0 = torch.zeros(1).expand(*HUGE)

    def oversized(path: Path) -> None:  # a sparse file on disk: no real bytes written
        with open(path, "wb") as f:
            f.truncate(MAX_FILE_BYTES + 1)

    return {
        "pt: meta nested 200,000 lists deep": (".pt", _torch_zip_with(_deep_pickle(checkpoint.FORMAT))),
        "pt: a 20000x20000 stride-0 tensor (4 bytes stored)": (".pt", _pt(state_dict={"w": stride0})),
        "pt: config with 100,000-wide layers, signed": (".pt", _pt(config=huge_config)),
        "pt: tensor shapes that do not fit the config, signed": (".pt", _pt(config={**SMALL.to_dict(),
                                                                                  "fc_features": [32]})),
        "pt: pickle that runs os.system": (".pt", _torch_zip_with(_code_pickle(marker))),
        "pt: file larger than any model (sparse on disk)": (".pt", oversized),
        "int8: config with 100,000-wide layers, signed": (".int8", _signed({
            "format": int8.FORMAT, "config": huge_config, "backend": "x86", "state_dict": {}, "meta": {}})),
        "int8: a 20000x20000 stride-0 tensor, signed": (".int8", _signed({
            "format": int8.FORMAT, "config": SMALL.to_dict(), "backend": "x86", "state_dict": {"w": stride0},
            "meta": {}})),
        "int8 pt2e: a signed archive that is no exported program": (".int8", _signed({
            "format": int8.PT2E_FORMAT, "config": SMALL.to_dict(), "meta": {},
            "program": torch.frombuffer(bytearray(b"PK\x03\x04" + bytes(4096)), dtype=torch.uint8)})),
        "int8 pt2e: a program stored as float32, signed": (".int8", _signed({
            "format": int8.PT2E_FORMAT, "config": SMALL.to_dict(), "meta": {}, "program": torch.zeros(1024)})),
        "sparse: header nested 200,000 lists deep": (".sparse", _sparse_deep()),
        "sparse: header length of 4 GiB": (".sparse", struct.pack("<8sII", sparse.MAGIC, sparse.VERSION,
                                                                     0xFFFFFFFF) + b"{}" * 8),
        "sparse: relative tensor claiming 400M values": (".sparse", _sparse_with({"tensors": [
            {"name": "w", "shape": HUGE, "dtype": "float32", "encoding": "relative", "nnz": 0,
             "index_bytes": 0, "value_bytes": 0, "value_dtype": "float32"}]})),
        "sparse: shape that does not match its bytes": (".sparse", _sparse_with({"tensors": [
            {"name": "w", "shape": [3, 3], "dtype": "float32", "encoding": "dense", "nnz": 9,
             "index_bytes": 0, "value_bytes": 8}]}, bytes(8))),
        "sparse: config with 100,000-wide layers": (".sparse", _sparse_with({"config": huge_config, "tensors": []})),
        "packed: codes claiming 400M values": (".packed", _packed_with([
            {"name": "w", "shape": HUGE, "offset": 0, "nbytes": 2, "kind": "codes", "bits": 4}], bytes(2))),
        "ccz: LZMA bomb inflating to 1 GiB": (".ccz", _bomb()),
        "ccz: sparse codes claiming 400M values": (".ccz", _ccz_header([
            {"name": "w", "shape": HUGE, "offset": 0, "nbytes": 0, "kind": "sparse_codes", "bits": 4,
             "entries": 0, "gap_bytes": 0}])),
    }


def _high_water_kb() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _rss_kb() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def run_cases(workdir: Path) -> list[dict]:
    """Load every case; per case: the error's type and message, peak memory growth (MB), seconds,
    and whether the pickle marker appeared."""
    workdir.mkdir(parents=True, exist_ok=True)
    load(save(build_model(SMALL), workdir / "warm.pt"))  # imports and caches warmed outside the cases
    import torchao.quantization.pt2e  # noqa: F401  (the PT2E loader's imports: not the file's cost)
    from torch._export.serde import serialize  # noqa: F401
    rows = []
    for name, (suffix, content) in cases(workdir).items():
        path = workdir / f"case{suffix}"
        content(path) if callable(content) else path.write_bytes(content)
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
        before, start = _rss_kb(), time.perf_counter()
        try:
            load(path)
            error, message = None, ""
        except Exception as err:  # noqa: BLE001 -- the point is to see which
            error, message = type(err), str(err)
        rows.append({"case": name, "error": error.__name__ if error else "loaded",
                     "model_file_error": bool(error and issubclass(error, ValueError)
                                              and error.__module__.startswith("helpers.storage")),
                     "message": message, "peak_mb": round((_high_water_kb() - before) / 1024, 1),
                     "seconds": round(time.perf_counter() - start, 3),
                     "pickle_ran": (workdir / "pickle_ran").exists()})
        path.unlink()
    return rows


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = ["| crafted file | error | peak memory | time |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | `{r['error']}` | {r['peak_mb']:.1f} MB | {r['seconds']:.2f} s |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        results = run_cases(Path(folder))
    if "--json" in sys.argv:
        print(json.dumps(results))
    else:
        print(table(results))
        for r in results:
            print(f"- {r['case']}: {r['message'][:240]}")

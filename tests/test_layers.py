"""The import layers of ``helpers/`` (``../shared/DESIGN.md``): every import, at module level or
inside a function, points to the same layer or one below it, and no files import each other in a
loop. A new module must be given a layer here."""
import ast
from pathlib import Path

from helpers.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "helpers"
LAYERS = {  # lowest first
    "core": ["paths", "data", "models", "inputs", "io_utils", "counting", "provenance", "records"],
    "methods": ["pruning", "quantization", "training"],
    "storage": ["storage"],
    "measuring": ["speed", "verdicts", "results", "comparison"],
    "notebooks": ["artifacts", "plots", "widgets", "live", "exercises", "run_notebooks", "benchmark", "colab",
                  "claims"],
}
LEVEL = {top: level for level, tops in enumerate(LAYERS.values()) for top in tops}
NAME = dict(enumerate(LAYERS))


def _module_of(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The ``helpers.*`` modules ``path`` imports (relative imports resolved), anywhere in the file."""
    module, found = _module_of(path), set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("helpers")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if base.startswith("helpers"):
                submodules = {f"{base}.{a.name}" for a in node.names
                              if (PACKAGE.parent / f"{base}.{a.name}".replace(".", "/")).with_suffix(".py").exists()}
                found |= submodules if len(submodules) == len(node.names) else submodules | {base}
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_of(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}


def _top(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_every_module_has_a_layer():
    missing = sorted({_top(m) for m in _graph() if _top(m) and _top(m) not in LEVEL and _top(m) != "__main__"})
    assert not missing, f"give these modules a layer in tests/test_layers.py: {missing}"


def test_imports_never_point_up_a_layer():
    up = [f"{m} ({NAME[LEVEL[_top(m)]]}) -> {t} ({NAME[LEVEL[_top(t)]]})"
          for m, targets in _graph().items() if _top(m) in LEVEL
          for t in targets if _top(t) in LEVEL and LEVEL[_top(t)] > LEVEL[_top(m)]]
    assert not up, "imports that run back up the layers:\n" + "\n".join(up)


def test_no_files_import_each_other_in_a_loop():
    graph, index, low, stack, on_stack, loops = _graph(), {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.add(item)
                if item == node:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not loops, f"files that import each other in a loop: {loops}"

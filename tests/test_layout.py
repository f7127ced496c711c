"""The package's shape: one idea per module means no module needs another that needs it back."""

import ast
from pathlib import Path

import tvlib

PACKAGE = Path(tvlib.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every tvlib module a file imports, at the top or inside a function (a lazy import still makes a cycle)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tvlib"):
            names = [node.module] if node.module != "tvlib" else [f"tvlib.{a.name}" for a in node.names]
            found.update(n.split(".")[1] for n in names if "." in n)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("tvlib."))
    return found - {path.stem}


def test_no_two_tvlib_modules_import_each_other_directly_or_around_a_loop():
    graph = {p.stem: _imports(p) & {q.stem for q in PACKAGE.glob("*.py")} for p in PACKAGE.glob("*.py")}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join(trail + [node, nxt])}"
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert {"models", "tiny", "runs", "beyond"} <= set(graph)  # the test reads the real package

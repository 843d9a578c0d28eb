"""Checks the house rules a newcomer relies on; `make lint` runs it.

    python scripts/check_layout.py

- no import circle between the modules of python/minilm_fast (imports inside functions count:
  a deferred import hides a circle, it does not remove it; `if TYPE_CHECKING:` blocks do not);
- no module importing another module's private (`_`-prefixed) names (a private module's public
  names are fine: `from ._hub import resolve_model`, not `from .cli import _read_texts`);
- no Python module over MAX_MODULE_LINES lines;
- README.md under MAX_README_LINES lines (it is for users; the rest belongs in docs/).

Prints every breach and exits 1 if there is one.
"""

from __future__ import annotations

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "minilm_fast"
MAX_MODULE_LINES = 500
MAX_README_LINES = 200


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for rest in child.orelse:
                    visit(rest)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def edges(path: pathlib.Path, text: str, modules: set[str], problems: list[str]) -> set[str]:
    """The modules of ours that `path` (holding `text`) imports; private-name imports go to
    `problems`."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _imports(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names if alias.name in modules}
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, node.module] if node.module else base)
        else:
            source = node.module or ""
        if source not in modules:
            continue
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule in modules:
                targets.add(submodule)
                continue
            targets.add(source)
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                where = path.relative_to(ROOT)
                problems.append(f"{where}: imports private {alias.name} from {source}")
    # Importing a.b also runs the package a first, but a module of a package that a's __init__
    # is already running gets the half-built package back, which is harmless unless it reads
    # a name from it; that read is the `from . import name` edge to the package above.
    targets.discard(name)
    return targets


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def main() -> int:
    problems: list[str] = []
    texts = {p: p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}
    paths = list(texts)
    modules = {module_name(p) for p in paths}
    graph = {module_name(p): edges(p, text, modules, problems) for p, text in texts.items()}
    for component in circles(graph):
        problems.append("import circle: " + " <-> ".join(component))
    for path, text in texts.items():
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            problems.append(f"{path.relative_to(ROOT)}: {lines} lines (> {MAX_MODULE_LINES})")
    readme = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    if readme > MAX_README_LINES:
        problems.append(f"README.md: {readme} lines (> {MAX_README_LINES})")
    for problem in problems:
        print(problem)
    print(f"check_layout: {len(paths)} modules, README {readme} lines, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

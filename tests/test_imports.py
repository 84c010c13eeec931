"""The direction of imports (docs/ARCHITECTURE.md): codec/, format/ and io/ never import the layers above
them (api, distributed, the command line), format/ and io/ never import codec/, and no two modules of the
package import each other. Imports inside functions count too."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "e2ecompress"
ABOVE = ("e2ecompress.api", "e2ecompress.distributed", "e2ecompress.cli", "e2ecompress.commands")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> the package's modules it imports (a `from package import name` counts as the
    submodule when there is one)."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                for a in node.names:
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base)
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def _under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_lower_layers_do_not_import_upwards():
    graph = _imports()
    for name, deps in graph.items():
        if _under(name, "e2ecompress.codec", "e2ecompress.format", "e2ecompress.io"):
            assert not [d for d in deps if _under(d, *ABOVE)], name
        if _under(name, "e2ecompress.format", "e2ecompress.io"):
            assert not [d for d in deps if _under(d, "e2ecompress.codec")], name


def test_no_two_modules_import_each_other():
    graph = _imports()
    mutual = [(a, b) for a, b in itertools.combinations(sorted(graph), 2) if b in graph[a] and a in graph[b]]
    assert mutual == []

"""The package's shape: its modules import one another one way only, and each stays small enough to read.

The imports are read from the source with ``ast``, not by importing: every
import counts, at module level, inside a function or under ``if
TYPE_CHECKING``, since each is a dependency a reader has to follow and a
cycle among them, however well hidden from the interpreter, means two
modules that cannot be understood one without the other.
"""

import ast
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "igor"
MAX_LINES = 500


def _modules() -> Dict[str, Path]:
    return {path.stem: path for path in sorted(PACKAGE.glob("*.py"))}


def _imports(name: str, path: Path, modules: Set[str]) -> Set[str]:
    """The igor modules that module ``name`` imports; ``__init__`` stands for the package itself."""
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "igor":
                    # "import igor.x" runs igor/__init__ as well as x.
                    found.add("__init__")
                    if len(parts) > 1 and parts[1] in modules:
                        found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "igor":
                    continue
                base = parts[1:]
            elif node.level == 1:
                base = (node.module or "").split(".") if node.module else []
            else:
                continue  # above the package: not one of its modules
            if base:
                found.add(base[0] if base[0] in modules else "__init__")
            else:
                # "from . import x": the submodule x when there is one, else a name of igor/__init__.
                for alias in node.names:
                    found.add(alias.name if alias.name in modules else "__init__")
    found.discard(name)
    return found


def _graph() -> Dict[str, Set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle, as the modules along it (the first repeated at the end), or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(name: str) -> Optional[List[str]]:
        state[name] = 1
        path.append(name)
        for other in sorted(graph.get(name, ())):
            if state.get(other) == 1:
                return path[path.index(other):] + [other]
            if other not in state:
                found = visit(other)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def test_the_reader_sees_the_imports_it_must():
    # The checks below are only as good as the parser: it must see each kind of import.
    graph = _graph()
    assert "frames" in graph["connection"]  # from .frames import (...)
    assert "static" in graph["transport"]  # from . import static
    assert "api" in graph["core"]
    assert "typescript" in graph["__main__"]  # inside a function
    assert {"server", "client", "process"} <= graph["__init__"]  # under if TYPE_CHECKING


def test_no_module_imports_the_package_back():
    # igor/__init__ gathers the public names from every module; a module that
    # took one from it ("from . import __version__") would depend on all of them.
    graph = _graph()
    back = sorted(name for name, imported in graph.items() if "__init__" in imported)
    assert back == [], f"these modules import igor/__init__: {back}"


def test_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _sources_outside_tests() -> List[Path]:
    """Every tracked Python, JavaScript and TypeScript file that is not a test's: the package, the
    clients, the examples, the benchmarks and the scripts (built output is not tracked)."""
    root = PACKAGE.parent
    try:
        listed = subprocess.run(["git", "ls-files", "*.py", "*.js", "*.mjs", "*.ts"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked sources can't be listed")
    return [root / name for name in listed
            if "test" not in Path(name).parts[:-1] and not name.endswith(".d.ts")]


def test_no_module_is_over_500_lines():
    sources = _sources_outside_tests()
    assert PACKAGE / "server.py" in sources and PACKAGE.parent / "examples" / "demo" / "app.js" in sources
    long = {str(path.relative_to(PACKAGE.parent)): lines for path in sources
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"

"""The house rules a reviewer would otherwise check by hand: no import cycle (lazy imports
included), no diary in ``src/`` (dates, commits, issue numbers, benchmark figures), no
module importing another's private names, no module over ~400 lines without a reason."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 420  # about 400


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import, at any depth of the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for module, names in _imports(name, path):
            for taken in names:  # ``from pkg import module`` is an edge to the module
                if f"{module}.{taken}" in MODULES:
                    graph[name].add(f"{module}.{taken}")
            whole = not names or any(f"{module}.{t}" not in MODULES for t in names)
            if module in MODULES and module != name and whole:
                graph[name].add(module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_inside_the_package() -> None:
    """Lazy (function-level) imports count: a leaf that a dispatcher imports back is two
    modules, not one with an import hidden in a function."""
    graph = _graph()
    assert graph["despina.control.dispatch"] >= {"despina.control.runtime"}  # the graph sees edges
    assert _cycles(graph) == []


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = []
    for name, path in MODULES.items():
        for module, names in _imports(name, path):
            if not module.startswith("despina") or module == name:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [part for part in module.split(".") if part.startswith("_")]
            if private:
                offenders.append(f"{name} imports {private} from {module}")
    assert offenders == []


#: What a diary looks like: dates, commit hashes, issue numbers, measured figures.
DIARY = [
    (re.compile(r"\b20\d\d-\d\d-\d\d\b"), "a date"),
    (re.compile(r"\bcommit [0-9a-f]{7,40}\b"), "a commit hash"),
    (re.compile(r"\b(issue|ticket|PR) ?#?\d+\b|(^|\s)#\d+\b", re.IGNORECASE), "an issue number"),
    (re.compile(r"\d(\.\d+)?x (faster|slower|cheaper|fewer|more|the)\b"), "a speed-up figure"),
    (re.compile(r"\d(\.\d+)?\s?×"), "a ratio"),
    (re.compile(r"\breq(uests)?(/| per )s(econd)?\b"), "a throughput figure"),
    (re.compile(r"\b\d+(\.\d+)? ?(us|µs)\b"), "a timing"),
    (re.compile(r"\bfrom \d+(\.\d+)? ?%? to \d+(\.\d+)?"), "a before/after figure"),
    (re.compile(r"\b\d+(\.\d+)?-\d+(\.\d+)? ?%"), "a measured range"),
    (re.compile(r"\b(measured|benchmark(ed)?) here\b", re.IGNORECASE), "a lab note"),
]


def _prose(path: Path) -> list[tuple[int, str]]:
    """The comments and docstrings of a file: where a diary would be written."""
    text = path.read_text(encoding="utf-8")
    prose = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(text).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc and node.body:
                prose.append((node.body[0].lineno, doc))
    return prose


def diary_lines(path: Path) -> list[str]:
    found = []
    for line, text in _prose(path):
        flat = " ".join(text.split())
        for pattern, what in DIARY:
            match = pattern.search(flat)
            if match:
                found.append(f"{path.relative_to(SRC)}:{line}: {what}: {match.group(0)!r}")
    return found


def test_the_diary_finder_finds_each_kind(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        '"""Measured on 2026-12-04 after commit fe27b05 (issue 4)."""\n'
        "# 2.2x faster; 272 req/s; ~25 us; from 7.4 to 3.1; 3-14% more\n"
        "X = '2026-12-04 in a string is data, not a diary'\n",
        encoding="utf-8",
    )
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        kinds = {line.split(": ")[1] for line in diary_lines(sample)}
    finally:
        SRC = saved
    assert {"a date", "a commit hash", "an issue number", "a speed-up figure"} <= kinds
    assert {"a throughput figure", "a timing", "a before/after figure", "a measured range"} <= kinds


@pytest.mark.parametrize("path", sorted(MODULES.values()), ids=lambda p: str(p.relative_to(SRC)))
def test_no_diary_in_src(path: Path) -> None:
    assert diary_lines(path) == []


def test_modules_hold_one_thing() -> None:
    """A module over ~400 lines states at its top why it is one module."""
    long = []
    for path in MODULES.values():
        text = path.read_text(encoding="utf-8")
        reason = "one module because" in " ".join(text[:2000].split())
        if text.count("\n") > MAX_LINES and not reason:
            long.append(f"{path.relative_to(SRC)}: {text.count(chr(10))} lines")
    assert long == []


#: The one module per layer that reads Despina's settings from the environment.
SETTINGS_MODULES = {
    "despina.core.config",
    "despina.control.settings",
    "despina.serving.settings",
    "despina.security.settings",
}


def _env_reads(path: Path) -> list[str]:
    """``DESPINA_*`` names a module reads: os.environ.get/[...], os.getenv, env_flag."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        arg: ast.AST | None = None
        if isinstance(node, ast.Call) and node.args:
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "os.getenv", "env_flag", "environ.get"):
                arg = node.args[0]
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) in ("os.environ", "environ")
        ):
            arg = node.slice
        if isinstance(arg, ast.Constant) and str(arg.value).startswith("DESPINA_"):
            names.append(str(arg.value))
    return names


def test_settings_are_read_from_the_environment_in_one_module_per_layer() -> None:
    readers = {name: _env_reads(path) for name, path in MODULES.items()}
    elsewhere = {n: r for n, r in readers.items() if r and n not in SETTINGS_MODULES}
    assert elsewhere == {}
    assert all(readers[m] for m in SETTINGS_MODULES)  # the finder sees their reads


def test_every_environment_variable_is_in_the_configuration_table() -> None:
    docs = (SRC.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(DESPINA_[A-Z_]+)`", docs, re.MULTILINE))
    used = {
        m for path in MODULES.values() for m in re.findall(r"DESPINA_[A-Z_]+", path.read_text())
    }
    assert used - rows == set(), "add these to docs/configuration.md"
    assert rows - used == set(), "docs/configuration.md lists variables nothing reads"


def test_the_modules_dealt_first_exist() -> None:
    from tests.conftest import HEAVIEST_FIRST

    root = Path(__file__).parent.parent
    assert [m for m in HEAVIEST_FIRST if not (root / m).is_file()] == []

"""The layout holds: only the warehouse writes SQL that names its tables, and no module or function grows
past what a reader can follow (600 lines a module, 100 a function).

Both read the source with ``ast`` and name every offender as ``path:line``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from warehouse import tables
from warehouse.grants import SCHEMA_PREFIX

ROOT = Path(__file__).resolve().parents[1]

#: The floors above the warehouse: none of them may write SQL that names a warehouse table.
ABOVE_THE_WAREHOUSE = ("hub", "reports", "mpi", "expectations", "connectors", "schemas", "dags")
#: Left out of the size limits.
SIZE_EXEMPT = {"tests", "bench", "migrations"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100

# SQL is written in upper case here; lower-case SQL is recognised by phrases English prose does not use.
_SQL_UPPER = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|MERGE|FROM|JOIN|TRUNCATE|COPY|CREATE|ALTER|DROP|WITH|"
                        r"GRANT|REVOKE|VALUES|RETURNING)\b")
_SQL_LOWER = re.compile(r"\bselect\b.+\bfrom\b|\binsert\s+into\b|\bdelete\s+from\b|\bupdate\s+\S+\s+set\b|"
                        r"\btruncate\s+(table\s+)?\w+\.|\bcopy\s+\w+\.\w+|\bjoin\s+\w+\.\w+", re.IGNORECASE | re.DOTALL)
_QUALIFIED = re.compile(r'(?<![\w.])"?([A-Za-z_]\w*)"?\s*\.\s*"?([A-Za-z_]\w*)"?')


def _warehouse_names() -> set[tuple[str, str]]:
    names = {(t.schema, t.name) for t in tables.metadata.tables.values()}
    names |= {(s.schema, s.name) for s in tables.metadata._sequences.values()}
    return names


WAREHOUSE_NAMES = _warehouse_names()


def _python_files(folders: Iterator[Path] | tuple[Path, ...]) -> Iterator[Path]:
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            if not any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(ROOT).parts):
                yield path


def _docstring_ids(tree: ast.AST) -> set[int]:
    """Ids of the string constants that are statements of their own (docstrings): text, not SQL."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant | ast.JoinedStr)}


def _texts(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of every string the module builds from literals: constants, f-strings (a formatted value
    becomes ``{}``) and ``+`` chains of them; docstrings left out."""
    skip = _docstring_ids(tree)
    inner: set[int] = set()
    for node in ast.walk(tree):
        if id(node) in skip or id(node) in inner:
            continue
        text = _literal_text(node, inner)
        if text is not None:
            yield node.lineno, text


def _literal_text(node: ast.AST, inner: set[int]) -> str | None:
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        inner.update(id(v) for v in node.values)
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal_text(node.left, inner), _literal_text(node.right, inner)
        if left is None and right is None:
            return None
        inner.update((id(node.left), id(node.right)))
        return (left if left is not None else "{}") + (right if right is not None else "{}")
    return None


def looks_like_sql(text: str) -> bool:
    return bool(_SQL_UPPER.search(text) or _SQL_LOWER.search(text))


def warehouse_names_in(text: str) -> list[str]:
    """The ``schema.table`` names of the warehouse (and any object of a department schema) in ``text``."""
    found = []
    for schema, name in _QUALIFIED.findall(text):
        if (schema, name) in WAREHOUSE_NAMES or schema.startswith(SCHEMA_PREFIX):
            found.append(f"{schema}.{name}")
    return found


def sql_naming_warehouse_tables(paths, root: Path = ROOT) -> list[str]:
    offences = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, text in _texts(tree):
            names = warehouse_names_in(text)
            if names and looks_like_sql(text):
                offences.append(f"{path.relative_to(root)}:{line}: SQL naming {', '.join(sorted(set(names)))}")
    return sorted(offences)


def test_no_sql_names_a_warehouse_table_outside_the_warehouse():
    offences = sql_naming_warehouse_tables(_python_files(tuple(ROOT / f for f in ABOVE_THE_WAREHOUSE)))
    assert not offences, ("SQL naming warehouse tables belongs in a query function of warehouse/ "
                          f"({len(offences)} statements):\n" + "\n".join(offences))


def test_the_sql_guard_recognises_sql(tmp_path):
    """The guard itself: statements are caught in constants, f-strings and concatenations; docstrings,
    prose and other schemas are not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Reads std.resident: SELECT from it, said in a docstring."""\n'
        'A = "SELECT count(*) FROM std.resident"\n'
        'B = f"INSERT INTO mpi.crosswalk ({columns}) VALUES (1)"\n'
        'C = "DELETE " + "FROM audit.finding WHERE " + where\n'
        'D = "select source from raw.record"\n'
        'E = "every std.resident record has a master id in mpi.crosswalk"\n'
        'F = "SELECT 1 FROM public.elsewhere"\n'
        'G = "SELECT * FROM dept_civil.master_person"\n'
        'def f():\n'
        '    """UPDATE mpi.golden SET nothing: a docstring."""\n'
        '    return sa.text("UPDATE mpi.golden SET name = NULL")\n',
        encoding="utf-8")
    offences = sql_naming_warehouse_tables([sample], root=tmp_path)
    assert [o.split(": ")[0] for o in offences] == [
        "sample.py:11", "sample.py:2", "sample.py:3", "sample.py:4", "sample.py:5", "sample.py:8"], offences


def _size_checked_files() -> Iterator[Path]:
    for path in _python_files((ROOT,)):
        parts = path.relative_to(ROOT).parts
        if not SIZE_EXEMPT.intersection(parts[:-1]) and parts[0] not in {"build", "dist"}:
            yield path


def _oversized(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(ROOT)
    found = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{where}: module of {lines} lines (at most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{where}:{node.lineno}: function {node.name} of {length} lines"
                             f" (at most {MAX_FUNCTION_LINES})")
    return found


def test_modules_and_functions_stay_readable():
    offenders = [o for path in _size_checked_files() for o in _oversized(path)]
    assert not offenders, "too long to follow:\n" + "\n".join(offenders)

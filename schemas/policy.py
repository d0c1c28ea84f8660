"""One way to read the hub's declarative policy files (sources, sharing, gate rules, survivorship, ledgers).

Every policy file is YAML with a mapping at the top level. :func:`read_policy` reads one and raises the
caller's own error class naming the file when it cannot be read or is not a mapping;
:func:`validate_policy` checks parsed content against a pydantic model and names each field at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml

M = TypeVar("M")


def read_policy(path: str | Path, error: type[Exception], what: str, *, allow_empty: bool = False) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path``; ``what`` names the kind of file in errors
    (``"sharing configuration"``), and ``error`` is the exception class raised."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from None
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        raise error(f"invalid {what} {path}: expected a mapping at the top level")
    return data


def validate_policy(data: Any, model: type[M], path: str | Path, error: type[Exception], what: str) -> M:
    """``data`` validated by the pydantic ``model``; every problem names its field path."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as exc:
        lines = [f"  field '{'.'.join(str(p) for p in e['loc']) or '(file)'}': {e['msg']}" for e in exc.errors()]
        raise error(f"invalid {what} {Path(path).name}:\n" + "\n".join(lines)) from None

"""The source registry: one declarative YAML file per departmental subsystem.

Each file is validated when it loads; an error names the file and the field.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SOURCES_DIR = Path(__file__).resolve().parent / "sources"
CANONICAL_FIELDS = ("name", "id_number", "sex", "birth_date", "address", "phone", "status")


class RegistryError(ValueError):
    """A registry file is missing, unreadable or invalid."""


class Pagination(BaseModel):
    model_config = ConfigDict(extra="forbid")
    style: Literal["page"] = "page"
    page_size: int = Field(100, ge=1, le=10_000)


class Source(BaseModel):
    """One departmental subsystem, as declared in its registry file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    title: str
    department: Literal["civil_affairs", "health", "social_security"]
    kind: Literal["rest"]
    conn_id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    resource: str
    pagination: Pagination = Pagination()
    primary_key: str
    schedule: str | None = None
    sharing_class: Literal["无条件", "有条件", "不予共享"]
    program: str
    mapping: dict[str, str]

    @field_validator("mapping")
    @classmethod
    def _known_fields(cls, mapping: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(mapping) - set(CANONICAL_FIELDS))
        if unknown:
            raise ValueError(f"unknown canonical field(s) {unknown}; expected some of {list(CANONICAL_FIELDS)}")
        if "id_number" not in mapping or "name" not in mapping:
            raise ValueError("must map at least 'name' and 'id_number'")
        return mapping


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"invalid source file {path.name}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(file)"
        lines.append(f"  field '{where}': {e['msg']}")
    return "\n".join(lines)


def load_source_file(path: Path) -> Source:
    """Load and validate one registry file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"cannot read source file {path.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"invalid source file {path.name}: expected a mapping at the top level")
    try:
        source = Source.model_validate(data)
    except ValidationError as exc:
        raise RegistryError(_format_error(path, exc)) from exc
    if source.name != path.stem:
        raise RegistryError(f"invalid source file {path.name}: field 'name' is {source.name!r}, "
                            f"but must equal the file name {path.stem!r}")
    return source


@lru_cache(maxsize=4)
def load_registry(directory: Path = SOURCES_DIR) -> dict[str, Source]:
    """All sources declared in ``directory``, by name."""
    files = sorted(p for p in directory.glob("*.yaml") if re.match(r"^[a-z]", p.name))
    return {s.name: s for s in (load_source_file(p) for p in files)}


def get_source(name: str) -> Source:
    registry = load_registry()
    if name not in registry:
        raise RegistryError(f"unknown source {name!r}; known sources: {', '.join(sorted(registry)) or 'none'}")
    return registry[name]

"""The source registry: one declarative YAML file per departmental subsystem.

A file says what kind of source it is (rest / file / sql), which Airflow connection reaches it
(secrets never in the file), how to page and authenticate, the incremental cursor, the primary
key, the fields the source sends, and how its fields map to the canonical resident record. Each
file is validated when it loads; an error names the file and the field. Adding a subsystem whose
protocol is a supported kind needs no Python code.

Deletions: a source with an incremental cursor learns of deleted records either from its deletion
flag (``deleted``) or from a complete extract. A source with a cursor and no deletion flag must
declare ``full_extract_every_days``; leaving it out is an error, not a silent default. When the
last complete extract of such a source is older than that, the next load is a complete one, and
what it no longer sends is recorded as deleted. Sources with a deletion flag may declare it too.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.policy import read_policy

SOURCES_DIR = Path(__file__).resolve().parent / "sources"
CANONICAL_FIELDS = ("name", "id_number", "sex", "birth_date", "address", "phone", "status", "status_date")


class RegistryError(ValueError):
    """A registry file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Auth(_Strict):
    """Token login: POST ``path`` with ``{"username", "password"}``; the token sits at ``token_field``."""

    path: str
    token_field: str = "access_token"  # dotted path into the answer, e.g. result.token
    header: str = "Authorization"
    prefix: str = "Bearer "


class Pagination(_Strict):
    style: Literal["page", "offset", "cursor"]
    page_param: str = "page"
    offset_param: str = "offset"
    cursor_param: str = "cursor"
    size_param: str = "size"
    page_size: int = Field(500, ge=1, le=10_000)


class Response(_Strict):
    """Where things sit in the answer (dotted paths)."""

    records: str
    total: str
    next_cursor: str | None = None


class Incremental(_Strict):
    """Extract only what changed since the last run: ``field`` holds the update time.

    Update times are read in the source's own format (``format``, a strptime format, or else the
    common formats are recognised); times without a UTC offset are in ``timezone``. Each extract
    asks for the changes since the cursor less ``overlap_minutes``, so that a record committed late
    with a time at or just before the cursor is still received; records received again unchanged
    count as duplicates.
    """

    field: str
    param: str | None = None  # REST: the query parameter that takes the last cursor
    format: str | None = None
    timezone: str = "Asia/Shanghai"
    overlap_minutes: float = Field(10, gt=0, le=7 * 24 * 60)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}; e.g. Asia/Shanghai") from None
        return zone

    @field_validator("format")
    @classmethod
    def _readable_format(cls, fmt: str | None) -> str | None:
        sample = dt.datetime(2026, 11, 20, 22, 5, 9, tzinfo=dt.UTC)
        try:
            dt.datetime.strptime(sample.strftime(fmt), fmt) if fmt else None
        except ValueError:
            raise ValueError(f"{fmt!r} is not a date-and-time format that can be read back") from None
        if fmt and "%Y" not in fmt:
            raise ValueError(f"{fmt!r} has no four-digit year (%Y)")
        return fmt


class Deleted(_Strict):
    """A logical-deletion flag: a record whose ``field`` equals ``value`` is a tombstone."""

    field: str
    value: str


class _SourceBase(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    title: str
    department: Literal["civil_affairs", "health", "social_security"]
    sharing_class: Literal["无条件", "有条件", "不予共享"]
    program: str
    schedule: str | None = None
    conn_id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    resource: str
    primary_key: str
    fields: list[str] = Field(min_length=1)
    mapping: dict[str, str]
    codes: dict[str, dict[str, int]] = Field(default_factory=dict)
    date_formats: list[str] = Field(default_factory=list)
    incremental: Incremental | None = None
    deleted: Deleted | None = None
    # a complete extract when the last one is older than this many days: it finds the records deleted
    # at a source that has no deletion flag (see _full_extract_schedule)
    full_extract_every_days: int | None = Field(None, ge=1, le=366)
    # fields that change while the record does not, such as a ledger's row number (序号), renumbered
    # whenever a row is added or removed: left out of the content hash, so they make no new version
    volatile_fields: list[str] = Field(default_factory=list)

    @field_validator("mapping")
    @classmethod
    def _known_fields(cls, mapping: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(mapping) - set(CANONICAL_FIELDS))
        if unknown:
            raise ValueError(f"unknown canonical field(s) {unknown}; expected some of {list(CANONICAL_FIELDS)}")
        if "id_number" not in mapping or "name" not in mapping:
            raise ValueError("must map at least 'name' and 'id_number'")
        return mapping

    @model_validator(mode="after")
    def _mapped_fields_are_declared(self):
        declared = set(self.fields)
        used = {self.primary_key, *self.mapping.values()}
        used |= {x.field for x in (self.incremental, self.deleted) if x is not None}
        missing = sorted((used | set(self.volatile_fields)) - declared)
        if missing:
            raise ValueError(f"field(s) {missing} are used but not listed in 'fields'")
        clash = sorted(set(self.volatile_fields) & used)
        if clash:
            raise ValueError(f"volatile field(s) {clash} are read by the hub (primary key, mapping, cursor or deletion"
                             " flag); a change there is a change of the record")
        return self

    @model_validator(mode="after")
    def _full_extract_schedule(self):
        """An incremental extract never sees a record that vanished from the source. A source with a
        deletion flag reports its deletions; one without must declare ``full_extract_every_days``
        (an error, not a default: how often a whole extract may run is the platform's call). The
        setting needs a cursor: without one every extract of the source is complete already."""
        if self.full_extract_every_days is not None and self.incremental is None:
            raise ValueError("full_extract_every_days needs an incremental cursor: without one every extract of this"
                             " source is complete")
        if self.incremental is not None and self.deleted is None and self.full_extract_every_days is None:
            raise ValueError("a source with an incremental cursor and no deletion flag ('deleted') never sees the"
                             " records deleted at the source: declare full_extract_every_days (e.g. 7)")
        return self


class RestSource(_SourceBase):
    kind: Literal["rest"]
    auth: Auth
    pagination: Pagination
    response: Response

    @model_validator(mode="after")
    def _cursor_needs_next(self):
        if self.pagination.style == "cursor" and not self.response.next_cursor:
            raise ValueError("cursor pagination needs response.next_cursor")
        return self


class FileSource(_SourceBase):
    """Nightly file drops: ``resource`` is a glob under the connection's folder; each file a full snapshot.

    A file is a snapshot only when it parsed whole and holds at least ``min_snapshot_share`` of the
    records of the source's last complete file; otherwise it is *incomplete*: its good rows land, it
    deletes nothing, and it is moved into ``rejected/`` with a reason file. ``on_incomplete`` says what
    the load does then: ``fail`` (the load ends with an error once its good rows are committed) or
    ``wait`` (a warning; the next complete file makes the snapshot). A source that really shrank that
    much needs ``min_snapshot_share`` lowered for one load. A file is read only once its size and
    modification time have stayed the same for ``settle_seconds`` and, when ``completion_marker`` is
    set (e.g. ``"{name}.ok"`` or ``"{stem}.done"``), once that marker file sits beside it.
    """

    kind: Literal["file"]
    on_incomplete: Literal["fail", "wait"] = "fail"
    min_snapshot_share: float = Field(0.8, ge=0, le=1)
    settle_seconds: float = Field(1.0, ge=0, le=600)
    completion_marker: str | None = None

    @field_validator("completion_marker")
    @classmethod
    def _marker_names_the_file(cls, marker: str | None) -> str | None:
        if marker is None:
            return None
        try:
            named = marker.format(name="x.csv", stem="x")
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"{marker!r} may use only {{name}} (the file's name) and {{stem}} (without its"
                             " suffix)") from None
        if named == marker or "/" in named or "\\" in named:
            raise ValueError(f"{marker!r} must name a file beside the data file with {{name}} or {{stem}},"
                             " e.g. '{name}.ok'")
        return marker


class SqlSource(_SourceBase):
    """A table of a legacy database reached through SQLAlchemy; ``resource`` is the table."""

    kind: Literal["sql"]


# a new kind of source adds its model here (and its extractor to connectors.kinds.KINDS)
AnySource = RestSource | FileSource | SqlSource
Source = Annotated[AnySource, Field(discriminator="kind")]


class _File(BaseModel):
    source: Source


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"invalid source file {path.name}:"]
    for e in err.errors():
        loc = [str(p) for p in e["loc"][1:] if p not in ("rest", "file", "sql")]  # drop the wrapper and the tag
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = ["kind"]
        lines.append(f"  field '{'.'.join(loc) or '(file)'}': {e['msg']}")
    return "\n".join(lines)


def load_source_file(path: Path) -> AnySource:
    """Load and validate one registry file."""
    data = read_policy(path, RegistryError, "source file")
    try:
        source = _File.model_validate({"source": data}).source
    except ValidationError as exc:
        raise RegistryError(_format_error(path, exc)) from exc
    if source.name != path.stem:
        raise RegistryError(f"invalid source file {path.name}: field 'name' is {source.name!r}, "
                            f"but must equal the file name {path.stem!r}")
    return source


@lru_cache(maxsize=4)
def load_registry(directory: Path = SOURCES_DIR) -> dict[str, AnySource]:
    """All sources declared in ``directory``, by name."""
    files = sorted(p for p in directory.glob("*.yaml") if re.match(r"^[a-z]", p.name))
    return {s.name: s for s in (load_source_file(p) for p in files)}


def source_departments(directory: Path = SOURCES_DIR) -> dict[str, str]:
    """Source name → the department that owns it, from the registry."""
    return {name: source.department for name, source in load_registry(directory).items()}


def get_source(name: str) -> AnySource:
    """The registered source ``name``; an unknown name lists the known ones."""
    registry = load_registry()
    if name not in registry:
        raise RegistryError(f"unknown source {name!r}; known sources: {', '.join(sorted(registry)) or 'none'}")
    return registry[name]

"""Files the hub writes with personal data: where they go, who may read them, and the record of each.

Ledgers (台账), findings workbooks, explanation pages and reports hold names, ID numbers or record
references. The hub writes them

* **into its own export folder** by default: ``HUB_EXPORT_DIR``, else ``exports/`` under the hub's
  state folder (``HUB_HOME``, default ``.hub/``), created readable by its owner only (0700) — never
  into whatever folder the command happens to run in. An explicit ``--out`` is honoured: the person
  chose it.
* **readable by the owner only** (0600), wherever they go: a file is created with that mode (there
  is no moment at which it is readable by others) and moved into place whole.
* **recorded** in ``audit.export_log``: who (the operating-system user, or the API key when served),
  for which department, what (the kind and the arguments, ID and phone numbers masked), why (the
  purpose, when given), where (the path) and how many rows — in the same transaction as the read,
  so that a file whose record cannot be written is removed again (:func:`recorded`).
"""

from __future__ import annotations

import getpass
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from hub import settings
from schemas.masking import mask_id_number, mask_phone
from warehouse.tables.audit import audit_export_log

KINDS = ("ledger", "findings", "explain", "report")
MAX_TEXT = 200  # characters of an argument or purpose kept in the log

# An ID number (15 or 18 characters, last maybe X) or a mobile phone number, anywhere in a text.
_ID_NUMBER = re.compile(r"(?<!\d)\d{17}[\dXxＸｘ](?!\d)|(?<!\d)\d{15}(?!\d)")
_PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def export_dir() -> Path:
    """The hub's export folder: ``HUB_EXPORT_DIR``, else ``HUB_HOME/exports``."""
    configured = os.environ.get("HUB_EXPORT_DIR")
    return Path(configured).expanduser().resolve() if configured else settings.hub_home() / "exports"


def private_dir(path: Path | None = None) -> Path:
    """The export folder (or ``path``, a folder the hub owns), created owner-only (0700); an existing
    one is tightened to 0700. Returns it."""
    folder = Path(path) if path is not None else export_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def target(out: Path | str | None, filename: str) -> Path:
    """Where an export goes: ``out`` when it names a file; ``out/filename`` when it is a folder; the
    export folder (made private) when it is None. Folders the person named are used as they are."""
    if out is None:
        return private_dir() / filename
    out = Path(out)
    return out / filename if out.is_dir() else out


def os_user() -> str:
    """Who exports from a shell: the operating-system user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        return f"uid {os.getuid()}"


def mask_text(text: object) -> str:
    """``text`` with every ID number and mobile phone number in it masked, cut to :data:`MAX_TEXT`."""
    masked = _ID_NUMBER.sub(lambda m: mask_id_number(m.group(0)), str(text))
    masked = _PHONE.sub(lambda m: mask_phone(m.group(0)), masked)
    return masked if len(masked) <= MAX_TEXT else masked[:MAX_TEXT - 1] + "…"


def describe(kind: str, arguments: Mapping[str, object]) -> str:
    """The ``what`` of a record: ``ledger kind=gaoling community=城关镇 release=current``, masked;
    arguments that are None are left out."""
    parts = [f"{name}={mask_text(value)}" for name, value in arguments.items() if value is not None and value != ""]
    return mask_text(" ".join([kind, *parts]))


def write_private(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Write a file owner-only (0600) and atomically: ``write(tmp)`` fills a file created 0600 beside
    ``path`` (missing folders are created 0700), which then replaces ``path``. Returns the path."""
    path = Path(path)
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:40]}-", suffix=path.suffix, dir=path.parent)  # 0600
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o600)  # already 0600 (mkstemp); a writer that re-created the file must not widen it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass
class Export:
    """One recorded export under way: the transaction to read in, and what has been written."""

    conn: sa.Connection
    actor: str
    purpose: str | None = None
    written: list[Path] = field(default_factory=list)
    export_ids: list[int] = field(default_factory=list)

    def record(self, kind: str, path: Path | str, *, arguments: Mapping[str, object], rows: int | None,
               department: str | None = None) -> int:
        """Record a file written in this export (and remember it, to remove it should the record fail)."""
        path = Path(path).resolve()
        self.written.append(path)
        export_id = record_export(self.conn, kind, path, arguments=arguments, rows=rows, department=department,
                                  actor=self.actor, purpose=self.purpose)
        self.export_ids.append(export_id)
        return export_id

    def write(self, kind: str, path: Path | str, text: str | bytes, *, arguments: Mapping[str, object],
              rows: int | None, department: str | None = None) -> Path:
        """Write ``text`` to ``path`` owner-only and record it."""
        def fill(tmp: Path) -> None:
            if isinstance(text, bytes):
                tmp.write_bytes(text)
            else:
                tmp.write_text(text, encoding="utf-8")

        path = Path(path)
        write_private(path, fill)
        self.record(kind, path, arguments=arguments, rows=rows, department=department)
        return path


def record_export(conn: sa.Connection, kind: str, path: Path | str | None, *, arguments: Mapping[str, object],
                  rows: int | None, department: str | None = None, actor: str | None = None,
                  purpose: str | None = None) -> int:
    """Append one row to ``audit.export_log``; returns its id. ``arguments`` and ``purpose`` are masked."""
    if kind not in KINDS:
        raise ValueError(f"unknown export kind {kind!r}; known kinds: {', '.join(KINDS)}")
    values = {"actor": mask_text(actor or os_user()), "department": department, "kind": kind,
              "what": describe(kind, arguments), "purpose": mask_text(purpose) if purpose else None,
              "path": str(path) if path is not None else None, "rows": rows}
    return conn.execute(sa.insert(audit_export_log).values(**values).returning(audit_export_log.c.export_id)
                        ).scalar_one()


@contextmanager
def recorded(engine: sa.Engine | None = None, *, by: str | None = None, purpose: str | None = None
             ) -> Iterator[Export]:
    """One transaction for the read and the record of what it exported: files written in it are
    removed again when anything fails before the record is committed (no unrecorded export stays).

    ``by`` is the actor (default: the operating-system user; the API passes its key id)."""
    export = Export(conn=None, actor=by or os_user(), purpose=purpose)  # type: ignore[arg-type]
    try:
        with (engine or settings.engine()).begin() as conn:
            export.conn = conn
            yield export
    except BaseException:
        for path in export.written:
            path.unlink(missing_ok=True)
        raise


def write_export(kind: str, filename: str, text: str | bytes, *, out: Path | str | None = None,
                 arguments: Mapping[str, object], rows: int | None = None, department: str | None = None,
                 purpose: str | None = None, by: str | None = None, engine: sa.Engine | None = None) -> Path:
    """Write one export (an explanation page, a report) and record it: into the export folder as
    ``filename``, or to ``out`` (a file, or a folder to put ``filename`` in); owner-only. Returns the path."""
    with recorded(engine, by=by, purpose=purpose) as export:
        return export.write(kind, target(out, filename), text, arguments=arguments, rows=rows, department=department)

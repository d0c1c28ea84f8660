"""What happens to a drop file once a load has taken it: moved aside into ``processed/`` (or ``rejected/`` with
the reason), readable by the hub's user only, and deleted from ``processed/`` after the retention."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path

from connectors.base import ExtractError
from connectors.connections import ConnectionConfigError
from connectors.registry import FileSource

log = logging.getLogger("connectors.files")

#: days a processed drop file is kept (``HUB_DROP_RETENTION_DAYS``)
DROP_RETENTION_DAYS = 30.0


def marker_of(path: Path, source: FileSource) -> Path | None:
    """The completion marker the source declares for ``path`` (None when it declares none)."""
    if not source.completion_marker:
        return None
    return path.with_name(source.completion_marker.format(name=path.name, stem=path.stem))


def drop_retention_days() -> float:
    """Days a processed drop file is kept: ``HUB_DROP_RETENTION_DAYS`` (default 30; 0 deletes them at
    the next ingest)."""
    raw = os.environ.get("HUB_DROP_RETENTION_DAYS", "").strip()
    if not raw:
        return DROP_RETENTION_DAYS
    try:
        days = float(raw)
    except ValueError:
        days = math.nan
    if not (0 <= days < math.inf):
        raise ConnectionConfigError(f"HUB_DROP_RETENTION_DAYS={raw!r} is not a number of days: set it to e.g. 30"
                                    " (how long processed drop files are kept; 0 deletes them at the next ingest)")
    return days


def expire_processed(source: FileSource, folder: Path, days: float, *, now: float | None = None) -> int:
    """Delete the source's files (and their completion markers) in ``processed/`` beside its drops
    (``wj_liudong/LDRK_*.csv`` → ``wj_liudong/processed/LDRK_*.csv``) that were taken more than ``days``
    days ago (by modification time, which the move into ``processed/`` sets). Returns how many files
    were deleted; a file that cannot be deleted is logged and left."""
    resource = Path(source.resource)
    cutoff = (time.time() if now is None else now) - days * 86400
    files = [p for p in sorted(folder.glob(str(resource.parent / "processed" / resource.name))) if p.is_file()]
    if source.completion_marker:
        markers = {marker_of(p, source) for p in files}
        files = [p for p in files if p not in markers]
    deleted = 0
    for path in files:
        try:
            if path.stat().st_mtime >= cutoff:
                continue
            path.unlink()
            deleted += 1
            marker = marker_of(path, source)
            if marker is not None:
                marker.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("%s: processed/%s is past its retention but could not be deleted (%s); delete it by hand",
                        source.name, path.name, exc.strerror or type(exc).__name__)
    if deleted:
        log.info("%s: %d processed file(s) older than %g days deleted", source.name, deleted, days)
    return deleted


def move_aside(path: Path, into: str, marker: Path | None):
    """Moves the file (and its completion marker) into the subfolder ``into``; with a reason, writes
    ``<file>.reason.txt`` beside it. A move that fails is an :class:`ExtractError` naming the file."""

    def move(reason: str | None = None) -> None:
        target = path.parent / into
        try:
            target.mkdir(mode=0o700, exist_ok=True)
            os.chmod(target, 0o700)
            if path.exists():
                _move_private(path, target / path.name)
            if marker is not None and marker.exists():
                _move_private(marker, target / marker.name)
            if reason is not None:
                _write_private(target / f"{path.name}.reason.txt", (reason + "\n").encode("utf-8"))
        except OSError as exc:
            raise ExtractError(f"{path.name}: could not be moved into {into}/ "
                               f"({exc.strerror or type(exc).__name__})") from None

    return move


def _move_private(path: Path, to: Path) -> None:
    """Move ``path`` to ``to`` readable by the hub's user only (0600), its modification time set to now
    (the retention counts from when the hub took the file). A file the hub's user does not own (so
    cannot chmod) is copied into a new 0600 file and the original removed."""
    try:
        os.chmod(path, 0o600)
    except PermissionError:
        with path.open("rb") as src, os.fdopen(os.open(to, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as dst:
            shutil.copyfileobj(src, dst)
        path.unlink()
    else:
        path.replace(to)
    os.utime(to)


def _write_private(path: Path, data: bytes) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # an older file of that name keeps its mode on O_TRUNC

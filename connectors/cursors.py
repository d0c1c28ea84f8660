"""Incremental cursors: the update times a source sends, read in the source's own text format.

A source writes its update times its own way (``2026-11-20T22:00:00``, ``2026-11-20 22:00:00``,
``20261120220000``, ``2026-11-20``, with or without a UTC offset); a time without an offset is in
the source's time zone (``incremental.timezone``). A value is read with ``incremental.format`` when
the source declares one, otherwise with the first of the common formats it matches exactly.

The cursor is the greatest update time received, kept in the source's own format so that it can
be sent back to the source. It never moves past the time the extract began: a record whose update
time lies further ahead than :data:`CLOCK_SKEW` is set aside (``cursor_in_future``), as is a record
whose update time cannot be read (``cursor_unparsable``); neither moves the cursor.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

#: How far a source's clock may run ahead of the hub's before its update times count as "in the future".
CLOCK_SKEW = dt.timedelta(minutes=5)

_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
_DATES = (("%Y-%m-%d", r"\d{4}-\d{2}-\d{2}"), ("%Y/%m/%d", r"\d{4}/\d{2}/\d{2}"))
_TIMES = (("%H:%M:%S.%f", r"\d{2}:\d{2}:\d{2}\.\d{1,6}"), ("%H:%M:%S", r"\d{2}:\d{2}:\d{2}"), ("%H:%M", r"\d{2}:\d{2}"))
#: (strptime format, exact pattern) of the update-time formats recognised without a declared format
FORMATS: tuple[tuple[str, re.Pattern], ...] = (
    *((f"{d}{sep}{t}", re.compile(f"{dp}{sep}{tp}")) for d, dp in _DATES for sep in ("T", " ") for t, tp in _TIMES),
    ("%Y%m%d%H%M%S", re.compile(r"\d{14}")),
    *((d, re.compile(dp)) for d, dp in _DATES),
    ("%Y%m%d", re.compile(r"\d{8}")),
)


@dataclass(frozen=True)
class Stamp:
    """An update time as the source wrote it (``text``) and the instant it means (``at``, in UTC), with what
    it takes to write another instant the same way (format, time zone, style of the UTC offset)."""

    text: str
    at: dt.datetime
    fmt: str
    tz: dt.tzinfo
    offset_style: str | None = None  # 'Z', '+08:00' or '+0800' when the text ends in an offset

    def write(self, at: dt.datetime) -> str:
        """``at`` written in this stamp's format, time zone and offset style."""
        local = at.astimezone(self.tz)
        text = local.strftime(self.fmt)
        if self.offset_style is None:
            return text
        if self.offset_style == "Z":
            return text + "Z"
        minutes = int(local.utcoffset().total_seconds()) // 60
        hours, rest = divmod(abs(minutes), 60)
        colon = ":" if ":" in self.offset_style else ""
        return f"{text}{'-' if minutes < 0 else '+'}{hours:02d}{colon}{rest:02d}"


def _offset_zone(offset: str) -> dt.tzinfo:
    if offset == "Z":
        return dt.UTC
    digits = offset[1:].replace(":", "")
    delta = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return dt.timezone(-delta if offset[0] == "-" else delta)


def read_stamp(value: object, *, zone: str, fmt: str | None = None) -> Stamp | None:
    """The update time in ``value`` (text, or a date or datetime from a database), or None when it cannot be
    read. ``zone`` is the time zone of times written without an offset; ``fmt`` a declared strptime format."""
    if isinstance(value, dt.datetime):
        value = value.isoformat(sep=" ")
    elif isinstance(value, dt.date):
        value = value.isoformat()
    elif isinstance(value, int) and not isinstance(value, bool):  # 20261120220000 from a numeric column
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if fmt:
        candidates, body, offset = [fmt], text, None
    else:
        found = _OFFSET.search(text)
        body, offset = (text[:found.start()], found.group(1)) if found and ":" in text[:found.start()] else (text, None)
        candidates = _formats_of(body)
    for candidate in candidates:
        try:
            parsed = _parse(body, candidate, exact=not fmt)
        except ValueError:
            continue
        if parsed.tzinfo is not None:  # a declared format with %z writes its own offset
            return Stamp(text, parsed.astimezone(dt.UTC), candidate, parsed.tzinfo)
        tz = _offset_zone(offset) if offset else ZoneInfo(zone)
        return Stamp(text, parsed.replace(tzinfo=tz).astimezone(dt.UTC), candidate, tz, offset)
    return None


_SHAPE = str.maketrans("0123456789", "9999999999")
_SHAPES: dict[str, list[str]] = {}  # the shape of a text (its ASCII digits as 9) → the FORMATS it matches


def _formats_of(body: str) -> list[str]:
    """The FORMATS ``body`` matches exactly; looked up once per shape of text (a page's update times share one)."""
    shape = body.translate(_SHAPE)
    found = _SHAPES.get(shape)
    if found is None:
        found = [f for f, pattern in FORMATS if pattern.fullmatch(body)]
        if len(_SHAPES) < 1024:
            _SHAPES[shape] = found
    return found


def _parse(body: str, fmt: str, *, exact: bool) -> dt.datetime:
    """``strptime(body, fmt)``; a text that matched one of the FORMATS exactly (``exact``) is read without
    strptime where the format allows (the same instant, or the same ValueError for an impossible date)."""
    if exact and body.isascii():
        if fmt == "%Y%m%d%H%M%S" or fmt == "%Y%m%d":
            return dt.datetime(int(body[:4]), int(body[4:6]), int(body[6:8]), *(
                (int(body[8:10]), int(body[10:12]), int(body[12:14])) if len(body) == 14 else ()))
        if fmt.startswith("%Y-%m-%d") and "%f" not in fmt:
            return dt.datetime.fromisoformat(body)
    return dt.datetime.strptime(body, fmt)


def later(a: Stamp | None, b: Stamp | None) -> Stamp | None:
    """The later of two update times (either may be None)."""
    return a if b is None or (a is not None and a.at >= b.at) else b


def stored_text(best: Stamp | None, started: dt.datetime) -> str | None:
    """The cursor to store: the greatest update time accepted, but never later than when the extract began."""
    if best is None:
        return None
    return best.text if best.at <= started else best.write(started)


def screen(records: list, field: str, *, started: dt.datetime, zone: str, fmt: str | None = None
           ) -> tuple[list, list[tuple[int, str, str]], Stamp | None]:
    """Split a page into the records to land and those set aside because of their update time.

    Returns the records to land, the set-aside ones as (position in the page, reason code, what is
    wrong — no personal data) and the greatest update time among the records to land. A record
    without an update time lands but does not move the cursor.
    """
    keep, aside, best = [], [], None
    for position, record in enumerate(records):
        value = record.get(field) if isinstance(record, dict) else None
        if value is None or (isinstance(value, str) and not value.strip()):
            keep.append(record)
            continue
        stamp = read_stamp(value, zone=zone, fmt=fmt)
        if stamp is None:
            aside.append((position, "cursor_unparsable", f"field {field!r} holds no update time in a known format"))
        elif stamp.at > started + CLOCK_SKEW:
            aside.append((position, "cursor_in_future", f"field {field!r} holds {stamp.text[:40]!r}, later than "
                          f"the extract began ({started:%Y-%m-%d %H:%M} UTC)"))
        else:
            keep.append(record)
            best = later(best, stamp)
    return keep, aside, best

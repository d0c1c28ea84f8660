"""The reports' rendering kit: one Jinja2 environment on ``reports/templates`` and the filters pages share.

Every page a report writes is a template file rendered here, with autoescape on: a value from the
warehouse or the caller is escaped wherever it lands. Pages are self-contained (inline CSS, images as
``data:`` URIs), so nothing they show is fetched from outside the machine.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import html
import os
from pathlib import Path

import jinja2
from markupsafe import Markup

__all__ = [
    "CHINA_STANDARD_TIME",
    "TEMPLATES",
    "TIME_LABEL",
    "beijing_time",
    "environment",
    "escape",
    "generated_time",
    "gx_percent",
    "number",
    "percent",
    "png_base64",
    "render",
    "utc_offset",
    "when",
    "write_page",
]

TEMPLATES = Path(__file__).parent / "templates"
#: The time zone pages show times in unless the caller gives another (the hub serves Chinese counties).
CHINA_STANDARD_TIME = dt.timezone(dt.timedelta(hours=8), "CST")
#: the label beside a time shown in China Standard Time
TIME_LABEL = "北京时间 (UTC+8)"


def escape(value: object) -> Markup:
    """``value`` as HTML text (quotes escaped too, so it is safe in attributes); None is empty."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def percent(rate: float | None) -> str:
    """A share (0–1) as a percentage with one decimal; never rounds a part up to 100% or down to 0%."""
    if rate is None:
        return "—"
    text = f"{rate * 100:.1f}%"
    if rate < 1 and text == "100.0%":
        return ">99.9%"
    if rate > 0 and text == "0.0%":
        return "<0.1%"
    return text


def gx_percent(value: float | None) -> str:
    """A percentage as Great Expectations reports it (0–100)."""
    return percent(None if value is None else value / 100)


def number(value: int | None) -> str:
    """A count with thousands separators, or a dash."""
    return "—" if value is None else f"{value:,}"


def when(value: dt.datetime | None, tz: dt.tzinfo | None = CHINA_STANDARD_TIME, short: bool = False) -> str:
    """A time in ``tz`` (to the second; to the minute when ``short``, for tables under a header naming the zone)."""
    if value is None:
        return "—"
    if tz is not None and value.tzinfo is not None:
        value = value.astimezone(tz)
    if short:
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat(sep=" ", timespec="seconds")


def beijing_time(value: dt.datetime | str | None, *, labelled: bool = True, sep: str = " ") -> str:
    """A time for people: China Standard Time to the second, labelled ``2026-12-07 10:15:03 北京时间 (UTC+8)``.
    ``value`` is a datetime or an ISO 8601 string; a naive one is taken as the machine's local time. None or
    empty: empty."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    value = value.astimezone(CHINA_STANDARD_TIME)
    text = f"{value:%Y-%m-%d}{sep}{value:%H:%M:%S}"
    return f"{text} {TIME_LABEL}" if labelled else text


def utc_offset(value: dt.datetime) -> str:
    """The offset of ``value``'s time zone as ``+08:00`` (empty for a naive time): the label beside the times."""
    offset = value.utcoffset()
    if offset is None:
        return ""
    minutes = int(offset.total_seconds() // 60)
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def generated_time(now: dt.datetime | None = None) -> dt.datetime:
    """The generation time a page shows: ``now`` (a naive one taken as the machine's local time), else now in China."""
    if now is None:
        return dt.datetime.now(CHINA_STANDARD_TIME)
    return now if now.tzinfo is not None else now.astimezone()


def png_base64(png: bytes) -> str:
    """PNG bytes as base64 text, for an ``<img src="data:image/png;base64,…">``."""
    return base64.b64encode(png).decode("ascii")


def _finalize(value: object) -> object:
    # every printed value goes through html.escape (quotes as &quot;), None prints as nothing
    return escape(value)


@functools.cache
def environment() -> jinja2.Environment:
    """The one Jinja2 environment of the reports (templates in ``reports/templates``, autoescape on)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, finalize=_finalize,
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(percent=percent, gx_percent=gx_percent, number=number, when=when, utc_offset=utc_offset,
                       png_base64=png_base64)
    return env


def render(template: str, **context: object) -> str:
    """Render the template file ``template`` (a name under ``reports/templates``) with ``context``."""
    return environment().get_template(template).render(**context)


def write_page(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a reader sees the old page or the new one, never half of one),
    readable by the hub's own user only (0600, from its creation: pages hold masked personal data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)  # an existing temporary file keeps its mode through O_CREAT
    tmp.replace(path)
    return path

"""The reporting calendar: which statistical report kinds the pipeline writes for a release.

Statistical reports (统计报表) are filed by the month, the quarter or the year, not after every release of the
index. Each kind says when it is due (``due:`` in ``reports/statistics.yaml``, the file's own ``due`` for the
kinds that name none): ``monthly``, ``quarterly``, ``yearly``, or ``every_release``. After a release the
pipeline writes a kind's forms when no release of the same period (by the release's local date) has had them
written yet — the first release of each month writes the monthly kinds, so their forms show the index as it
stood when the month began. Any form of any release can be made at any time with ``hub report``.

``HUB_HOME/reports/.calendar.json`` records, per kind, the release whose folder holds the period's forms and
the date their 本期 started after (``since``: for a kind counting ``since_previous``, the date of the previous
release the pipeline wrote it for — 上次报表 — so a monthly form counts the month, not the day). A kind whose
recorded folder was removed, or whose forms are not in it, is due again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reports import stat_reuse
from reports.report_spec import StatisticsFile

STATE = ".calendar.json"
DUE = ("every_release", "monthly", "quarterly", "yearly")


def period(due: str, day: dt.date) -> str:
    """The reporting period ``day`` falls in: ``2026-12``, ``2026-Q4``, ``2026``; ``every_release`` has none."""
    if due == "monthly":
        return f"{day:%Y-%m}"
    if due == "quarterly":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    if due == "yearly":
        return str(day.year)
    return ""


def read_state(root: Path) -> dict[str, dict]:
    """kind → ``{"release_no", "date", "since"}`` of the latest release the pipeline wrote it for."""
    try:
        data = json.loads((root / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("kinds", {}) if isinstance(data, dict) and data.get("version") == 1 else {}


def write_state(root: Path, kinds: dict[str, dict]) -> None:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".calendar-", suffix=".json", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"version": 1, "kinds": kinds}, f, ensure_ascii=False, sort_keys=True, indent=1)
    os.chmod(tmp, 0o600)
    os.replace(tmp, root / STATE)


@dataclass(frozen=True)
class Plan:
    """What the pipeline writes for one release: the kinds ``due`` with their ``since`` dates (None: the
    previous release's), and the kinds not due with the release whose folder holds their forms of the period."""

    release_no: int
    release_date: dt.date
    due: list[str]
    since: dict[str, dt.date | None]
    not_due: dict[str, int]

    def describe(self, config: StatisticsFile) -> str:
        """One line for the log: which kinds are not due and where their forms of the period are."""
        groups: dict[tuple[int, str], list[str]] = {}
        for kind, release_no in self.not_due.items():
            groups.setdefault((release_no, config.due_of(kind)), []).append(kind)
        return "; ".join(f"{', '.join(kinds)} ({rule}): the forms of {period(rule, self.release_date)} are those of "
                         f"release {n}" for (n, rule), kinds in sorted(groups.items()))


def _has_forms(root: Path, release_no: int, kind: str) -> bool:
    forms = stat_reuse.read_manifest(root / str(release_no))
    return any(key.startswith(f"{kind}/") for key in forms)


def plan(root: Path, kinds: list[str], config: StatisticsFile, *, release_no: int, release_date: dt.date,
         every_release: bool = False) -> Plan:
    """Which of ``kinds`` are due for the release (``every_release``: all of them, as if each kind said so)."""
    state = read_state(root)
    due: list[str] = []
    since: dict[str, dt.date | None] = {}
    not_due: dict[str, int] = {}
    for kind in kinds:
        rule = "every_release" if every_release else config.due_of(kind)
        last = state.get(kind)
        if rule == "every_release" or last is None or last["release_no"] > release_no:
            due.append(kind)  # ... an earlier release than the one last written for (after a rollback): anew
            since[kind] = None
        elif last["release_no"] == release_no:  # the same release again (a rerun of the task): the same 本期
            due.append(kind)
            since[kind] = dt.date.fromisoformat(last["since"]) if last.get("since") else None
        elif period(rule, dt.date.fromisoformat(last["date"])) != period(rule, release_date) \
                or not _has_forms(root, last["release_no"], kind):  # a new period, or the period's forms are gone
            due.append(kind)
            since[kind] = dt.date.fromisoformat(last["date"])
        else:
            not_due[kind] = last["release_no"]
    return Plan(release_no, release_date, due, since, not_due)


def record(root: Path, written: Plan) -> None:
    """After the forms of ``written.due`` are in the release's folder: the calendar notes them."""
    state = read_state(root)
    for kind in written.due:
        since = written.since.get(kind)
        state[kind] = {"release_no": written.release_no, "date": written.release_date.isoformat(),
                       "since": since.isoformat() if since else None}
    write_state(root, state)

"""Statistical reports (统计报表) counted from a release of the master index, one form per community.

Communities fill in the same counts for population, family planning and civil affairs again and
again by hand. The hub counts them from the published index instead:
``make_report(conn, "dibao", "城关镇", out, sources=registry)``. The kinds — who is counted, by what,
in which lines — are declared in ``reports/statistics.yaml`` (:mod:`reports.report_spec`).

* **Release, communities, ages, deceased** as on the ledgers (:mod:`reports.ledgers`): everything
  comes from one release; a community is a town, or a village named with its town (``城关镇东湖村``),
  from the golden address (a person without one is placed by the address of their record); ages are
  completed years (周岁) at the as-of date; deceased means the golden status ``deceased``. For a
  community, a kind's 合计 of persons equals the rows of the matching ledger (``ledger:`` in the file)
  of the same release and date.
* **As-of date** (统计时点): the release's date unless another is given — a report of release N is
  then the same whenever it is made.
* **Reading once.** :class:`ReleaseData` reads the release's persons and enrolments once
  (:mod:`warehouse.report_queries`); a kind is counted for the whole county once
  (:func:`count_kind`), and every community's form is a slice of that count
  (:meth:`KindCount.table`). The pipeline writes every kind for the county and each community
  that way (:func:`write_all`).
* **Small cells.** A copy for a department other than the kind's owner has its small counts
  suppressed (:mod:`reports.suppression`); the owner's copy is complete. The forms hold counts
  only, no personal data.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa

from reports.errors import LedgerError, StatisticsError
from reports.ledgers import Community, Release, address_parts, age_on, community_list, release_of, release_places, resolve_name
from reports.report_spec import UNKNOWN, Breakdown, KindSpec, StatisticsFile, shipped_statistics
from warehouse.report_queries import previous_release, report_enrolments, report_persons

log = logging.getLogger("reports.statistics")

SEX_LABELS = {1: "男", 2: "女"}
NO_TOWN, NO_VILLAGE, NO_PLACE = "（镇不详）", "（村不详）", "（地址不详）"
COUNTY = "全县"


@lru_cache(maxsize=1)
def _provinces() -> dict[str, str]:
    """Two-digit GB/T 2260 prefix → province name."""
    from schemas.regions import RESIDENCE_PERMIT_CODES, current_regions

    names = {**current_regions(), **RESIDENCE_PERMIT_CODES}
    return {code[:2]: name for code, name in names.items() if code.endswith("0000")}


# ------------------------------------------------------------------------------------ the release, read once
@dataclass
class ReleaseData:
    """A release's persons (placed in their communities, with their age at ``as_of``) and its enrolments."""

    release: Release
    as_of: dt.date
    places: pd.DataFrame
    communities: list[Community]
    persons: pd.DataFrame
    enrolments: pd.DataFrame
    previous: dict | None
    zone: ZoneInfo

    @property
    def release_date(self) -> dt.date:
        return self.release.published_at.astimezone(self.zone).date()


def load_release(conn: sa.Connection, *, release_no: int | None = None, as_of: dt.date | None = None,
                 config: StatisticsFile | None = None) -> ReleaseData:
    """Read a release (the current one by default) for reports at ``as_of`` (default: its date)."""
    config = config or shipped_statistics()
    zone = ZoneInfo(config.timezone)
    try:
        release = release_of(conn, release_no)
    except LedgerError as exc:
        raise StatisticsError(str(exc), exc.known) from None
    places = release_places(conn, release.release_no)
    persons = report_persons(conn, release.release_no)
    placed = places[["lead", "town", "village"]].drop_duplicates("lead")
    persons = persons.merge(placed, on="lead", how="left")
    day = as_of or release.published_at.astimezone(zone).date()
    persons["age"] = age_on(persons["birth_date"], day)
    sources = sorted({s for k in config.kinds.values() for s in (k.population.sources or [])})
    fields = list(dict.fromkeys(f for k in config.kinds.values() for f in k.fields()))
    enrolments = report_enrolments(conn, release.release_no, sources, fields)
    return ReleaseData(release, day, places, community_list(places), persons, enrolments,
                       previous_release(conn, release.release_no), zone)


# ------------------------------------------------------------------------------------ who is counted
def _period(spec: KindSpec, data: ReleaseData, since: dt.date | None) -> tuple[dt.date | None, bool]:
    """The period's first day and whether it is included (a 'since' date is not: counted after it)."""
    if spec.period == "year":
        return dt.date(data.as_of.year, 1, 1), True
    if spec.period == "since_previous":
        if since is not None:
            return since, False
        if data.previous is not None:
            return data.previous["published_at"].astimezone(data.zone).date(), False
    return None, True


def _in_period(dates: pd.Series, start: dt.date | None, inclusive: bool, end: dt.date) -> pd.Series:
    d = pd.to_datetime(dates, errors="coerce")
    ok = d.notna() & (d <= pd.Timestamp(end))
    if start is not None:
        ok &= (d >= pd.Timestamp(start)) if inclusive else (d > pd.Timestamp(start))
    return ok


def _enrolled(spec: KindSpec, data: ReleaseData, *, statuses: bool = True) -> pd.DataFrame:
    pop, e = spec.population, data.enrolments
    keep = e["source"].isin(pop.sources or [])
    if pop.programs is not None:
        keep &= e["program"].isin(pop.programs)
    if statuses and pop.statuses is not None:
        keep &= e["status_raw"].isin(pop.statuses)
    if statuses and pop.exclude_statuses:
        keep &= ~e["status_raw"].isin(pop.exclude_statuses)
    return e[keep]


def _place_by_record(frame: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """Persons without a golden address are placed by their (first) record's own town and village."""
    first = records.dropna(subset=["record_town"]).drop_duplicates("master_id").set_index("master_id")
    homeless = frame["address"].isna()
    ids = frame.loc[homeless, "master_id"]
    frame.loc[homeless, "town"] = ids.map(first["record_town"]).to_numpy()
    frame.loc[homeless, "village"] = ids.map(first["record_village"]).to_numpy()
    return frame


def _qualifies(frame: pd.DataFrame, spec: KindSpec) -> pd.Series:
    pop = spec.population
    keep = frame["status"].eq("deceased") if pop.vital == "deceased" else ~frame["status"].eq("deceased")
    if pop.sex is not None:
        keep &= frame["sex"].isna() | frame["sex"].eq(pop.sex)
    if pop.age is not None:
        keep &= frame["age"].isna() | pop.age.contains(frame["age"])
    return keep


def units(spec: KindSpec, data: ReleaseData, config: StatisticsFile, since: dt.date | None = None) -> pd.DataFrame:
    """One row per person counted (per person and pair of programmes for ``program_pair``), with town,
    village, age, sex and the values of the kind's breakdowns (columns ``dim:<by>``)."""
    pop = spec.population
    persons = data.persons
    if pop.sources is not None:
        records = _enrolled(spec, data)
        if pop.min_programs is not None:
            programs = records.groupby("master_id")["program"].nunique()
            records = records[records["master_id"].isin(programs.index[programs >= pop.min_programs])]
        first = records.drop_duplicates("master_id").drop(columns=["program"])
        frame = persons.merge(first, on="master_id", how="inner")
    else:
        records = data.enrolments
        frame = persons.copy()
    frame = _place_by_record(frame, records)
    frame = frame[_qualifies(frame, spec)].copy()
    if pop.event is not None:
        start, inclusive = _period(spec, data, since)
        dates = frame["birth_date"] if pop.event == "birth" else frame["status_date"]
        frame = frame[_in_period(dates, start, inclusive, data.as_of)].copy()
        frame["event_date"] = pd.to_datetime(dates.loc[frame.index])
    dims = [*spec.rows, *(c.by for c in spec.columns if c.by is not None)]
    for b in dims:
        if b.by != "program_pair":
            frame[f"dim:{b.by}"] = _dimension(b, frame, records, config)
    if any(b.by == "program_pair" for b in dims):
        frame = frame.merge(_pairs(frame, records, config), on="master_id", how="inner")
    if any(c.measure == "households" for c in spec.columns):
        frame["household"] = _households(frame)
    return frame.reset_index(drop=True)


def _dimension(b: Breakdown, frame: pd.DataFrame, records: pd.DataFrame, config: StatisticsFile) -> pd.Series:
    if b.by == "sex":
        return frame["sex"].map(lambda s: SEX_LABELS.get(int(s), UNKNOWN) if pd.notna(s) else UNKNOWN)
    if b.by == "age":
        out = pd.Series(UNKNOWN, index=frame.index, dtype=object)
        for band in reversed(b.bands or []):
            out[frame["age"].notna() & band.contains(frame["age"])] = band.label
        return out
    if b.by == "status":
        return frame["status_raw"].map(lambda v: (b.labels or {}).get(v, v) if isinstance(v, str) and v else UNKNOWN)
    if b.by == "field":
        return frame[f"field:{b.name}"].map(lambda v: (b.labels or {}).get(v, v) if isinstance(v, str) and v
                                              else UNKNOWN)
    if b.by == "province":
        provinces = _provinces()
        return frame["status_raw"].map(lambda v: provinces.get(str(v)[:2], UNKNOWN) if isinstance(v, str) else UNKNOWN)
    if b.by == "month":
        return frame["event_date"].dt.strftime("%Y年%m月")
    raise ValueError(f"{b.by} is not a per-person breakdown")


def _pairs(frame: pd.DataFrame, records: pd.DataFrame, config: StatisticsFile) -> pd.DataFrame:
    """master_id, dim:program_pair — one row per pair of distinct programmes a person of ``frame`` is in."""
    rank = {p: i for i, p in enumerate(config.programs)}
    names = config.programs
    mine = records[records["master_id"].isin(frame["master_id"])][["master_id", "program"]].drop_duplicates()
    programs = mine["program"].unique()  # a handful: looked up once each, not once per record
    mine = mine.assign(rank=mine["program"].map({p: f"{rank.get(p, len(rank)):03d}{p}" for p in programs}),
                       name=mine["program"].map({p: names.get(p, p) for p in programs}))
    pairs = mine.merge(mine, on="master_id", suffixes=("_a", "_b"))
    pairs = pairs[pairs["rank_a"] < pairs["rank_b"]]
    return pd.DataFrame({"master_id": pairs["master_id"], "dim:program_pair": pairs["name_a"] + "+" + pairs["name_b"]})


def _households(frame: pd.DataFrame) -> pd.Series:
    """The household key as the ledgers group households: town, village, group and house number of the
    golden address (else the record's); a person without a house number is a household alone."""
    parts = address_parts(frame.reset_index(drop=True)).set_index(frame.index)
    housed = parts["house_no"].notna() & (parts["town"].notna() | parts["village"].notna())
    key = (parts["town"].fillna("") + "|" + parts["village"].fillna("") + "|" + parts["group"].fillna("")
           + "|" + parts["house_no"].fillna(""))
    return key.where(housed, "~" + frame["master_id"])


def deaths(spec: KindSpec, data: ReleaseData, since: dt.date | None = None) -> pd.DataFrame:
    """Persons enrolled in the kind's sources and programmes (whatever the status, age or vital status)
    whose golden status is deceased with a status date in the period, placed in their communities."""
    records = _enrolled(spec, data, statuses=False)
    frame = data.persons[data.persons["master_id"].isin(records["master_id"])].copy()
    frame = _place_by_record(frame, records)
    start, inclusive = _period(spec, data, since)
    return frame[frame["status"].eq("deceased") & _in_period(frame["status_date"], start, inclusive, data.as_of)]


# ------------------------------------------------------------------------------------ counting
@dataclass(frozen=True)
class ColumnKey:
    group: str
    sub: str | None  # None: the group has one column
    measure: str
    value: str | None = None
    by_month: bool = False


@dataclass(frozen=True)
class Line:
    """A line of a form: a village's (by row breakdown value), a town's 小计 or the 合计."""

    role: Literal["data", "subtotal", "total"]
    town: str | None
    village: str | None
    value: str | None
    cells: tuple[int, ...]


@dataclass
class Table:
    """A counted form: its column keys and lines, for one community (or the county)."""

    kind: str
    spec: KindSpec
    place: str
    level: Literal["county", "town", "village"]
    columns: list[ColumnKey]
    lines: list[Line]
    data: ReleaseData
    since: tuple[dt.date | None, bool] = (None, True)
    suppressed: set[tuple[int, int]] = field(default_factory=set)  # (line, column) shown as *

    @property
    def total(self) -> Line:
        return self.lines[-1]

    def cell(self, role: str, column: int, *, town: str | None = None, village: str | None = None,
             value: str | None = None) -> int:
        """The count in a line (``role`` data/subtotal/total) and column; 0 when the line is absent."""
        for line in self.lines:
            if line.role == role and (role == "total" or (line.town == town and (role == "subtotal" or (
                    line.village == village and line.value == value)))):
                return line.cells[column]
        return 0


def _values(b: Breakdown, found: pd.Series) -> list[str]:
    present = set(found.dropna())
    if b.by == "age":
        base = [band.label for band in b.bands or []]
    elif b.by == "sex":
        base = ["男", "女"]
    elif b.values:
        base = list(b.values)
    else:
        base = []
    rest = sorted(v for v in present if v not in base and v != UNKNOWN)
    return base + rest + ([UNKNOWN] if UNKNOWN in present else [])


@dataclass
class KindCount:
    """A kind counted for the whole county: counts per (town, village, row value) and column."""

    kind: str
    spec: KindSpec
    data: ReleaseData
    columns: list[ColumnKey]
    counts: pd.DataFrame  # index (town, village, value) with NO_TOWN, NO_VILLAGE, "·" for none; columns 0..n-1
    row_values: list[str | None]
    since: tuple[dt.date | None, bool]

    @cached_property
    def by_place(self) -> dict[tuple, dict]:
        """(town, village) → {row value → counts}, None for none."""
        out: dict[tuple, dict] = {}
        for (t, v, x), row in zip(self.counts.index, self.counts.to_numpy()):
            place = (None if t == NO_TOWN else t, None if v == NO_VILLAGE else v)
            out.setdefault(place, {})[None if x == "·" else x] = tuple(int(n) for n in row)
        return out

    def table(self, community: Community | None) -> Table:
        """The form of ``community`` (None: the county): every village with its lines, a 小计 per town, the 合计."""
        if community is None:
            skeleton = [(c.town, c.village) for c in self.data.communities if c.level == "village"]
            level: Literal["county", "town", "village"] = "county"
        elif community.level == "town":
            skeleton = [(c.town, c.village) for c in self.data.communities
                        if c.level == "village" and c.town == community.town]
            level = "town"
        else:
            skeleton = [(community.town, community.village)]
            level = "village"
        by_place = self.by_place
        wanted = set(skeleton)
        extra = {(t, v) for t, v in by_place
                 if (t, v) not in wanted and (community is None or (t == community.town and (
                     community.level == "town" or v == community.village)))}
        places = sorted(wanted | extra, key=lambda p: (p[0] is None, p[0] or "", p[1] is None, p[1] or ""))
        width = len(self.columns)
        zero = (0,) * width
        lines: list[Line] = []
        sums: dict[str | None, np.ndarray] = {}
        full = not self.spec.rows or self.spec.rows[0].by == "age" or bool(self.spec.rows[0].values)
        for town, village in places:
            present = by_place.get((town, village), {})
            values = self.row_values if full else [v for v in self.row_values if v in present]
            for value in values:
                cells = present.get(value, zero)
                if (town, village) not in wanted and not any(cells):
                    continue
                lines.append(Line("data", town, village, value, cells))
                sums[town] = sums.get(town, np.zeros(width, dtype=int)) + np.array(cells)
        out: list[Line] = []
        for town, group in itertools.groupby(lines, key=lambda ln: ln.town):
            out.extend(group)
            if level == "county":
                out.append(Line("subtotal", town, None, None, tuple(int(x) for x in sums[town])))
        total = np.sum([ln.cells for ln in lines], axis=0) if lines else np.zeros(width, dtype=int)
        out.append(Line("total", None, None, None, tuple(int(x) for x in total)))
        name = COUNTY if community is None else community.name
        return Table(self.kind, self.spec, name, level, self.columns, out, self.data, self.since)


def count_kind(kind: str, data: ReleaseData, *, config: StatisticsFile | None = None,
               since: dt.date | None = None) -> KindCount:
    """Count ``kind`` for the whole county of the release."""
    config = config or shipped_statistics()
    spec = kind_spec(kind, config)
    frame = units(spec, data, config, since)
    frame["town"] = frame["town"].where(frame["town"].notna(), None)
    frame["village"] = frame["village"].where(frame["village"].notna(), None)
    unplaced = frame["town"].isna() & frame["village"].isna()
    frame.loc[unplaced, "town"] = NO_PLACE
    row_dim = spec.rows[0] if spec.rows else None
    frame["value"] = frame[f"dim:{row_dim.by}"] if row_dim else "·"
    row_values = _values(row_dim, frame["value"]) if row_dim else [None]
    columns: list[ColumnKey] = []
    series: list[pd.Series] = []
    keys = [frame["town"].fillna(NO_TOWN), frame["village"].fillna(NO_VILLAGE), frame["value"]]
    grouped = frame.groupby(keys, sort=False)
    for group in spec.columns:
        if group.measure == "households":
            columns.append(ColumnKey(group.header, None, "households"))
            series.append(grouped["household"].nunique())
        elif group.measure == "deaths":
            dead = deaths(spec, data, since)
            dead["town"] = dead["town"].where(dead["town"].notna() | dead["village"].notna(), NO_PLACE)
            columns.append(ColumnKey(group.header, None, "deaths"))
            series.append(dead.groupby([dead["town"].fillna(NO_TOWN), dead["village"].fillna(NO_VILLAGE),
                                        pd.Series("·", index=dead.index)]).size())
        elif group.by is None:
            columns.append(ColumnKey(group.header, None, "persons"))
            series.append(grouped.size())
        else:
            dim = frame[f"dim:{group.by.by}"]
            for value in _values(group.by, dim):
                columns.append(ColumnKey(group.header, value, "persons", value, group.by.by == "month"))
                series.append(frame[dim.eq(value)].groupby(
                    [k[dim.eq(value)] for k in keys], sort=False).size())
    counts = pd.concat(series, axis=1, keys=range(len(series))).fillna(0).astype(int) if series else pd.DataFrame()
    return KindCount(kind, spec, data, columns, counts, row_values, _period(spec, data, since))


# ------------------------------------------------------------------------------------ kinds and communities
def kind_spec(kind: str, config: StatisticsFile | None = None) -> KindSpec:
    config = config or shipped_statistics()
    if kind not in config.kinds:
        known = [f"{k} ({s.title})" for k, s in config.kinds.items()]
        raise StatisticsError(f"unknown report kind {kind!r}; known kinds: {', '.join(known)}", list(config.kinds))
    return config.kinds[kind]


def resolve_community(data: ReleaseData, community: str | None = None, town: str | None = None) -> Community | None:
    """The community named by ``--community`` (a town or village) or ``--town`` (a town only); None: the county."""
    if community and town:
        raise StatisticsError("give --community or --town, not both")
    name = community or town
    if not name:
        return None
    try:
        found = resolve_name(name, data.communities)
    except LedgerError as exc:
        raise StatisticsError(str(exc), exc.known) from None
    if town and found.level != "town":
        towns = [c.name for c in data.communities if c.level == "town"]
        raise StatisticsError(f"{name!r} is not a town; known towns: {', '.join(towns)}", towns)
    return found


def list_kinds(config: StatisticsFile | None = None) -> list[tuple[str, str, str]]:
    """(kind, title, owner's 填报单位) of every declared kind, in file order."""
    config = config or shipped_statistics()
    return [(k, s.title, config.departments[s.owner]) for k, s in config.kinds.items()]


# ------------------------------------------------------------------------------------ files
@dataclass(frozen=True)
class ReportResult:
    """What was written: kind, place, release, files and the 合计 of persons (no personal data)."""

    kind: str
    title: str
    place: str
    owner: str
    release_no: int
    as_of: dt.date
    paths: tuple
    total: int
    suppressed: bool
    compared_with: int | None = None

    def summary(self) -> str:
        copy = "copy for another department, small cells suppressed" if self.suppressed else "owner's copy"
        other = f", compared with release {self.compared_with}" if self.compared_with else ""
        return (f"{self.kind} report for {self.place}: 合计 {self.total} (release {self.release_no}, as of "
                f"{self.as_of}, {copy}{other}) -> {', '.join(str(p) for p in self.paths)}")


def _chart(table: Table) -> bytes | None:
    """The kind's chart as PNG, when it declares one and the chart helper can draw it."""
    if table.spec.chart is None:
        return None
    from reports import charts

    draw = getattr(charts, {"pyramid": "population_pyramid_png", "monthly_trend": "monthly_trend_png"}[table.spec.chart],
                   None)
    if draw is None:
        return None
    return _draw(draw, table)


def _draw(draw, table: Table) -> bytes | None:
    """The chart from the cells as the form shows them (a withheld cell is drawn as withheld)."""
    mark = "＊"
    total_at = len(table.lines) - 1
    if table.spec.chart == "pyramid":
        sexes = {c.value: j for j, c in enumerate(table.columns) if c.value in ("男", "女")}
        bands = [(i, ln) for i, ln in enumerate(table.lines) if ln.role == "data"]
        if table.suppressed and len({ln.value for _, ln in bands}) != len(bands):
            return None  # band totals over several villages are not cells of the form: not drawn for others
        labels = list(dict.fromkeys(ln.value for _, ln in bands))
        frame = pd.DataFrame(0, index=labels, columns=["男", "女"], dtype=object)
        for i, ln in bands:
            for sex, j in sexes.items():
                hidden = (i, j) in table.suppressed
                frame.loc[ln.value, sex] = mark if hidden else frame.loc[ln.value, sex] + ln.cells[j]
        return draw(frame, title=f"{table.place} 人口金字塔")
    months = [(j, c) for j, c in enumerate(table.columns) if c.measure == "persons" and c.by_month]
    frame = pd.DataFrame({table.spec.columns[0].header: [
        mark if (total_at, j) in table.suppressed else table.total.cells[j] for j, _ in months]},
        index=[str(c.value).replace("年", "-").replace("月", "") for _, c in months], dtype=object)
    return draw(frame, title=f"{table.place} {table.spec.title}")


def _suppress(table: Table, threshold: int) -> Table:
    """Mark the cells a copy for another department must not show (:func:`reports.suppression.suppress`):
    the breakdown columns are the table's blocks, the persons column their row total, each town's
    小计 a group; a households or deaths column is protected as a table of its own."""
    try:
        from reports.suppression import suppress
    except ImportError:
        raise StatisticsError("small-cell protection is not available in this installation: only the owning "
                              "department's copy can be made (--for-department OWNER or --no-suppress)") from None
    data_rows = [i for i, ln in enumerate(table.lines) if ln.role == "data"]
    if not data_rows:
        return table
    groups: dict[str, list[int]] = {}
    if table.level == "county":
        for i in data_rows:
            groups.setdefault(str(table.lines[i].town), []).append(i)
    subtotal_of = {str(ln.town): i for i, ln in enumerate(table.lines) if ln.role == "subtotal"}
    total_at = len(table.lines) - 1
    persons = next((j for j, c in enumerate(table.columns) if c.measure == "persons" and c.sub is None), None)
    broken = [j for j, c in enumerate(table.columns) if c.measure == "persons" and c.sub is not None]
    parts = [[j for j in broken if table.columns[j].group == g]
             for g in dict.fromkeys(table.columns[j].group for j in broken)]
    plans = [(parts, persons)] if parts else ([([[persons]], persons)] if persons is not None else [])
    plans += [([[j]], j) for j, c in enumerate(table.columns) if c.measure in ("households", "deaths")]
    hidden: set[tuple[int, int]] = set()
    for blocks, total_col in plans:
        cols = [j for b in blocks for j in b]
        counts = pd.DataFrame([[table.lines[i].cells[j] for j in cols] for i in data_rows], index=data_rows,
                              columns=cols)
        found = suppress(counts, threshold=threshold, row_groups=groups or None,
                         blocks=blocks if len(blocks) > 1 or cols != [total_col] else None)
        for i in data_rows:
            hidden |= {(i, j) for j in cols if bool(found.cells.loc[i, j])}
            if bool(found.row_totals[i]) and total_col not in cols:
                hidden.add((i, total_col))
        for j in cols:
            if bool(found.column_totals[j]):
                hidden.add((total_at, j))
        if bool(found.grand_total):  # no pattern protects the cells around a 合计 that is shown: it goes too
            hidden.add((total_at, total_col))
        for town, at in subtotal_of.items():
            if town in groups:
                hidden |= {(at, j) for j in cols if bool(found.group_cells.loc[town, j])}
                if bool(found.group_totals[town]) and total_col not in cols:
                    hidden.add((at, total_col))
    table.suppressed = hidden
    return table


def make_report(conn: sa.Connection, kind: str, out: Path | str, *, community: str | None = None,
                town: str | None = None, release_no: int | None = None, as_of: dt.date | None = None,
                since: dt.date | None = None, compare: int | None = None, for_department: str | None = None,
                suppress: bool | None = None, with_csv: bool = False, config: StatisticsFile | None = None,
                data: ReleaseData | None = None, overwrite: bool = False) -> ReportResult:
    """Write the ``kind`` report of a community (``community`` or ``town``; neither: the county) as an XLSX
    form to ``out`` (a file, or a folder to put it in), with a CSV beside it when ``with_csv``.

    Suppression: a copy for ``for_department`` other than the kind's owner is suppressed; the owner's is
    not. With no department named, ``suppress`` decides (default: suppressed — a report that names no
    reader is treated as leaving the owner). ``compare``: the release to show beside, with the change
    per cell (both releases and the change share one suppression pattern). An existing file is not written
    over unless ``overwrite``. Raises :class:`StatisticsError` for an unknown kind, community, release or
    department, an ``out`` that is not an .xlsx file or a folder, or a file in the way."""
    from reports import stat_form

    config = config or shipped_statistics()
    spec = kind_spec(kind, config)
    if for_department is not None and for_department not in config.departments:
        raise StatisticsError(f"unknown department {for_department!r}; known: {', '.join(config.departments)}",
                              list(config.departments))
    if for_department is not None and suppress is not None:
        raise StatisticsError("give --for-department or --suppress/--no-suppress, not both")
    hide = (for_department != spec.owner) if for_department is not None else (True if suppress is None else suppress)
    data = data or load_release(conn, release_no=release_no, as_of=as_of, config=config)
    target = resolve_community(data, community, town)
    table = count_kind(kind, data, config=config, since=since).table(target)
    other = None
    if compare is not None:
        other_data = load_release(conn, release_no=compare, as_of=as_of, config=config)
        other = count_kind(kind, other_data, config=config, since=since).table(
            resolve_community(other_data, community, town) if target is not None else None)
        table, other = stat_form.aligned(table, other)  # a month in one release only: a column in both
    path = stat_form.target(out, table, compare=other, suppressed=hide, with_csv=with_csv, overwrite=overwrite)
    for counted in ([table, other] if hide and other is not None else [table] if hide else []):
        _suppress(counted, config.threshold)
    if hide and other is not None:
        stat_form.joint_pattern(table, other)
    generated = dt.datetime.now(ZoneInfo(config.timezone))
    paths = stat_form.save(table, path, department=config.departments[spec.owner], generated=generated,
                           compare=other, chart=_chart(table), with_csv=with_csv, overwrite=overwrite)
    log.info("report %s for %s: release %d, %d lines", kind, table.place, data.release.release_no, len(table.lines))
    return ReportResult(kind, spec.title, table.place, spec.owner, data.release.release_no, data.as_of, tuple(paths),
                        table.total.cells[0], hide, compare)

"""Ledgers (台账) generated from a release of the master index, one XLSX per community.

Community cadres keep their ledgers by hand and re-type the same residents into each. The hub writes
them from the published index instead: ``generate_ledger(conn, "dibao", "城关镇东湖村", path)``.
The ledger kinds — who is on each, which columns, which order — are declared in
``hub/ledgers.yaml`` (the format is described in the file itself).

* **Release.** Persons and enrolments come from one release (the current one by default):
  ``publish.master_person`` (name, ID number, sex, birth date, phone, address, vital status, sources)
  and ``publish.enrolment`` (which source records, programmes and raw statuses each person has).
  Fields the release does not carry — a roll's extra field (``raw:<field>``, e.g. 残疾等级), the
  record's own status date, and the record's address where the golden record has none — are read
  from the record's current version in std/raw.
* **Community.** A town (镇/乡/街道) or a village (村/社区) as the golden addresses of the release name
  it. The golden address is the person's one current address (the newest, see
  ``mpi/survivorship.yaml``), so a person who moved is on the new community's ledger only; a
  person without a golden address is placed by the address of the enrolment record itself.
  Village names repeat across towns (every town may have its 东湖村): a village is named with its
  town (``城关镇东湖村``); a bare village name is accepted when only one town has it.
* **Deceased persons** (golden status ``deceased``) are never rows of a ledger: with
  ``deceased: separate`` (the default) they are listed on a second sheet, 已故人员, with their
  death date, so that the cadres can have them struck off the roll.
* **Personal data.** The file is the community's own internal ledger: it shows full names and ID
  numbers (it replaces the hand-kept one), is written with owner-only permissions, and says on
  its face that it is internal. Nothing personal goes to logs, errors or the returned summary:
  those carry kinds, community names, counts and the path.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import sqlalchemy as sa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.errors import HubError

log = logging.getLogger("hub.ledgers")

LEDGERS_FILE = Path(__file__).resolve().with_name("ledgers.yaml")

# catalogue: value → (default header, default width in characters)
PERSON_COLUMNS: dict[str, tuple[str, float]] = {
    "seq": ("序号", 6), "household_no": ("户号", 6), "household_size": ("户人数", 7),
    "master_id": ("主索引号", 13), "name": ("姓名", 10), "sex": ("性别", 6), "birth_date": ("出生日期", 12),
    "age": ("年龄", 6), "id_number": ("公民身份号码", 21), "address": ("住址", 30), "phone": ("联系电话", 14),
    "sources": ("数据来源", 30),
}
ENROLMENT_COLUMNS: dict[str, tuple[str, float]] = {
    "status": ("状态", 10), "status_date": ("状态日期", 12), "record_id": ("业务编号", 14), "program": ("项目", 10),
}
HOUSEHOLD_COLUMNS = ("household_no", "household_size")
SORT_KEYS = ("address", "household", "head", "birth_date", "age", "name", "master_id", "status")
RAW_PREFIX = "raw:"
SEX_LABELS = {0: "未知", 1: "男", 2: "女", 9: "未说明"}  # GB/T 2261.1
DATE_FORMAT = "yyyy-mm-dd"
DECEASED_SHEET = "已故人员"


class LedgerError(HubError):
    """A ledger cannot be made as asked (unknown kind, community or release); ``known`` lists the valid choices."""

    def __init__(self, message: str, known: list[str] | None = None):
        super().__init__(message)
        self.known = list(known or [])


class LedgerConfigError(HubError):
    """The ledgers file is missing, unreadable or invalid."""


# ------------------------------------------------------------------------------------ the declaration
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgeRange(_Strict):
    min: int | None = Field(None, ge=0, le=150)
    max: int | None = Field(None, ge=0, le=150)

    @model_validator(mode="after")
    def _ordered(self):
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def contains(self, age: pd.Series) -> pd.Series:
        ok = pd.Series(True, index=age.index)
        if self.min is not None:
            ok &= age >= self.min
        if self.max is not None:
            ok &= age <= self.max
        return ok


class Band(AgeRange):
    label: str


class Members(_Strict):
    sources: list[str] = Field(min_length=1)
    programs: list[str] | None = None
    statuses: list[str] | None = None
    exclude_statuses: list[str] = Field(default_factory=list)
    sex: Literal[1, 2] | None = None
    age: AgeRange | None = None


class Head(_Strict):
    field: str
    values: list[str] = Field(min_length=1)


class Column(_Strict):
    value: str
    header: str | None = None
    labels: dict[str, str] | None = None
    bands: list[Band] | None = None
    width: float | None = Field(None, gt=0, le=100)

    @field_validator("labels", mode="before")
    @classmethod
    def _text_keys(cls, labels):
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else labels

    @model_validator(mode="after")
    def _known_value(self):
        if not (self.value in PERSON_COLUMNS or self.value in ENROLMENT_COLUMNS
                or (self.value.startswith(RAW_PREFIX) and len(self.value) > len(RAW_PREFIX))):
            raise ValueError(f"unknown value {self.value!r}; expected one of "
                             f"{sorted(PERSON_COLUMNS) + sorted(ENROLMENT_COLUMNS)} or raw:<field>")
        if self.bands is not None and self.value != "age":
            raise ValueError("bands apply to value 'age' only")
        return self

    @property
    def heading(self) -> str:
        if self.header:
            return self.header
        if self.value.startswith(RAW_PREFIX):
            return self.value[len(RAW_PREFIX):]
        return {**PERSON_COLUMNS, **ENROLMENT_COLUMNS}[self.value][0]

    @property
    def col_width(self) -> float:
        if self.width:
            return self.width
        default = {**PERSON_COLUMNS, **ENROLMENT_COLUMNS}.get(self.value)
        return default[1] if default else max(10.0, 2.2 * len(self.heading))


class LedgerSpec(_Strict):
    """One ledger kind as declared."""

    title: str = Field(min_length=1, max_length=60)
    description: str = ""
    members: Members
    households: bool = False
    head: Head | None = None
    deceased: Literal["separate", "exclude"] = "separate"
    columns: list[Column] = Field(min_length=1)
    sort: list[str] = Field(default_factory=lambda: ["address", "birth_date"])

    @field_validator("columns", mode="before")
    @classmethod
    def _short_columns(cls, columns):
        return [{"value": c} if isinstance(c, str) else c for c in columns] if isinstance(columns, list) else columns

    @field_validator("sort")
    @classmethod
    def _sort_keys(cls, keys: list[str]) -> list[str]:
        bad = [k for k in keys if k.lstrip("-") not in SORT_KEYS]
        if bad:
            raise ValueError(f"unknown sort key(s) {bad}; expected some of {list(SORT_KEYS)} (prefix - for descending)")
        return keys

    @model_validator(mode="after")
    def _consistent(self):
        values = [c.value for c in self.columns]
        if not self.households:
            wrong = [v for v in values if v in HOUSEHOLD_COLUMNS]
            wrong += [k for k in self.sort if k.lstrip("-") in ("household", "head")]
            if wrong:
                raise ValueError(f"{wrong} need 'households: true'")
        if self.head is not None and not self.households:
            raise ValueError("'head' needs 'households: true'")
        return self

    def raw_fields(self) -> list[str]:
        fields = [c.value[len(RAW_PREFIX):] for c in self.columns if c.value.startswith(RAW_PREFIX)]
        if self.head is not None:
            fields.append(self.head.field)
        return list(dict.fromkeys(fields))


class LedgersFile(_Strict):
    version: Literal[1]
    timezone: str = "Asia/Shanghai"
    departments: dict[str, str] = Field(default_factory=dict)
    ledgers: dict[str, LedgerSpec] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r} (use an IANA name such as Asia/Shanghai)") from exc
        return zone

    @field_validator("ledgers")
    @classmethod
    def _kind_names(cls, ledgers: dict) -> dict:
        bad = [k for k in ledgers if not re.match(r"^[a-z][a-z0-9_]{1,40}$", k)]
        if bad:
            raise ValueError(f"kinds {bad} must be lower-case names (letters, digits, _)")
        return ledgers

    def check_sources(self, registry: Mapping[str, Any], path: str = "ledgers.yaml") -> None:
        """Fail unless every member source is registered and every ``raw:`` field is one its sources declare."""
        problems = []
        for kind, spec in self.ledgers.items():
            for i, source in enumerate(spec.members.sources):
                if source not in registry:
                    problems.append(f"ledgers.{kind}.members.sources[{i}]: {source!r} is not a registered source")
            declared = set().union(*(set(getattr(registry[s], "fields", []) or [])
                                     for s in spec.members.sources if s in registry))
            for field in spec.raw_fields():
                if field not in declared:
                    problems.append(f"ledgers.{kind}: raw field {field!r} is not among the fields its sources "
                                    f"declare ({', '.join(sorted(declared)) or 'none'})")
        if problems:
            raise LedgerConfigError(f"invalid ledgers file {path}:\n  " + "\n  ".join(problems))


def load_ledgers(path: Path | str = LEDGERS_FILE) -> LedgersFile:
    """Load and validate a ledgers file (the sources are checked against the registry when a ledger is made)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LedgerConfigError(f"cannot read ledgers file {path.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise LedgerConfigError(f"invalid ledgers file {path.name}: expected a mapping at the top level")
    try:
        return LedgersFile.model_validate(data)
    except ValidationError as exc:
        lines = [f"  '{'.'.join(str(p) for p in e['loc']) or '(file)'}': {e['msg']}" for e in exc.errors()]
        raise LedgerConfigError(f"invalid ledgers file {path.name}:\n" + "\n".join(lines)) from exc


@lru_cache(maxsize=1)
def _shipped() -> LedgersFile:
    return load_ledgers(LEDGERS_FILE)


def ledger_kinds() -> dict[str, str]:
    """The declared ledger kinds: kind → title (``{"dibao": "最低生活保障户台账", …}``)."""
    return {kind: spec.title for kind, spec in _shipped().ledgers.items()}


# ------------------------------------------------------------------------------------ release and communities
@dataclass(frozen=True)
class Release:
    release_no: int
    published_at: dt.datetime
    withdrawn: bool


def _release(conn: sa.Connection, release_no: int | None) -> Release:
    from warehouse.releases import current_release, list_releases, release_row

    if release_no is None:
        row = current_release(conn)
        if row is None:
            raise LedgerError("no release has been published yet: run the pipeline (or 'hub demo') first")
    else:
        try:
            row = release_row(conn, int(release_no))
        except LookupError as exc:
            raise LedgerError(str(exc), [str(r["release_no"]) for r in list_releases(conn)]) from None
    return Release(int(row["release_no"]), row["published_at"], row["withdrawn_at"] is not None)


@dataclass(frozen=True)
class Community:
    """A town, or a village within its town, as the release's golden addresses name it."""

    name: str  # 城关镇 | 城关镇东湖村
    level: Literal["town", "village"]
    town: str | None
    village: str | None
    persons: int


_LEAD = "regexp_replace({col}, '[0-9].*$', '')"  # the golden address down to the village: numbers are Arabic


def _places(conn: sa.Connection, release_no: int) -> pd.DataFrame:
    """lead (golden address before its first digit), town, village, persons — for the release."""
    from schemas.addresses import parse_addresses

    leads = pd.DataFrame(conn.execute(sa.text(
        f"SELECT {_LEAD.format(col='address')} AS lead, count(*) AS persons FROM publish.master_person"
        " WHERE release_no = :n AND address IS NOT NULL GROUP BY 1"), {"n": release_no}).all(),
        columns=["lead", "persons"])
    if leads.empty:
        return pd.DataFrame(columns=["lead", "persons", "town", "village"])
    parsed = parse_addresses(leads["lead"].astype(object))
    leads["town"] = parsed["address_town"].astype(object).where(parsed["address_town"].notna(), None).to_numpy()
    leads["village"] = parsed["address_village"].astype(object).where(parsed["address_village"].notna(), None).to_numpy()
    return leads[leads["town"].notna() | leads["village"].notna()]


def _community_list(places: pd.DataFrame) -> list[Community]:
    out: list[Community] = []
    towns = places[places["town"].notna()].groupby("town")["persons"].sum()
    villages = places[places["village"].notna()].groupby(
        [places["town"].fillna(""), "village"])["persons"].sum()
    for town in sorted(set(towns.index) | {t for t, _ in villages.index if t == ""}):
        if town:
            out.append(Community(town, "town", town, None, int(towns[town])))
        for (t, village), n in villages.items():
            if t == town:
                out.append(Community(f"{town}{village}", "village", town or None, village, int(n)))
    return out


def communities(conn: sa.Connection, *, release_no: int | None = None) -> list[str]:
    """The community names a ledger can be made for: every town, each followed by its villages
    named with the town (``城关镇``, ``城关镇东湖村``, …), from the release's golden addresses."""
    release = _release(conn, release_no)
    return [c.name for c in _community_list(_places(conn, release.release_no))]


def _resolve(name: str, known: list[Community]) -> Community:
    wanted = re.sub(r"\s+", "", name or "")
    names = [c.name for c in known]
    for c in known:
        if c.name == wanted:
            return c
    same_village = [c for c in known if c.level == "village" and c.village == wanted]
    if len(same_village) == 1:
        return same_village[0]
    if same_village:
        options = [c.name for c in same_village]
        raise LedgerError(f"community {wanted!r} is ambiguous: {len(options)} towns have a village of that name;"
                          f" name it with its town: {', '.join(options)}", options)
    raise LedgerError(f"no such community {wanted!r} in the release; known ones: {', '.join(names) or 'none'}", names)


# ------------------------------------------------------------------------------------ the members
def _age(birth: pd.Series, on: dt.date) -> pd.Series:
    """Completed years (周岁) on ``on``; NaN where the birth date is unknown."""
    b = pd.to_datetime(birth, errors="coerce")
    before_birthday = (b.dt.month > on.month) | ((b.dt.month == on.month) & (b.dt.day > on.day))
    return (on.year - b.dt.year - before_birthday.astype(int)).where(b.notna())


def _enrolments(conn: sa.Connection, spec: LedgerSpec, release_no: int, community: Community,
                leads: list[str]) -> pd.DataFrame:
    raw = spec.raw_fields()
    raw_select = "".join(f", rr.payload ->> CAST(:raw{i} AS text) AS raw{i}" for i in range(len(raw)))
    village_test = "" if community.level == "town" else " AND r.address_village = CAST(:village AS text)"
    sql = (
        "SELECT e.master_id, e.source, e.source_record_id, e.program, e.status_raw, r.status_date AS record_status_date,"
        " r.address_raw AS record_address, r.address_town AS record_town, r.address_village AS record_village,"
        " r.address_group AS record_group, r.address_house_no AS record_house_no" + raw_select +
        " FROM publish.enrolment e"
        " JOIN publish.master_person p ON p.release_no = e.release_no AND p.master_id = e.master_id"
        " LEFT JOIN std.resident r ON r.source = e.source AND r.source_record_id = e.source_record_id"
        " LEFT JOIN raw.record rr ON rr.record_id = r.raw_record_id"
        " WHERE e.release_no = :n AND e.source = ANY(CAST(:sources AS text[]))"
        f"   AND ((p.address IS NOT NULL AND {_LEAD.format(col='p.address')} = ANY(CAST(:leads AS text[])))"
        "     OR (p.address IS NULL AND r.address_town IS NOT DISTINCT FROM CAST(:town AS text)" + village_test + "))"
        " ORDER BY e.master_id, e.source, e.source_record_id")
    params = {"n": release_no, "sources": spec.members.sources, "leads": leads,
              "town": community.town, "village": community.village}
    params.update({f"raw{i}": f for i, f in enumerate(raw)})
    result = conn.execute(sa.text(sql), params)
    frame = pd.DataFrame(result.all(), columns=list(result.keys()))
    return frame.rename(columns={f"raw{i}": f"{RAW_PREFIX}{f}" for i, f in enumerate(raw)})


def _qualifying(enrolments: pd.DataFrame, members: Members) -> pd.DataFrame:
    keep = pd.Series(True, index=enrolments.index)
    if members.programs is not None:
        keep &= enrolments["program"].isin(members.programs)
    if members.statuses is not None:
        keep &= enrolments["status_raw"].isin(members.statuses)
    if members.exclude_statuses:
        keep &= ~enrolments["status_raw"].isin(members.exclude_statuses)
    return enrolments[keep]


def _persons(conn: sa.Connection, release_no: int, master_ids: list[str]) -> pd.DataFrame:
    result = conn.execute(sa.text(
        "SELECT master_id, name, id_number, sex, birth_date, phone, address, status, status_date, sources"
        " FROM publish.master_person WHERE release_no = :n AND master_id = ANY(CAST(:ids AS text[]))"
        " ORDER BY master_id"), {"n": release_no, "ids": master_ids})
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def _joined(values: pd.Series) -> str | None:
    seen = [str(v) for v in dict.fromkeys(values) if v is not None and not (isinstance(v, float) and pd.isna(v))
            and str(v) != ""]
    return "、".join(seen) or None


def _per_person(qualifying: pd.DataFrame, spec: LedgerSpec) -> pd.DataFrame:
    """One row per master id: the values of its qualifying enrolments, and the record address to fall back on."""
    grouped = qualifying.groupby("master_id", sort=True)
    out = pd.DataFrame({
        "e_status": grouped["status_raw"].agg(_joined),
        "e_record_id": grouped["source_record_id"].agg(_joined),
        "e_program": grouped["program"].agg(_joined),
        "e_status_date": grouped["record_status_date"].agg(lambda s: max((v for v in s if pd.notna(v)), default=None)),
        "record_address": grouped["record_address"].agg(lambda s: next((v for v in s if pd.notna(v)), None)),
    })
    for part in ("town", "village", "group", "house_no"):
        out[f"record_{part}"] = grouped[f"record_{part}"].agg(lambda s: next((v for v in s if pd.notna(v)), None))
    for field in spec.raw_fields():
        out[f"{RAW_PREFIX}{field}"] = grouped[f"{RAW_PREFIX}{field}"].agg(_joined)
    if spec.head is not None:
        heads = qualifying[f"{RAW_PREFIX}{spec.head.field}"].isin(spec.head.values)
        out["is_head"] = heads.groupby(qualifying["master_id"]).any()
    else:
        out["is_head"] = False
    return out.reset_index()


def _address_parts(persons: pd.DataFrame) -> pd.DataFrame:
    """town, village, group, house_no of each person: the golden address's, else the record's."""
    from schemas.addresses import parse_addresses

    parsed = parse_addresses(persons["address"].astype(object))
    out = pd.DataFrame(index=persons.index)
    has_golden = persons["address"].notna()
    for part, column in (("town", "address_town"), ("village", "address_village"),
                         ("group", "address_group"), ("house_no", "address_house_no")):
        golden = parsed[column].astype(object).where(parsed[column].notna(), None)
        out[part] = golden.where(has_golden, persons[f"record_{part}"])
    return out


def order_members(frame: pd.DataFrame, sort: list[str], *, households: bool) -> pd.DataFrame:
    """Sort ledger rows and number households.

    ``frame`` has master_id, name, birth_date, age, e_status, is_head and the address parts town,
    village, group, house_no. With ``households`` a household is the same town, village, group and
    house number (a person without a house number is one on their own); households stay together
    and get ``household_no`` (1, 2, … in ledger order) and ``household_size``.
    """
    frame = frame.copy()
    group_num = pd.to_numeric(frame["group"], errors="coerce")
    house_num = pd.to_numeric(frame["house_no"].astype(object).str.extract(r"^(\d+)", expand=False), errors="coerce")
    housed = frame["house_no"].notna() & (frame["town"].notna() | frame["village"].notna())
    frame["_hh"] = (frame["town"].fillna("") + "|" + frame["village"].fillna("") + "|" + frame["group"].fillna("")
                    + "|" + frame["house_no"].fillna("")).where(housed, "~" + frame["master_id"])
    helpers = {"_town": frame["town"], "_village": frame["village"], "_group_n": group_num,
               "_group": frame["group"], "_house_n": house_num, "_house": frame["house_no"],
               "_head": (~frame["is_head"].astype(bool)).astype(int), "_birth": pd.to_datetime(frame["birth_date"]),
               "_age": frame["age"], "_name": frame["name"], "_master": frame["master_id"], "_status": frame["e_status"]}
    for key, values in helpers.items():
        frame[key] = values
    address = ["_town", "_village", "_group_n", "_group", "_house_n", "_house"]
    columns: list[str] = []
    ascending: list[bool] = []
    for key in sort:
        desc, name = key.startswith("-"), key.lstrip("-")
        cols = {"address": address, "household": address + ["_hh"], "head": ["_head"], "birth_date": ["_birth"],
                "age": ["_age"], "name": ["_name"], "master_id": ["_master"], "status": ["_status"]}[name]
        for c in cols:
            if c not in columns:
                columns.append(c)
                ascending.append(not desc)
    if "_master" not in columns:
        columns.append("_master")
        ascending.append(True)
    frame = frame.sort_values(columns, ascending=ascending, na_position="last", kind="stable")
    if households:
        frame["household_no"] = pd.factorize(frame["_hh"])[0] + 1
        frame["household_size"] = frame.groupby("_hh")["master_id"].transform("size")
    return frame.drop(columns=[c for c in frame.columns if c.startswith("_")]).reset_index(drop=True)


# ------------------------------------------------------------------------------------ cell values
def _phone(value: Any) -> str | None:
    """E.164 as cadres write it: 13812345678, 05646234567."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value)
    if text.startswith("+86"):
        rest = text[3:]
        return rest if (rest.startswith("1") and len(rest) == 11) or rest[:3] in ("400", "800") else "0" + rest
    return text


def _date(value: Any) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    stamp = pd.to_datetime(value, errors="coerce")
    return None if pd.isna(stamp) else stamp.date()


def _blank(value: Any) -> Any:
    """Missing values stay blank (None), never 'None' / 'nan'."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _cell(column: Column, row: Mapping[str, Any], source_labels: Mapping[str, str]) -> Any:
    v = column.value
    if v in ("seq", "household_no", "household_size"):
        return int(row[v])
    if v == "age":
        age = _blank(row["age"])
        if age is None:
            return None
        if column.bands is not None:
            band = pd.Series([age])
            return next((b.label for b in column.bands if b.contains(band).iloc[0]), None)
        return int(age)
    if v in ("birth_date",):
        return _date(_blank(row["birth_date"]))
    if v == "status_date":
        return _date(_blank(row["e_status_date"]))
    if v == "sex":
        sex = _blank(row["sex"])
        return None if sex is None else SEX_LABELS.get(int(sex))
    if v == "phone":
        return _phone(_blank(row["phone"]))
    if v == "address":
        return _blank(row["address"]) or _blank(row["record_address"])
    if v == "sources":
        sources = row["sources"] if row["sources"] is not None else []
        return "、".join(source_labels.get(s, s) for s in sources) or None
    value = _blank(row[f"e_{v}"] if v in ("status", "record_id", "program") else row[v])
    if value is not None and column.labels:
        value = "、".join(column.labels.get(part, part) for part in str(value).split("、"))
    return None if value is None else str(value)


def _source_labels(departments: Mapping[str, str]) -> dict[str, str]:
    from connectors.registry import load_registry

    labels = {}
    for name, source in load_registry().items():
        title = re.split(r"\s*[（(]", source.title, maxsplit=1)[0].strip() or name
        dept = departments.get(source.department)
        labels[name] = f"{dept}·{title}" if dept else title
    return labels


# ------------------------------------------------------------------------------------ the workbook
@dataclass(frozen=True)
class LedgerResult:
    """What was written: counts and where (no personal data)."""

    kind: str
    title: str
    community: str
    level: str
    path: Path
    rows: int
    households: int | None
    deceased: int
    release_no: int
    release_date: dt.date
    as_of: dt.date

    def summary(self) -> str:
        households = f" in {self.households} households" if self.households is not None else ""
        deceased = f"; {self.deceased} deceased on sheet {DECEASED_SHEET}" if self.deceased else ""
        return (f"{self.kind} ledger for {self.community}: {self.rows} persons{households}{deceased}"
                f" (release {self.release_no}) -> {self.path}")


def default_filename(kind: str, community: str, release_no: int, *, title: str | None = None) -> str:
    """``最低生活保障户台账_城关镇东湖村_第3版.xlsx``."""
    title = title or ledger_kinds().get(kind, kind)
    return re.sub(r'[\\/:*?"<>|\s]+', "_", f"{title}_{community}_第{release_no}版") + ".xlsx"


def _write_sheet(ws, *, title: str, header_lines: list[str], columns: list[Column], rows: list[list[Any]],
                 empty_note: str, footer: str) -> None:
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.properties import PageSetupProperties

    n_cols = len(columns)
    last = get_column_letter(n_cols)
    thin = Side(style="thin", color="808080")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)

    ws.append([title])
    ws.merge_cells(f"A1:{last}1")
    ws["A1"].font = Font(bold=True, size=16)
    ws["A1"].alignment = Alignment(horizontal="center", vertical="center")
    ws.row_dimensions[1].height = 28
    for line in header_lines:
        ws.append([line])
        r = ws.max_row
        ws.merge_cells(f"A{r}:{last}{r}")
        ws.cell(r, 1).alignment = Alignment(horizontal="left", vertical="center", wrap_text=True)
    ws.append([])
    ws.append([c.heading for c in columns])
    header_row = ws.max_row
    for i, c in enumerate(columns, start=1):
        cell = ws.cell(header_row, i)
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="D9D9D9")
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        cell.border = border
        ws.column_dimensions[get_column_letter(i)].width = c.col_width
    for values in rows:
        ws.append(values)
        r = ws.max_row
        for i, c in enumerate(columns, start=1):
            cell = ws.cell(r, i)
            cell.border = border
            if isinstance(cell.value, dt.date):
                cell.number_format = DATE_FORMAT
            elif c.value in ("id_number", "phone", "master_id", "record_id"):
                cell.number_format = "@"  # text: an 18-digit number must not become 3.41522E+17
    if not rows:
        ws.append([empty_note])
        r = ws.max_row
        ws.merge_cells(f"A{r}:{last}{r}")
        ws.cell(r, 1).alignment = Alignment(horizontal="center")
    ws.append([footer])
    r = ws.max_row
    ws.merge_cells(f"A{r}:{last}{r}")
    ws.cell(r, 1).font = Font(bold=True)

    ws.freeze_panes = ws.cell(header_row + 1, 1)
    if rows:
        ws.auto_filter.ref = f"A{header_row}:{last}{header_row + len(rows)}"
    ws.print_title_rows = f"{header_row}:{header_row}"
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0  # as many pages down as needed
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.4
    ws.page_margins.top = ws.page_margins.bottom = 0.6
    ws.oddFooter.center.text = "第 &P 页，共 &N 页"
    ws.oddHeader.right.text = "内部台账 注意保密"


def _save(wb, out_path: Path) -> None:
    """Write next to the target and move it in place, readable by the owner only (it holds personal data)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ledger-", suffix=".xlsx", dir=out_path.parent)
    os.close(fd)
    try:
        wb.save(tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_ledger(conn: sa.Connection, kind: str, community: str, out_path: Path | str | None = None, *,
                    release_no: int | None = None, as_of: dt.date | None = None,
                    ledgers: LedgersFile | None = None) -> LedgerResult:
    """Write the ``kind`` ledger of ``community`` as XLSX to ``out_path`` from a release (the current one).

    ``out_path`` may be a folder or None (the working folder): the file is then named
    :func:`default_filename`. ``as_of`` is the ledger date ages are counted at (default: today,
    in the ledgers file's time zone). A community without members gets an empty ledger with a
    note. Raises :class:`LedgerError` for an unknown kind, community or release (listing the
    known ones) and :class:`LedgerConfigError` for an invalid ledgers file.
    """
    from openpyxl import Workbook

    from connectors.registry import load_registry

    config = ledgers or _shipped()
    if kind not in config.ledgers:
        known = [f"{k} ({s.title})" for k, s in config.ledgers.items()]
        raise LedgerError(f"unknown ledger kind {kind!r}; known kinds: {', '.join(known)}", list(config.ledgers))
    spec = config.ledgers[kind]
    config.check_sources(load_registry())
    zone = ZoneInfo(config.timezone)
    generated = dt.datetime.now(zone)
    as_of = as_of or generated.date()

    release = _release(conn, release_no)
    places = _places(conn, release.release_no)
    target = _resolve(community, _community_list(places))
    in_place = places["town"].eq(target.town) if target.level == "town" else (
        places["village"].eq(target.village) & (places["town"].eq(target.town) if target.town else places["town"].isna()))
    leads = places.loc[in_place, "lead"].tolist()

    qualifying = _qualifying(_enrolments(conn, spec, release.release_no, target, leads), spec.members)
    per_person = _per_person(qualifying, spec)
    persons = _persons(conn, release.release_no, per_person["master_id"].tolist()).merge(
        per_person, on="master_id", how="inner", validate="one_to_one")
    persons["age"] = _age(persons["birth_date"], as_of)
    dead = persons["status"].eq("deceased")
    alive = persons[~dead]
    m = spec.members
    keep = pd.Series(True, index=alive.index)
    if m.sex is not None:
        keep &= alive["sex"].isna() | alive["sex"].eq(m.sex)
    if m.age is not None:
        keep &= alive["age"].isna() | m.age.contains(alive["age"])
    alive = alive[keep]
    deceased = persons[dead] if spec.deceased == "separate" else persons.iloc[0:0]

    def ordered(frame: pd.DataFrame, households: bool) -> pd.DataFrame:
        if frame.empty:
            return frame.assign(household_no=pd.Series(dtype=int), household_size=pd.Series(dtype=int))
        frame = pd.concat([frame, _address_parts(frame)], axis=1)
        return order_members(frame, spec.sort if households else [k for k in spec.sort if k.lstrip("-") not in
                                                                   ("household", "head")] or ["address"],
                             households=households)

    main = ordered(alive, spec.households)
    gone = ordered(deceased, False)
    labels = _source_labels(config.departments)
    release_date = release.published_at.astimezone(zone).date()
    place = f"{target.name}（{'镇/乡/街道' if target.level == 'town' else '村/社区'}）"
    households = int(main["household_no"].max()) if spec.households and len(main) else (0 if spec.households else None)

    header = [
        f"社区：{place}　　台账日期：{as_of:%Y-%m-%d}　　数据版本：第{release.release_no}版（{release_date:%Y-%m-%d} 发布）"
        + ("（该版本已撤回）" if release.withdrawn else ""),
        f"数据来源：居民数据中心 第{release.release_no}版　　生成时间：{generated:%Y-%m-%d %H:%M}",
        f"收录范围：{spec.description}" if spec.description else f"收录范围：{spec.title}",
        "内部台账：含姓名、公民身份号码等个人信息，仅供本社区工作人员使用，不得外传。",
    ]
    if spec.deceased == "separate":
        header.append(f"另有已故人员 {len(gone)} 人仍在名册中，不计入本台账，见工作表“{DECEASED_SHEET}”。"
                      if len(gone) else "名册中无已故人员。")

    def values(frame: pd.DataFrame, columns: list[Column]) -> list[list[Any]]:
        rows = []
        for i, row in enumerate(frame.to_dict("records"), start=1):
            row["seq"] = i
            rows.append([_cell(c, row, labels) for c in columns])
        return rows

    wb = Workbook()
    ws = wb.active
    ws.title = _sheet_name(spec.title)
    footer = f"合计：{len(main)} 人" + (f"，{households} 户" if spec.households else "")
    _write_sheet(ws, title=spec.title, header_lines=header, columns=spec.columns, rows=values(main, spec.columns),
                 empty_note=f"本社区在第{release.release_no}版中没有符合收录范围的人员。", footer=footer)
    if spec.deceased == "separate" and len(gone):
        columns = [c for c in spec.columns if c.value not in HOUSEHOLD_COLUMNS and c.value != "age"]
        at = next((i for i, c in enumerate(columns) if c.value == "sources"), len(columns))
        columns.insert(at, Column(value="status_date", header="死亡日期"))
        gone = gone.assign(e_status_date=gone["status_date"])
        _write_sheet(wb.create_sheet(DECEASED_SHEET), title=f"{spec.title}·已故人员（待核销）",
                     header_lines=[header[0], header[1],
                                   f"以下人员在第{release.release_no}版主索引中登记为已故，但仍在名册中，不计入本台账；"
                                   "请核实后办理停发或注销。", header[3]],
                     columns=columns, rows=values(gone, columns), empty_note="", footer=f"合计：{len(gone)} 人")
    wb.properties.title = f"{spec.title} {target.name}"
    wb.properties.creator = "居民数据中心"

    out = Path(out_path) if out_path is not None else Path.cwd()
    if out.is_dir():
        out = out / default_filename(kind, target.name, release.release_no, title=spec.title)
    _save(wb, out)
    result = LedgerResult(kind=kind, title=spec.title, community=target.name, level=target.level, path=out,
                          rows=len(main), households=households, deceased=len(gone), release_no=release.release_no,
                          release_date=release_date, as_of=as_of)
    log.info("ledger %s for %s: %d rows, %d deceased listed apart, release %d", kind, target.name, result.rows,
             result.deceased, result.release_no)
    return result


def _sheet_name(title: str) -> str:
    return re.sub(r"[\[\]:*?/\\]", "", title)[:31] or "台账"

"""Ledgers (台账) generated from a release of the master index, one XLSX per community.

Community cadres keep their ledgers by hand and re-type the same residents into each. The hub writes
them from the published index instead: ``generate_ledger(conn, "dibao", "城关镇东湖村", path, sources=registry)``.
The ledger kinds — who is on each, which columns, which order — are declared in
``reports/ledgers.yaml`` (:mod:`reports.ledger_spec`; the format is described in the file itself).

* **Release.** Everything comes from one release (the current one by default), and from that release
  only: ``publish.master_person`` (name, ID number, sex, birth date, phone, address, vital status,
  sources) and ``publish.enrolment`` (which source records, programmes, raw statuses and status dates
  each person has, each record's own address, and its fields as received for ``raw:<field>`` columns
  such as 残疾等级) (:mod:`warehouse.ledger_queries`). A ledger of an earlier release stays the same
  after later loads.
* **Community.** A town (镇/乡/街道) or a village (村/社区) as the golden addresses of the release name
  it. The golden address is the person's one current address (the newest, see
  ``mpi/survivorship.yaml``), so a person who moved is on the new community's ledger only; a
  person without a golden address is placed by the address of the enrolment record itself.
  Village names repeat across towns (every town may have its 东湖村): a village is named with its
  town (``城关镇东湖村``); a bare village name is accepted when only one town has it.
* **Deceased persons** (golden status ``deceased``) are never rows of a ledger: with
  ``deceased: separate`` (the default) they are listed on a second sheet, 已故人员, with their
  death date, so that the cadres can have them struck off the roll.
* **The form.** Under the title: the community, the ledger date, the release and when the ledger
  was made (Beijing time, labelled); under the total the 制表人 / 审核人 / 填报日期 line, 填报日期
  being the ledger date and the two signatures left to sign by hand; one CJK font for every cell.
* **Personal data.** The file is the community's own internal ledger: it shows full names and ID
  numbers (it replaces the hand-kept one), is written with owner-only permissions, and says on
  its face that it is internal. Nothing personal goes to logs, errors or the returned summary:
  those carry kinds, community names, counts and the path.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa

from reports import xlsx
from reports.errors import LedgerConfigError, LedgerError
from reports.ledger_spec import (
    HOUSEHOLD_COLUMNS,
    RAW_PREFIX,
    Column,
    DeclaredSource,
    LedgersFile,
    LedgerSpec,
    Members,
    ledger_kinds,
    load_ledgers,
    shipped_ledgers,
)
from schemas.addresses import parse_addresses
from warehouse.ledger_queries import address_leads, golden_persons, ledger_enrolments
from warehouse.releases import current_release, list_releases, release_row

__all__ = ["Community", "LedgerConfigError", "LedgerError", "LedgerResult", "LedgersFile", "Release", "address_parts",
           "age_on", "communities", "community_list", "default_filename", "generate_ledger", "ledger_kinds",
           "load_ledgers", "order_members", "release_of", "release_places", "resolve_name"]

log = logging.getLogger("reports.ledgers")

SEX_LABELS = {0: "未知", 1: "男", 2: "女", 9: "未说明"}  # GB/T 2261.1
DECEASED_SHEET = "已故人员"
INTERNAL = "内部台账 注意保密"


# ------------------------------------------------------------------------------------ release and communities
@dataclass(frozen=True)
class Release:
    release_no: int
    published_at: dt.datetime
    withdrawn: bool


def release_of(conn: sa.Connection, release_no: int | None) -> Release:
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


def release_places(conn: sa.Connection, release_no: int) -> pd.DataFrame:
    """lead (golden address before its first digit), town, village, persons — for the release."""
    leads = address_leads(conn, release_no)
    if leads.empty:
        return pd.DataFrame(columns=["lead", "persons", "town", "village"])
    parsed = parse_addresses(leads["lead"].astype(object))
    leads["town"] = parsed["address_town"].astype(object).where(parsed["address_town"].notna(), None).to_numpy()
    leads["village"] = parsed["address_village"].astype(object).where(parsed["address_village"].notna(), None).to_numpy()
    return leads[leads["town"].notna() | leads["village"].notna()]


def community_list(places: pd.DataFrame) -> list[Community]:
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
    release = release_of(conn, release_no)
    return [c.name for c in community_list(release_places(conn, release.release_no))]


def resolve_name(name: str, known: list[Community]) -> Community:
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
def age_on(birth: pd.Series, on: dt.date) -> pd.Series:
    """Completed years (周岁) on ``on``; NaN where the birth date is unknown."""
    b = pd.to_datetime(birth, errors="coerce")
    before_birthday = (b.dt.month > on.month) | ((b.dt.month == on.month) & (b.dt.day > on.day))
    return (on.year - b.dt.year - before_birthday.astype(int)).where(b.notna())


def _enrolments(conn: sa.Connection, spec: LedgerSpec, release_no: int, community: Community,
                leads: list[str]) -> pd.DataFrame:
    return ledger_enrolments(conn, release_no, sources=spec.members.sources, leads=leads, town=community.town,
                             village=community.village if community.level == "village" else None,
                             raw_fields=spec.raw_fields())


def _qualifying(enrolments: pd.DataFrame, members: Members) -> pd.DataFrame:
    keep = pd.Series(True, index=enrolments.index)
    if members.programs is not None:
        keep &= enrolments["program"].isin(members.programs)
    if members.statuses is not None:
        keep &= enrolments["status_raw"].isin(members.statuses)
    if members.exclude_statuses:
        keep &= ~enrolments["status_raw"].isin(members.exclude_statuses)
    return enrolments[keep]


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


def address_parts(persons: pd.DataFrame) -> pd.DataFrame:
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
    return None if value is None else _typed(column.type, str(value))


def _typed(kind: str, text: str) -> Any:
    """A cell as its column's ``type`` says; text as received when it does not read as one."""
    if kind == "region":
        return "、".join(_region_name(part) for part in text.split("、"))
    if kind == "number":
        number = pd.to_numeric(text, errors="coerce")
        return text if pd.isna(number) else float(number)
    if kind == "date":
        return _date(text) or text
    return text


def _region_name(code: str) -> str:
    """``安徽省六安市金安区`` for 341502 (GB/T 2260, abolished codes too); the code itself when unknown."""
    from schemas.regions import region_table

    table = region_table()
    if not re.fullmatch(r"\d{6}", code) or code not in table:
        return code
    levels = dict.fromkeys((code[:2] + "0000", code[:4] + "00", code))
    return "".join(table[c].name for c in levels if c in table and table[c].name not in ("市辖区", "县"))


def _source_labels(departments: Mapping[str, str], sources: Mapping[str, DeclaredSource]) -> dict[str, str]:
    """How 数据来源 names each source: ``民政·最低生活保障`` (its department's short name, its title)."""
    labels = {}
    for name, source in sources.items():
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
    departments: tuple[str, ...] = ()  # the departments whose sources the ledger lists

    def summary(self) -> str:
        households = f" in {self.households} households" if self.households is not None else ""
        deceased = f"; {self.deceased} deceased on sheet {DECEASED_SHEET}" if self.deceased else ""
        return (f"{self.kind} ledger for {self.community}: {self.rows} persons{households}{deceased}"
                f" (release {self.release_no}) -> {self.path}")


def default_filename(kind: str, community: str, release_no: int, *, title: str | None = None) -> str:
    """``最低生活保障户台账_城关镇东湖村_第3版.xlsx``."""
    title = title or ledger_kinds().get(kind, kind)
    return re.sub(r'[\\/:*?"<>|\s]+', "_", f"{title}_{community}_第{release_no}版") + ".xlsx"




@dataclass(frozen=True)
class _Ledger:
    """One ledger being made: what, where, from which release, and when."""

    kind: str
    spec: LedgerSpec
    community: Community
    release: Release
    release_date: dt.date
    as_of: dt.date
    generated: dt.datetime


def _spec(config: LedgersFile, kind: str) -> LedgerSpec:
    if kind not in config.ledgers:
        known = [f"{k} ({s.title})" for k, s in config.ledgers.items()]
        raise LedgerError(f"unknown ledger kind {kind!r}; known kinds: {', '.join(known)}", list(config.ledgers))
    return config.ledgers[kind]


def _leads(places: pd.DataFrame, target: Community) -> list[str]:
    """The golden-address leads of ``target``: a town's, or a village's within its town."""
    if target.level == "town":
        in_place = places["town"].eq(target.town)
    else:
        in_place = places["village"].eq(target.village) & (
            places["town"].eq(target.town) if target.town else places["town"].isna())
    return places.loc[in_place, "lead"].tolist()


def _ordered(frame: pd.DataFrame, spec: LedgerSpec, households: bool) -> pd.DataFrame:
    if frame.empty:
        return frame.assign(household_no=pd.Series(dtype=int), household_size=pd.Series(dtype=int))
    frame = pd.concat([frame, address_parts(frame)], axis=1)
    sort = spec.sort if households else [k for k in spec.sort if k.lstrip("-") not in ("household", "head")] or ["address"]
    return order_members(frame, sort, households=households)


def _members(conn: sa.Connection, spec: LedgerSpec, release_no: int, target: Community, leads: list[str],
             as_of: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The living members in ledger order (households numbered), and the deceased ones to list apart."""
    qualifying = _qualifying(_enrolments(conn, spec, release_no, target, leads), spec.members)
    per_person = _per_person(qualifying, spec)
    persons = golden_persons(conn, release_no, per_person["master_id"].tolist()).merge(
        per_person, on="master_id", how="inner", validate="one_to_one")
    persons["age"] = age_on(persons["birth_date"], as_of)
    dead = persons["status"].eq("deceased")
    alive = persons[~dead]
    m = spec.members
    keep = pd.Series(True, index=alive.index)
    if m.sex is not None:
        keep &= alive["sex"].isna() | alive["sex"].eq(m.sex)
    if m.age is not None:
        keep &= alive["age"].isna() | m.age.contains(alive["age"])
    deceased = persons[dead] if spec.deceased == "separate" else persons.iloc[0:0]
    return _ordered(alive[keep], spec, spec.households), _ordered(deceased, spec, False)


def _header_lines(ledger: _Ledger, deceased: int) -> list[str]:
    """The lines under the title: community, dates and release, sources, scope, confidentiality."""
    spec, target, release = ledger.spec, ledger.community, ledger.release
    place = f"{target.name}（{'镇/乡/街道' if target.level == 'town' else '村/社区'}）"
    header = [
        f"社区：{place}　　台账日期：{ledger.as_of:%Y-%m-%d}　　数据版本：第{release.release_no}版"
        f"（{ledger.release_date:%Y-%m-%d} 发布）" + ("（该版本已撤回）" if release.withdrawn else ""),
        f"数据来源：居民数据中心 第{release.release_no}版　　生成时间：{xlsx.local_time(ledger.generated)}",
        f"收录范围：{spec.description}" if spec.description else f"收录范围：{spec.title}",
        "内部台账：含姓名、公民身份号码等个人信息，仅供本社区工作人员使用，不得外传。",
    ]
    if spec.deceased == "separate":
        header.append(f"另有已故人员 {deceased} 人仍在名册中，不计入本台账，见工作表“{DECEASED_SHEET}”。"
                      if deceased else "名册中无已故人员。")
    return header


def _values(frame: pd.DataFrame, columns: list[Column], labels: Mapping[str, str]) -> list[list[Any]]:
    rows = []
    for i, row in enumerate(frame.to_dict("records"), start=1):
        row["seq"] = i
        rows.append([_cell(c, row, labels) for c in columns])
    return rows


def _sheet_columns(columns: list[Column]) -> list[xlsx.Column]:
    return [xlsx.Column(c.heading, c.col_width, text=c.as_text) for c in columns]


def _workbook(ledger: _Ledger, main: pd.DataFrame, gone: pd.DataFrame, labels: Mapping[str, str],
              households: int | None):
    """The ledger's sheet, and the deceased members' sheet when there are any to list apart."""
    spec, release_no = ledger.spec, ledger.release.release_no
    book = xlsx.new_workbook(title=f"{spec.title} {ledger.community.name}")
    signed = {"填报日期": f"{ledger.as_of:%Y-%m-%d}"}  # the ledger date; 制表人 and 审核人 sign by hand
    sheet = book.active
    sheet.title = xlsx.sheet_title(spec.title, "台账")
    header = _header_lines(ledger, len(gone))
    xlsx.write_table(sheet, _sheet_columns(spec.columns), _values(main, spec.columns, labels), title=spec.title,
                     notes=header, empty_note=f"本社区在第{release_no}版中没有符合收录范围的人员。",
                     footer=f"合计：{len(main)} 人" + (f"，{households} 户" if spec.households else ""),
                     page_header=INTERNAL)
    xlsx.signature_lines(sheet, filled=signed)
    if spec.deceased == "separate" and len(gone):
        columns = [c for c in spec.columns if c.value not in HOUSEHOLD_COLUMNS and c.value != "age"]
        at = next((i for i, c in enumerate(columns) if c.value == "sources"), len(columns))
        columns.insert(at, Column(value="status_date", header="死亡日期"))
        gone = gone.assign(e_status_date=gone["status_date"])
        notes = [header[0], header[1], f"以下人员在第{release_no}版主索引中登记为已故，但仍在名册中，不计入本台账；"
                 "请核实后办理停发或注销。", header[3]]
        dead_sheet = book.create_sheet(DECEASED_SHEET)
        xlsx.write_table(dead_sheet, _sheet_columns(columns), _values(gone, columns, labels),
                         title=f"{spec.title}·已故人员（待核销）", notes=notes, footer=f"合计：{len(gone)} 人",
                         page_header=INTERNAL)
        xlsx.signature_lines(dead_sheet, filled=signed)
    return book


def generate_ledger(conn: sa.Connection, kind: str, community: str, out_path: Path | str, *,
                    sources: Mapping[str, DeclaredSource], release_no: int | None = None,
                    as_of: dt.date | None = None, ledgers: LedgersFile | None = None) -> LedgerResult:
    """Write the ``kind`` ledger of ``community`` as XLSX to ``out_path`` from a release (the current one).

    ``sources`` is the source registry (name → declared source): the ledger's sources and ``raw:``
    fields are checked against it, and 数据来源 names sources by its titles and departments.
    ``out_path`` is the file, or a folder to write it in as :func:`default_filename` (the hub passes
    its export folder: a ledger never lands wherever the command happened to run). ``as_of`` is the
    ledger date ages are counted at (default: today, in the ledgers file's time zone). A community
    without members gets an empty ledger with a note. Raises :class:`LedgerError` for an unknown
    kind, community or release (listing the known ones) and :class:`LedgerConfigError` for an
    invalid ledgers file.
    """
    config = ledgers or shipped_ledgers()
    spec = _spec(config, kind)
    config.check_sources(sources)
    zone = ZoneInfo(config.timezone)
    generated = dt.datetime.now(zone)
    release = release_of(conn, release_no)
    places = release_places(conn, release.release_no)
    target = resolve_name(community, community_list(places))
    ledger = _Ledger(kind, spec, target, release, release.published_at.astimezone(zone).date(),
                     as_of or generated.date(), generated)
    main, gone = _members(conn, spec, release.release_no, target, _leads(places, target), ledger.as_of)
    households = int(main["household_no"].max()) if spec.households and len(main) else (0 if spec.households else None)
    book = _workbook(ledger, main, gone, _source_labels(config.departments, sources), households)
    out = Path(out_path)
    if out.is_dir():
        out = out / default_filename(kind, target.name, release.release_no, title=spec.title)
    xlsx.save_workbook(book, out, private=True)  # names and ID numbers: the owner only
    result = LedgerResult(kind=kind, title=spec.title, community=target.name, level=target.level, path=out,
                          rows=len(main), households=households, deceased=len(gone), release_no=release.release_no,
                          departments=tuple(sorted({sources[s].department for s in spec.members.sources
                                                    if s in sources})),
                          release_date=ledger.release_date, as_of=ledger.as_of)
    log.info("ledger %s for %s: %d rows, %d deceased listed apart, release %d", kind, target.name, result.rows,
             result.deceased, result.release_no)
    return result

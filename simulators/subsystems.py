"""Eight departmental subsystems: who they enrol, how they write it, which errors they make.

Each subsystem is a declaration (department, protocol, field names, code sets, date format,
error profile) plus an enrolment rule over the county population. A roll is a DataFrame with the
canonical internal columns below and hidden truth columns starting with ``_``; the served form
renames the columns to the subsystem's own field names and drops the truth.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from simulators.errors import ErrorProfile, format_dates, mess_birth_dates, mess_ids, mess_names, mess_sex, stale_phones
from simulators.population import TODAY

CANONICAL = ("record_id", "name", "id_number", "sex", "birth_date", "phone", "address", "status", "status_date")
TRUTH = ("_person_id", "_errors", "_updated", "_deleted")
SNAPSHOT_TIME = dt.datetime(2026, 11, 20, 22, 0, 0)  # the latest edit of any roll on the simulated day 0
UPDATE_SPREAD = dt.timedelta(days=3 * 365)  # day 0's records were last edited over the three years before it


@dataclass(frozen=True)
class Subsystem:
    """One departmental subsystem as its platform presents it."""

    name: str
    department: str  # civil_affairs | health | social_security
    title: str
    protocol: str  # rest | csv | xlsx | sql
    platform: str  # which server or drop folder serves it
    resource: str  # REST path, file prefix or SQL table
    fields: dict[str, str]  # canonical (and extra) column -> the subsystem's own field name
    sex_codes: dict[int, str]
    date_format: str
    errors: ErrorProfile
    enrol: Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]
    id_prefix: str
    pagination: str | None = None  # page | offset | cursor (REST only)
    encoding: str = "utf-8"
    extra_fields: tuple[str, ...] = field(default=())


def _age(pop: pd.DataFrame) -> np.ndarray:
    return ((pd.Timestamp(TODAY) - pd.to_datetime(pop["birth_date"])).dt.days // 365).to_numpy()


def _alive(pop: pd.DataFrame) -> np.ndarray:
    return pop["deceased_on"].isna().to_numpy()


def _deceased_still_active(pop: pd.DataFrame, rng: np.random.Generator, share: float) -> np.ndarray:
    """Deceased persons a department has not yet struck off (a planted inconsistency)."""
    return ~_alive(pop) & (rng.random(len(pop)) < share)


#: GB/T 4761-2008 家庭关系代码 of a household member to the head, as the 低保 platform writes it
HOUSEHOLD_RELATION = {("head", 1): "02", ("head", 2): "02", ("spouse", 1): "11", ("spouse", 2): "12",
                      ("child", 1): "20", ("child", 2): "30", ("parent", 1): "51", ("parent", 2): "52"}
#: monthly allowance per person (元/人·月) by the household's category (分类施保)
DIBAO_AMOUNTS = ("350.00", "420.00", "480.00", "560.00", "640.00", "690.00")


def dibao_households(pop: pd.DataFrame) -> pd.DataFrame:
    """Per 低保 household (household_id): its monthly amount per person (bzje) and start date (qsrq).

    Drawn from their own stream, seeded by the households, so that the rolls' other draws are unchanged."""
    houses = np.sort(pop.loc[pop["dibao_household"].to_numpy(), "household_id"].unique())
    rng = np.random.default_rng([4761, len(pop), len(houses)])
    start = pd.Timestamp(TODAY) - pd.to_timedelta(rng.integers(30, 8 * 365, len(houses)), unit="D")
    return pd.DataFrame({"amount": rng.choice(DIBAO_AMOUNTS, len(houses)),
                         "start_date": start.strftime("%Y-%m-%d")}, index=pd.Index(houses, name="household_id"))


def enrol_dibao(pop, rng):
    keep = pop["dibao_household"].to_numpy() & (_alive(pop) | _deceased_still_active(pop, rng, 0.4))
    out = pop[keep].copy()
    out["status"] = "在保"
    out["status_date"] = None
    out["household_relation"] = [HOUSEHOLD_RELATION[r, s] for r, s in zip(out["relation"], out["sex"])]
    households = dibao_households(pop)
    out["amount"] = out["household_id"].map(households["amount"])
    out["start_date"] = out["household_id"].map(households["start_date"])
    return out


def enrol_gaoling(pop, rng):
    out = pop[_age(pop) >= 80].copy()
    dead = out["deceased_on"].notna()
    out["status"] = np.where(dead, "停发", "正常发放")
    out["status_date"] = out["deceased_on"]  # the death registration
    return out


def enrol_canji(pop, rng):
    out = pop[pop["disabled"].to_numpy() & _alive(pop)].copy()
    out["status"] = rng.choice(["肢体", "视力", "听力", "智力", "精神", "言语"], len(out))
    out["status_date"] = None
    out["level"] = out["disability_level"].map({1: "一级", 2: "二级", 3: "三级", 4: "四级"})
    return out


def enrol_yuling(pop, rng):
    age = _age(pop)
    out = pop[(pop["sex"].to_numpy() == 2) & (age >= 15) & (age <= 49) & _alive(pop)].copy()
    out["status"] = np.where(pop.loc[out.index, "relation"].isin(["head", "spouse"]), "20", "10")  # GB/T 2261.2
    out["status_date"] = None
    return out


def enrol_liudong(pop, rng):
    out = pop[pop["migrant"].to_numpy() & _alive(pop)].copy()
    out["status"] = out["region_code"]  # 户籍地 region code
    out["status_date"] = pd.Timestamp(TODAY) - pd.to_timedelta(rng.integers(30, 2000, len(out)), unit="D")
    return out


def enrol_chusheng(pop, rng):
    out = pop[(_age(pop) <= 2)].copy()
    mothers = pop.set_index("person_id").reindex(out["mother_id"])
    out["mother_name"] = mothers["name"].to_numpy()
    out["mother_id_number"] = mothers["id_number"].to_numpy()
    # newborns are often registered before they are named or have an ID number
    unnamed = rng.random(len(out)) < 0.25
    surname = out["name"].str.slice(0, 1)
    out.loc[unnamed, "name"] = surname[unnamed] + np.where(out.loc[unnamed, "sex"] == 1, "某某之子", "某某之女")
    out.loc[rng.random(len(out)) < 0.5, "id_number"] = None
    out["status"] = "已登记"
    out["status_date"] = out["birth_date"]
    return out


def enrol_yanglao(pop, rng):
    age = _age(pop)
    keep = (age >= 16) & (rng.random(len(pop)) < 0.85) & (_alive(pop) | _deceased_still_active(pop, rng, 0.5))
    out = pop[keep].copy()
    receiving = age[keep] >= 60
    out["status"] = np.where(rng.random(len(out)) < 0.9, "1", "2")  # 参保缴费 / 暂停缴费
    out["pension"] = np.where(receiving, "1", "0")  # 1 领取中
    out["status_date"] = None
    return out


def enrol_yiliao(pop, rng):
    age = _age(pop)
    keep = (rng.random(len(pop)) < 0.9) & _alive(pop)
    out = pop[keep].copy()
    employee = (age[keep] >= 22) & (age[keep] < 60) & (rng.random(len(out)) < 0.2)
    out["scheme"] = np.where(employee, "职工基本医疗保险", "城乡居民基本医疗保险")
    # a few adults insured under both schemes at once (a planted inconsistency)
    both = out[(age[keep] >= 22) & (age[keep] < 60) & ~employee & (rng.random(len(out)) < 0.01)].copy()
    both["scheme"] = "职工基本医疗保险"
    out = pd.concat([out, both])
    out["status"] = "参保缴费"
    out["status_date"] = None
    return out


_BASE = ErrorProfile()
SUBSYSTEMS: dict[str, Subsystem] = {s.name: s for s in [
    Subsystem("mz_dibao", "civil_affairs", "最低生活保障", "rest", "civil_affairs", "/api/v1/dibao",
              {"record_id": "id", "name": "xm", "id_number": "sfzh", "sex": "xb", "birth_date": "csrq", "phone": "lxdh",
               "address": "jtdz", "status": "bzzt", "household_relation": "yhzgx", "amount": "bzje",
               "start_date": "qsrq", "_updated": "gxsj", "_deleted": "yxbz"},
              {1: "男", 2: "女"}, "%Y%m%d", _BASE, enrol_dibao, "DB", pagination="page",
              extra_fields=("household_relation", "amount", "start_date")),
    Subsystem("mz_gaoling", "civil_affairs", "高龄津贴 (含死亡登记)", "rest", "civil_affairs", "/api/v1/gaoling",
              {"record_id": "id", "name": "xm", "id_number": "sfzh", "sex": "xb", "birth_date": "csrq", "phone": "lxdh",
               "address": "hjdz", "status": "btzt", "status_date": "swrq", "_updated": "gxsj", "_deleted": "yxbz"},
              {1: "男", 2: "女"}, "%Y-%m-%d", ErrorProfile(id_fifteen=0.05), enrol_gaoling, "GL", pagination="page"),
    Subsystem("mz_canji", "civil_affairs", "残疾人基本信息台账", "xlsx", "drops", "残疾人台账",
              {"record_id": "残疾证号", "name": "姓名", "id_number": "身份证号", "sex": "性别", "birth_date": "出生日期",
               "status": "残疾类别", "level": "残疾等级", "address": "家庭住址", "phone": "联系电话"},
              {1: "男", 2: "女"}, "%Y/%m/%d",
              ErrorProfile(id_typo=0.01, id_transposition=0.005, name_space=0.02, date_serial=0.3, duplicate=0.02),
              enrol_canji, "CJZ", extra_fields=("level",)),
    Subsystem("wj_yuling", "health", "育龄妇女信息", "rest", "health", "/ws/fp/yulingfunv",
              {"record_id": "RYID", "name": "XM", "id_number": "SFZHM", "sex": "XB", "birth_date": "CSRQ", "phone": "LXDH",
               "address": "XZZ", "status": "HYZK", "_updated": "GXSJ", "_deleted": "YXBZ"},
              {1: "1", 2: "2"}, "%Y-%m-%d", ErrorProfile(id_typo=0.006, name_homophone=0.01, duplicate=0.02),
              enrol_yuling, "YL", pagination="offset"),
    Subsystem("wj_liudong", "health", "流动人口登记", "csv", "drops", "LDRK",
              {"record_id": "编号", "name": "姓名", "id_number": "公民身份号码", "sex": "性别", "birth_date": "出生日期",
               "status": "户籍地区划", "status_date": "登记日期", "address": "现居住地址", "phone": "联系电话"},
              {1: "男", 2: "女"}, "%Y年%-m月%-d日",
              ErrorProfile(id_typo=0.01, id_transposition=0.005, id_full_width=0.02, name_space=0.02,
                           minority_separator=0.9, stale_phone=0.15, duplicate=0.03),
              enrol_liudong, "LD", encoding="gbk"),
    Subsystem("wj_chusheng", "health", "出生医学登记", "sql", "legacy_sql", "CSDJ",
              {"record_id": "CSDJ_ID", "name": "XSE_XM", "id_number": "XSE_SFZH", "sex": "XB", "birth_date": "CSRQ",
               "mother_name": "MQ_XM", "mother_id_number": "MQ_SFZH", "address": "JTZZ", "phone": "LXDH",
               "_updated": "GXSJ", "_deleted": "SCBZ"},
              {1: "1", 2: "2"}, "%Y-%m-%d",
              # the hospital's birth certificate: the true date, never a lunar or registration date
              ErrorProfile(id_family_member=0.0, duplicate=0.005, dob_lunar=0.0, dob_registration=0.0),
              enrol_chusheng, "CS", extra_fields=("mother_name", "mother_id_number")),
    Subsystem("rs_yanglao", "social_security", "城乡居民基本养老保险", "rest", "social_security", "/si/api/v2/pension/insured",
              {"record_id": "aac001", "name": "aac003", "id_number": "aac002", "sex": "aac004", "birth_date": "aac006",
               "phone": "aae005", "address": "aae006", "status": "aac008", "pension": "dyzt", "_updated": "aae036"},
              {1: "1", 2: "2"}, "%Y%m%d", ErrorProfile(id_typo=0.001, id_transposition=0.001, id_placeholder=0.001,
                                                       id_family_member=0.003, duplicate=0.003,
                                                       dob_archive_year=0.004),
              enrol_yanglao, "RS", pagination="cursor", extra_fields=("pension",)),
    Subsystem("rs_yiliao", "social_security", "医疗保险参保", "csv", "drops", "YBCB",
              {"record_id": "个人编号", "name": "姓名", "id_number": "身份证号码", "sex": "性别", "birth_date": "出生年月",
               "scheme": "险种类型", "status": "参保状态", "phone": "联系电话", "address": "居住地址"},
              {1: "男性", 2: "女性"}, "%Y/%m/%d", ErrorProfile(id_typo=0.002, date_serial=0.05, duplicate=0.005),
              enrol_yiliao, "YB", encoding="gb18030", extra_fields=("scheme",)),
]}


def _family_ids(pop: pd.DataFrame, persons: pd.DataFrame, rng: np.random.Generator) -> pd.Series:
    """For each enrolled person, the ID number of another member of the household (if any)."""
    members = pop[pop["id_number"].notna()][["household_id", "person_id", "id_number"]]
    other = members.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).merge(
        persons[["household_id", "person_id"]].rename(columns={"person_id": "me"}), on="household_id")
    other = other[other["person_id"] != other["me"]].drop_duplicates("me")
    return persons["person_id"].map(other.set_index("me")["id_number"])


def build_roll(sub: Subsystem, pop: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The subsystem's roll: enrolled persons as its clerks typed them, plus hidden truth columns."""
    rng = np.random.default_rng([seed, sum(map(ord, sub.name))])
    enrolled = sub.enrol(pop, rng)
    dup = enrolled[rng.random(len(enrolled)) < sub.errors.duplicate]
    persons = pd.concat([enrolled.assign(_dup=False), dup.assign(_dup=True)]).reset_index(drop=True)
    persons = persons.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)

    p = sub.errors
    ids, id_hits = mess_ids(persons["id_number"], persons["birth_date"], _family_ids(pop, persons, rng), p, rng)
    names, name_hits = mess_names(persons["name"], persons["minority"], p, rng)
    sex, sex_hits = mess_sex(persons["sex"], p, rng)
    # birth-date errors draw from their own stream: switching them on or off leaves the other errors as they were
    dob_rng = np.random.default_rng([seed, sum(map(ord, sub.name)), 1])
    rural = persons["address"].astype(str).str.contains("村").to_numpy() & ~persons["migrant"].to_numpy(dtype=bool)
    typed, dob_hits = mess_birth_dates(persons["birth_date"], _age(persons), rural, TODAY, p, dob_rng)
    births, date_hits = format_dates(typed, sub.date_format, p, rng)
    phone_true = persons["mobile"].where(persons["mobile"].notna(), persons["phone"])
    phones, phone_hits = stale_phones(phone_true, p, rng)

    roll = pd.DataFrame({
        "record_id": [f"{sub.id_prefix}{i:07d}" for i in range(1, len(persons) + 1)],
        "name": names,
        "id_number": ids,
        "sex": sex.map(sub.sex_codes),
        "birth_date": births,
        "phone": phones,
        "address": persons["address"],
        "status": persons["status"],
        "status_date": pd.to_datetime(persons["status_date"]).dt.strftime("%Y-%m-%d").where(
            persons["status_date"].notna(), None),
    })
    for extra in sub.extra_fields:
        roll[extra] = persons[extra].to_numpy()
    if "mother_id_number" in roll:
        roll["mother_id_number"] = roll["mother_id_number"].where(roll["mother_id_number"].notna(), None)
    hits = {**id_hits, **name_hits, **sex_hits, **dob_hits, **date_hits, **phone_hits, "duplicate": persons["_dup"].to_numpy()}
    errors = pd.Series("", index=roll.index)
    for kind, mask in hits.items():
        errors = errors + np.where(mask, kind + ";", "")
    roll["_person_id"] = persons["person_id"].to_numpy()
    roll["_errors"] = errors.str.rstrip(";").to_numpy()
    roll["_updated"] = updated_times(len(roll), np.random.default_rng([seed, sum(map(ord, sub.name)), 2]))
    roll["_deleted"] = False
    return roll


def updated_times(n: int, rng: np.random.Generator) -> np.ndarray:
    """When each of ``n`` records was last edited on its platform, as of the snapshot.

    Clerks edit a record when something about the person changes, so the last edits spread over the roll's
    past: here over ``UPDATE_SPREAD`` before the snapshot, to the second, with the roll's latest edit at
    ``SNAPSHOT_TIME`` itself. An incremental extract on the next day then fetches what changed since, not
    the whole roll. Drawn from a stream of its own, so the records' other fields stay as they were.
    """
    back = rng.integers(0, int(UPDATE_SPREAD.total_seconds()), n)
    if n:
        back[int(np.argmin(back))] = 0
    return np.datetime64(SNAPSHOT_TIME, "us") - back.astype("timedelta64[s]").astype("timedelta64[us]")


def served(sub: Subsystem, roll: pd.DataFrame) -> pd.DataFrame:
    """The roll as the subsystem serves it: its own field names, no truth columns."""
    frame = roll.copy()
    if "_updated" in sub.fields:
        frame["_updated"] = pd.to_datetime(frame["_updated"]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    if "_deleted" in sub.fields:  # 有效标志 '1' valid / '0' deleted, or 删除标志 '0' / '1'
        flag = frame["_deleted"].astype(bool)
        frame["_deleted"] = np.where(flag, "1", "0") if sub.fields["_deleted"] == "SCBZ" else np.where(flag, "0", "1")
    columns = [c for c in frame.columns if c in sub.fields]
    out = frame[columns].rename(columns=sub.fields)
    return out.astype(object).where(out.notna(), None)  # JSON null, not NaN

"""Golden records by declared survivorship rules, against the session's real PostgreSQL.

Each test writes a few masters straight into raw.record / std.resident / mpi.master / mpi.crosswalk
and rebuilds their golden records with the rules of ``mpi/survivorship.yaml`` (or a variant).
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from connectors.registry import load_registry
from mpi.survivorship import DEFAULT_RULES, SurvivorshipError, load_rules, parse_rules
from schemas.addresses import parse_addresses
from warehouse.golden import rebuild_golden

CST = dt.timezone(dt.timedelta(hours=8), "CST")
DAY1 = dt.datetime(2026, 11, 1, 22, 0, tzinfo=CST)
DEPARTMENTS = {name: source.department for name, source in load_registry().items()}
RULES = load_rules()
RAW_YAML = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
STATUSED = ("name", "sex", "birth_date", "phone", "address", "status_date")


def day(n: int, hour: int = 22, minute: int = 0) -> dt.datetime:
    return DAY1.replace(hour=hour, minute=minute) + dt.timedelta(days=n - 1)


def rec(source: str, srid: str, loaded: dt.datetime, **values) -> dict:
    """A standardized record; ``older=<time>`` also lands an earlier raw version of it."""
    return {"source": source, "source_record_id": srid, "loaded": loaded, **values}


def _insert(engine, masters: dict[str, tuple[str, list[dict]]]) -> None:
    """masters: master_id → (anchor, records). A given value's status defaults to valid."""
    with engine.begin() as conn:
        batch = conn.execute(sa.text("INSERT INTO raw.load_batch (source) VALUES ('test') RETURNING batch_id")).scalar_one()
        for master_id, (anchor, records) in masters.items():
            conn.execute(sa.text("INSERT INTO mpi.master (master_id, anchor) VALUES (:m, :a)"), {"m": master_id, "a": anchor})
            for r in records:
                values = {k: v for k, v in r.items() if k not in ("source", "source_record_id", "loaded", "older")}
                for field in STATUSED:
                    values.setdefault(f"{field}_status", "valid" if values.get(field) is not None else "missing")
                values.setdefault("id_number_status", "valid" if values.get("id_number") else "missing")
                key = {"source": r["source"], "source_record_id": r["source_record_id"], "batch_id": batch}
                for fetched in [t for t in (r.get("older"), r["loaded"]) if t is not None]:
                    raw_id = conn.execute(sa.text(
                        "INSERT INTO raw.record (source, source_record_id, content_hash, payload, batch_id, fetched_at)"
                        " VALUES (:source, :source_record_id, :h, '{}', :batch_id, :t) RETURNING record_id"),
                        {**key, "h": uuid.uuid4().hex, "t": fetched}).scalar_one()
                columns = {**key, "raw_record_id": raw_id, **values}
                conn.execute(sa.text(f"INSERT INTO std.resident ({', '.join(columns)})"
                                     f" VALUES ({', '.join(':' + c for c in columns)})"), columns)
                conn.execute(sa.text("INSERT INTO mpi.crosswalk (source, source_record_id, master_id, match_rule)"
                                     " VALUES (:source, :source_record_id, :m, 'test')"), {**key, "m": master_id})


def _rebuild(engine, master_ids=None, rules=RULES) -> int:
    with engine.begin() as conn:
        written = rebuild_golden(conn, rules, DEPARTMENTS, master_ids)
    _check_invariants(engine)
    return written


def _golden(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["master_id"]: dict(r) for r in conn.execute(sa.text("SELECT * FROM mpi.golden")).mappings()}


def _values(engine) -> dict[tuple[str, str], dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM mpi.golden_value")).mappings()
        return {(r["master_id"], r["field"]): dict(r) for r in rows}


def _conflicts(engine) -> dict[tuple[str, str], dict[str, tuple[list[str], int, bool]]]:
    out: dict = {}
    with engine.connect() as conn:
        for r in conn.execute(sa.text("SELECT * FROM mpi.golden_conflict")).mappings():
            out.setdefault((r["master_id"], r["field"]), {})[r["value"]] = (r["sources"], r["records"], r["chosen"])
    return out


def _check_invariants(engine) -> None:
    """Whatever the data: one chosen value per conflict, and it is the golden value; counts agree."""
    golden, values, conflicts = _golden(engine), _values(engine), _conflicts(engine)
    for (master_id, field), listed in conflicts.items():
        assert len(listed) >= 2
        assert sum(chosen for _, _, chosen in listed.values()) == 1, (master_id, field)
        assert next(v for v, (_, _, chosen) in listed.items() if chosen) == values[master_id, field]["value"]
        assert values[master_id, field]["rule"] != "only_value"
    for master_id, row in golden.items():
        assert row["conflicts"] == sum(1 for m, _ in conflicts if m == master_id)
    assert {m for m, _ in values} <= set(golden)


@pytest.fixture
def warehouse(clean_warehouse):
    with clean_warehouse.begin() as conn:
        conn.execute(sa.text("TRUNCATE mpi.golden_value, mpi.golden_conflict"))
    return clean_warehouse


def test_authority_beats_recency_and_frequency(warehouse):
    number = "341522199001010012"
    _insert(warehouse, {
        # a civil-affairs death registration against two newer rolls that still list the person
        "M1": ("rec:mz_gaoling/GL1", [
            rec("mz_gaoling", "GL1", day(1), status_raw="停发", status_date=dt.date(2025, 6, 1)),
            rec("rs_yanglao", "RS1", day(5), status_raw="1"),
            rec("mz_dibao", "DB1", day(5), status_raw="在保"),
        ]),
        # a newborn without an ID number: birth registration decides the birth date
        "M2": ("rec:wj_chusheng/CS1", [
            rec("wj_chusheng", "CS1", day(1), birth_date=dt.date(2025, 3, 7), sex=1),
            rec("rs_yiliao", "YB1", day(4), birth_date=dt.date(2025, 3, 8), sex=1),
            rec("rs_yiliao", "YB2", day(4), birth_date=dt.date(2025, 3, 8)),
        ]),
        # anchored on an ID number: the number's birth date outranks birth registration and the typed date
        "M3": (f"id:{number}", [
            rec("rs_yanglao", "RS3", day(1), id_number=number, id_birth_date=dt.date(1990, 1, 1), id_sex=1,
                birth_date=dt.date(1990, 1, 10), sex=1),
            rec("wj_chusheng", "CS3", day(2), birth_date=dt.date(1990, 2, 1)),
        ]),
    })
    assert _rebuild(warehouse) == 3
    golden, values, conflicts = _golden(warehouse), _values(warehouse), _conflicts(warehouse)

    assert (golden["M1"]["status"], golden["M1"]["status_date"]) == ("deceased", dt.date(2025, 6, 1))
    status = values["M1", "status"]
    assert (status["value"], status["rule"], status["source"], status["source_record_id"]) == (
        "deceased", "authority:mz_gaoling", "mz_gaoling", "GL1")
    assert status["loaded_at"] == day(1)
    assert values["M1", "status_date"]["value"] == "2025-06-01"
    assert (values["M1", "status_date"]["source_record_id"], values["M1", "status_date"]["rule"]) == ("GL1", "with_status")
    assert conflicts["M1", "status"] == {"deceased": (["mz_gaoling"], 1, True), "alive": (["mz_dibao", "rs_yanglao"], 2, False)}

    assert golden["M2"]["birth_date"] == dt.date(2025, 3, 7)
    assert (values["M2", "birth_date"]["rule"], values["M2", "birth_date"]["source_record_id"]) == (
        "authority:wj_chusheng", "CS1")
    assert conflicts["M2", "birth_date"] == {"2025-03-07": (["wj_chusheng"], 1, True), "2025-03-08": (["rs_yiliao"], 2, False)}
    # one value only: no conflict, and its provenance is the authoritative record
    assert (golden["M2"]["sex"], values["M2", "sex"]["rule"], values["M2", "sex"]["source_record_id"]) == (1, "only_value", "CS1")
    assert ("M2", "sex") not in conflicts

    assert (golden["M3"]["birth_date"], golden["M3"]["sex"]) == (dt.date(1990, 1, 1), 1)
    assert (values["M3", "birth_date"]["rule"], values["M3", "birth_date"]["source_record_id"]) == (
        "authority:id_number", "RS3")
    # the record's own typed date disagrees with its ID number: listed, not dropped
    assert conflicts["M3", "birth_date"] == {"1990-01-01": (["rs_yanglao"], 1, True),
                                             "1990-01-10": (["rs_yanglao"], 1, False),
                                             "1990-02-01": (["wj_chusheng"], 1, False)}
    assert (golden["M3"]["id_number"], golden["M3"]["id_number_status"]) == (number, "valid")
    assert (values["M3", "id_number"]["rule"], values["M3", "id_number"]["source_record_id"]) == ("anchor", "RS3")
    assert [golden[m]["conflicts"] for m in ("M1", "M2", "M3")] == [1, 1, 1]


def test_recency_beats_frequency_and_frequency_decides_within_a_day(warehouse):
    p1, p2 = "+8613800000001", "+8613800000002"
    _insert(warehouse, {
        "M1": ("rec:a", [rec("mz_dibao", "A", day(1), phone=p1), rec("rs_yiliao", "B", day(1, 23), phone=p1),
                         rec("wj_yuling", "C", day(3), phone=p2, older=day(1))]),
        # the same night: the order in which sources were loaded says nothing
        "M2": ("rec:b", [rec("mz_dibao", "A2", day(1, 1), phone=p1), rec("rs_yiliao", "B2", day(1, 9), phone=p1),
                         rec("wj_yuling", "C2", day(1, 23, 30), phone=p2)]),
        "M3": ("rec:c", [rec("rs_yiliao", "Y3", day(1), phone=p2), rec("mz_dibao", "D3", day(1), phone=p1)]),
        "M4": ("rec:d", [rec("mz_dibao", "A4", day(1), name="张三"), rec("rs_yiliao", "B4", day(2), name="张三")]),
    })
    _rebuild(warehouse)
    golden, values, conflicts = _golden(warehouse), _values(warehouse), _conflicts(warehouse)

    assert (golden["M1"]["phone"], values["M1", "phone"]["rule"]) == (p2, "recency")
    # the provenance is the record version std holds, not the older one
    assert (values["M1", "phone"]["source"], values["M1", "phone"]["source_record_id"]) == ("wj_yuling", "C")
    assert values["M1", "phone"]["loaded_at"] == day(3)
    assert conflicts["M1", "phone"] == {p1: (["mz_dibao", "rs_yiliao"], 2, False), p2: (["wj_yuling"], 1, True)}

    assert (golden["M2"]["phone"], values["M2", "phone"]["rule"]) == (p1, "frequency")
    assert values["M2", "phone"]["source_record_id"] == "A2"  # equally recent records: the smallest
    assert (golden["M3"]["phone"], values["M3", "phone"]["rule"], values["M3", "phone"]["source"]) == (
        p1, "tie_break", "mz_dibao")
    assert (values["M4", "name"]["rule"], values["M4", "name"]["source_record_id"]) == ("only_value", "B4")
    assert golden["M4"]["name"] == "张三" and ("M4", "name") not in conflicts

    # the rules are configuration: to the microsecond, the last load of the night wins …
    exact = copy.deepcopy(RAW_YAML)
    exact["recency"]["resolution"] = "exact"
    _rebuild(warehouse, rules=parse_rules(exact))
    assert (_golden(warehouse)["M2"]["phone"], _values(warehouse)["M2", "phone"]["rule"]) == (p2, "recency")
    # … and frequency may come first
    frequent = copy.deepcopy(RAW_YAML)
    frequent["fields"]["phone"]["order"] = ["frequency", "recency"]
    _rebuild(warehouse, rules=parse_rules(frequent))
    assert (_golden(warehouse)["M1"]["phone"], _values(warehouse)["M1", "phone"]["rule"]) == (p1, "frequency")


def test_only_usable_values_count_and_addresses_are_canonical(warehouse):
    raw = ["安徽省六安市霍邱县城关镇东湖村3组12号", "城关镇东湖村三组12号", "城关镇新城社区5组7号",
           "霍邱县东湖村3组12号", "东湖村3组12号"]
    parsed = parse_addresses(pd.Series(raw), default_county="341522").astype(object)
    parsed = parsed.where(parsed.notna(), None).to_dict(orient="records")
    assert [p["address_status"] for p in parsed] == ["valid", "county_assumed", "county_assumed", "partial",
                                                     "county_assumed"]
    _insert(warehouse, {"M1": ("rec:a", [
        rec("mz_dibao", "A", day(1), **parsed[0], sex=2, phone="+8613800000001"),
        rec("rs_yiliao", "B", day(1), **parsed[1], sex=1, sex_status="conflict_with_id"),
        rec("wj_liudong", "C", day(3), **parsed[2], sex=0, phone="+8600000000000", phone_status="placeholder"),
        # newer, but without a town: not an address of a house
        rec("rs_yanglao", "D", day(4), **parsed[3], name="无", name_status="placeholder"),
        rec("mz_canji", "E", day(4), **parsed[4]),
    ])})
    _rebuild(warehouse)
    golden, values, conflicts = _golden(warehouse)["M1"], _values(warehouse), _conflicts(warehouse)

    # the mover's new address is the newest; the old one, written two ways, is one value from two records
    assert golden["address"] == "安徽省六安市霍邱县城关镇新城社区5组7号"
    assert values["M1", "address"]["rule"] == "recency"
    assert conflicts["M1", "address"] == {"安徽省六安市霍邱县城关镇东湖村3组12号": (["mz_dibao", "rs_yiliao"], 2, False),
                                          "安徽省六安市霍邱县城关镇新城社区5组7号": (["wj_liudong"], 1, True)}
    # a sex contradicting the record's own ID number, sex 0 "unknown", a placeholder phone or name: no candidates
    assert (golden["sex"], values["M1", "sex"]["rule"]) == (2, "only_value")
    assert (golden["phone"], values["M1", "phone"]["rule"]) == ("+8613800000001", "only_value")
    assert golden["name"] is None and ("M1", "name") not in values
    assert (golden["status"], values["M1", "status"]["rule"]) == ("alive", "only_value")
    assert golden["conflicts"] == 1 and golden["record_count"] == 5
    assert golden["sources"] == ["mz_canji", "mz_dibao", "rs_yanglao", "rs_yiliao", "wj_liudong"]


def test_id_number_and_its_status_come_from_the_anchor(warehouse):
    n1, n2, n3 = "341522199001010012", "341522195001010023", "341522198001010034"
    _insert(warehouse, {
        "M1": (f"id:{n1}", [rec("mz_dibao", "A", day(1), id_number=n1, id_sex=1, id_birth_date=dt.date(1990, 1, 1)),
                            rec("rs_yiliao", "B", day(1), id_number_raw="x", id_number_status="checksum_error")]),
        "M2": (f"id:{n2}", [rec("mz_gaoling", "G", day(1), id_number=n2, id_number_status="upgraded_from_15")]),
        # the number is claimed by another master: this one is marked, and has no number
        "M3": ("rec:rs_yiliao/C", [rec("rs_yiliao", "C", day(1), id_number=n3)]),
        "M4": ("rec:rs_yiliao/D", [rec("rs_yiliao", "D", day(1), id_number_raw="1", id_number_status="malformed"),
                                   rec("mz_dibao", "E", day(1))]),
    })
    assert _rebuild(warehouse) == 4
    golden, values = _golden(warehouse), _values(warehouse)
    assert [(golden[m]["id_number"], golden[m]["id_number_status"]) for m in ("M1", "M2", "M3", "M4")] == [
        (n1, "valid"), (n2, "upgraded_from_15"), (None, "id_name_conflict"), (None, "malformed")]
    assert (values["M2", "id_number"]["source"], values["M2", "id_number"]["loaded_at"]) == ("mz_gaoling", day(1))
    assert ("M3", "id_number") not in values
    assert (golden["M1"]["record_count"], golden["M1"]["sources"]) == (2, ["mz_dibao", "rs_yiliao"])
    # without an ID-derived value nor any other, no birth date is made up
    assert golden["M2"]["birth_date"] is None and ("M2", "birth_date") not in values


def test_partial_rebuild_touches_only_the_given_masters(warehouse):
    _insert(warehouse, {
        "M1": ("rec:a", [rec("mz_dibao", "A", day(1), phone="+8613800000001")]),
        "M2": ("rec:b", [rec("rs_yiliao", "B", day(1), phone="+8613800000002"),
                         rec("wj_yuling", "B2", day(1), phone="+8613800000022")]),
        "M3": ("rec:c", [rec("mz_gaoling", "C", day(1), phone="+8613800000003")]),
    })
    _rebuild(warehouse)
    before = (_golden(warehouse)["M2"], {k: v for k, v in _values(warehouse).items() if k[0] == "M2"},
              {k: v for k, v in _conflicts(warehouse).items() if k[0] == "M2"})
    with warehouse.begin() as conn:
        conn.execute(sa.text("UPDATE std.resident SET phone = '+8613900000000'"))  # every master's data changes
        # M3 merged into M1: its record moves over, its id retires
        conn.execute(sa.text("UPDATE mpi.crosswalk SET master_id = 'M1' WHERE master_id = 'M3'"))
        conn.execute(sa.text("UPDATE mpi.master SET status = 'retired', retired_into = 'M1' WHERE master_id = 'M3'"))

    assert _rebuild(warehouse, master_ids=[]) == 0
    assert _rebuild(warehouse, master_ids=["M1", "M3", "M404"]) == 1
    golden, values, conflicts = _golden(warehouse), _values(warehouse), _conflicts(warehouse)
    assert set(golden) == {"M1", "M2"}
    assert (golden["M1"]["phone"], golden["M1"]["record_count"], golden["M1"]["sources"]) == (
        "+8613900000000", 2, ["mz_dibao", "mz_gaoling"])
    assert not [k for k in [*values, *conflicts] if k[0] == "M3"]
    assert (golden["M2"], {k: v for k, v in values.items() if k[0] == "M2"},
            {k: v for k, v in conflicts.items() if k[0] == "M2"}) == before

    assert _rebuild(warehouse) == 2  # a full rebuild catches up with M2
    assert _golden(warehouse)["M2"]["phone"] == "+8613900000000" and not _conflicts(warehouse)


@pytest.mark.parametrize(("change", "key"), [
    (lambda d: d["fields"]["status"].update(order=["recency", "newest"]), "fields.status.order[1]"),
    (lambda d: d["fields"].pop("phone"), "fields.phone"),
    (lambda d: d["fields"]["phone"].update(authority=["id_number"]), "fields.phone.authority[0]"),
    (lambda d: d["fields"]["name"].update(authority=["Civil Affairs"]), "fields.name.authority"),
    (lambda d: d["fields"]["name"].update(recency="status_date"), "fields.name.recency"),
    (lambda d: d["fields"]["sex"].update(colour="blue"), "fields.sex.colour"),
    (lambda d: d["recency"].update(timezone="Mars/Olympus"), "recency.timezone"),
    (lambda d: d["vital_status"]["codes"]["mz_gaoling"].update(迁出="moved"), "vital_status.codes.mz_gaoling.迁出"),
])
def test_a_bad_rules_file_names_the_file_and_the_key(tmp_path, change, key):
    data = copy.deepcopy(RAW_YAML)
    change(data)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(SurvivorshipError) as err:
        load_rules(path)
    assert str(path) in str(err.value) and f"key '{key}'" in str(err.value)


def test_unknown_authority_names_are_refused_before_anything_is_written(warehouse, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nfields: [", encoding="utf-8")
    with pytest.raises(SurvivorshipError, match="cannot read survivorship rules .*broken.yaml"):
        load_rules(broken)

    _insert(warehouse, {"M1": ("rec:a", [rec("mz_dibao", "A", day(1), phone="+8613800000001")])})
    _rebuild(warehouse)
    data = copy.deepcopy(RAW_YAML)
    data["fields"]["birth_date"]["authority"] = ["id_number", "wj_chushen"]
    rules = parse_rules(data, "custom.yaml")
    with pytest.raises(SurvivorshipError, match=r"custom.yaml(.|\n)*key 'fields.birth_date.authority\[1\]'"):
        with warehouse.begin() as conn:
            rebuild_golden(conn, rules, DEPARTMENTS)
    assert set(_golden(warehouse)) == {"M1"}

"""Probe search (match without create) over a published simulated county, real HTTP on loopback and the
departments' own views: the right master for probes without or with a mistyped ID number, nothing
created, fields cut by sharing and purpose, the access log, and refusals of bad input."""

from __future__ import annotations

import json
import random

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from hub.api import RateLimit, create_app
from hub.api_keys import create_key, key_id_of
from hub.probe import PERSON_FIELDS, ProbeQuery, probe
from tests.helpers import publish_day0
from tests.test_api import _serve, _with_department_views
from warehouse.sharing import CONDITIONAL, load_sharing

SHARING = load_sharing()
DIBAO = "mz-dibao-review"  # civil affairs: releases name, ID number, birth date, address and phone


@pytest.fixture(scope="module")
def published(engine, _served_platforms, county):
    """The county on day 0 published as release 1, with the departments' views (once for this module)."""
    release = publish_day0(engine, _served_platforms, county)
    for _ in _with_department_views(engine):
        yield {"engine": engine, "release_no": release["release_no"]}


@pytest.fixture(scope="module")
def keys(published):
    with published["engine"].begin() as conn:
        return {d: create_key(conn, d, f"{d} probe client", departments=list(SHARING))
                for d in ("civil_affairs", "social_security")}


@pytest.fixture(scope="module")
def api(published, keys):
    server, thread, url = _serve(create_app(published["engine"], rate_limit=RateLimit(per_second=100, burst=500)))
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def people(published):
    """Records with a valid ID number, name and birth date whose master holds other records too, with the
    master the index holds them in."""
    with published["engine"].connect() as conn:
        frame = pd.read_sql(sa.text(
            "SELECT r.source || '/' || r.source_record_id AS record_key, r.name, r.sex, r.birth_date, r.phone,"
            " r.address_raw, r.id_number, c.master_id FROM std.resident r"
            " JOIN mpi.crosswalk c USING (source, source_record_id)"
            " WHERE r.name_status = 'valid' AND r.birth_date IS NOT NULL AND r.id_number_status = 'valid'"
            " AND (SELECT count(*) FROM mpi.crosswalk o WHERE o.master_id = c.master_id) > 2"
            " ORDER BY 1"), conn)
    return frame.sample(n=6, random_state=5).reset_index(drop=True)


def _mistyped(number: str, rng: random.Random) -> str:
    digits = list(number)
    i = rng.randrange(6, 17)
    digits[i] = str((int(digits[i]) + 1 + rng.randrange(8)) % 10)
    return "".join(digits)


def _swapped(number: str) -> str:
    i = next(i for i in range(14, 0, -1) if number[i] != number[i + 1])
    return number[:i] + number[i + 1] + number[i] + number[i + 2:]


def _body(p, **changes) -> dict:
    body = {"name": p["name"], "birth_date": str(p["birth_date"]), "sex": str(int(p["sex"])),
            "address": p["address_raw"], "purpose": DIBAO}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        tables = conn.execute(sa.text("SELECT schemaname || '.' || tablename FROM pg_tables"
                                      " WHERE schemaname IN ('mpi', 'publish', 'std', 'raw') ORDER BY 1")).scalars().all()
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}


def _log_rows(engine, since: int) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM audit.access_log WHERE access_id > :s ORDER BY access_id"), {"s": since}).mappings()]


def _last(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT coalesce(max(access_id), 0) FROM audit.access_log")).scalar_one()


def test_probes_find_the_master_in_the_top_three_and_create_nothing(api, keys, people, published):
    engine, rng = published["engine"], random.Random(7)
    before, since = _counts(engine), _last(engine)
    probes = []
    for i, p in people.iterrows():
        number = [None, _mistyped(p["id_number"], rng), _swapped(p["id_number"])][i % 3]
        probes.append((p, _body(p, id_number=number)))
    # a birth date written another way, full-width digits in a mistyped number, a bare partial number
    p0 = people.iloc[0]
    d = pd.Timestamp(p0["birth_date"])
    probes.append((p0, _body(p0, birth_date=f"{d.year}年{d.month:02d}月{d.day:02d}日",
                             id_number=_swapped(p0["id_number"]).translate(str.maketrans("0123456789", "０１２３４５６７８９")))))
    probes.append((p0, _body(p0, id_number=p0["id_number"][10:17], address=None, sex=None)))
    for p, body in probes:
        r = api.post("/v1/persons/probe", headers={"X-API-Key": keys["civil_affairs"]}, json=body)
        assert r.status_code == 200, r.text
        ranked = [c["master_id"] for c in r.json()["candidates"]]
        assert p["master_id"] in ranked[:3], (body.get("id_number") is None, ranked)
        best = r.json()["candidates"][ranked.index(p["master_id"])]
        assert best["match_probability"] > 0.5 and {a["comparison"] for a in best["agreed"]} >= {"name", "dob"}
    assert _counts(engine) == before  # nothing created: not a record, not a master, not a release
    rows = _log_rows(engine, since)
    assert [r["endpoint"] for r in rows] == ["POST /v1/persons/probe"] * len(probes)
    assert all(r["purpose"] == DIBAO and r["status"] == 200 and r["key_id"] == key_id_of(keys["civil_affairs"])
               for r in rows)
    logged = json.dumps(rows, default=str, ensure_ascii=False)
    assert not any(p["name"] in logged or p["id_number"][:14] in logged for p, _ in probes)


def test_held_out_records_are_found_through_the_persons_other_records(published, people):
    """The record itself left out of the candidates, as a clerk's new registration would be."""
    with published["engine"].connect() as conn:
        for i, p in people.head(3).iterrows():
            query = ProbeQuery(name=p["name"], birth_date=str(p["birth_date"]), sex=str(int(p["sex"])),
                               id_number=None if i == 0 else _swapped(p["id_number"]))
            answer = probe(conn, query, sharing=None, purpose=None, exclude=[p["record_key"]])
            assert p["master_id"] in [c["master_id"] for c in answer["candidates"]][:3]
            assert "person" not in answer["candidates"][0]  # the operator's view: no person fields


def test_fields_follow_sharing_and_the_purpose(api, keys, people):
    p = people.iloc[1]
    civil = SHARING["civil_affairs"]
    person_fields = [f for f in civil.visible() if f in PERSON_FIELDS]
    conditional = {f for f in person_fields if civil.classes[f] == CONDITIONAL}
    # 残疾人补贴 releases name, ID number and phone: not the birth date nor the address
    r = api.post("/v1/persons/probe", headers={"X-API-Key": keys["civil_affairs"]},
                 json=_body(p, purpose="mz-canji-subsidy"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["withheld"]) == {"birth_date", "address"} and body["fields_not_used"] == ["birth_date", "address"]
    for c in body["candidates"]:
        assert set(c["person"]) == set(person_fields) - {"birth_date", "address"}
        assert {a["comparison"] for a in c["agreed"]} <= {"name", "sex", "id", "phone"}  # dob would tell it
    assert str(p["birth_date"]) not in r.text  # the birth date given was not compared at all
    r = api.post("/v1/persons/probe", headers={"X-API-Key": keys["civil_affairs"]}, json=_body(p, purpose=DIBAO)).json()
    released = set(person_fields) - conditional | set(civil.unlocked(DIBAO))
    top = r["candidates"][0]
    assert r["withheld"] == [] and set(top["person"]) == released and top["master_id"] == p["master_id"]
    assert r["fields_not_used"] == []
    assert top["person"]["name"] and top["person"]["birth_date"] == str(p["birth_date"])
    # social security never sees address or phone (不予共享): neither the fields nor their comparisons
    social = SHARING["social_security"]
    r = api.post("/v1/persons/probe", headers={"X-API-Key": keys["social_security"]},
                 json=_body(p, purpose="rs-death-stop-payment", phone=p["phone"])).json()
    for c in r["candidates"]:
        assert not {"address", "phone"} & set(c["person"])
        assert set(c["person"]) <= set(social.visible())
        assert not {"address", "phone"} & {a["comparison"] for a in c["agreed"]}


@pytest.mark.parametrize("body, status, field", [
    ({"birth_date": "1980-01-01", "purpose": DIBAO}, 422, "name"),
    ({"name": "张伟", "purpose": DIBAO}, 422, "birth_date"),
    ({"name": "张伟", "birth_date": "不详", "purpose": DIBAO}, 422, "birth_date"),
    ({"name": "无", "birth_date": "1980-01-01", "purpose": DIBAO}, 422, "name"),
    ({"name": "张伟", "birth_date": "1980-01-01", "sex": "X7", "purpose": DIBAO}, 422, "sex"),
    ({"name": "张伟", "birth_date": "1980-01-01"}, 422, "purpose"),
    ({"name": "张" * 5000, "birth_date": "1980-01-01", "purpose": DIBAO}, 422, "name"),
    ({"name": "张伟", "birth_date": "1980-01-01", "id_number": "1" * 41, "purpose": DIBAO}, 422, "id_number"),
    ({"name": "张\u0000伟", "birth_date": "1980-01-01", "purpose": DIBAO}, 400, None),
    ({"name": "张伟", "birth_date": "1980-01-01", "limit": 500, "purpose": DIBAO}, 422, "limit"),
    ({"name": "张伟", "birth_date": "1980-01-01", "purpose": "核查低保"}, 422, "purpose"),
    ({"name": "张伟", "birth_date": "1980-01-01", "purpose": "\u200b"}, 422, "purpose"),
    ({"name": "张伟", "birth_date": "1980-01-01", "purpose": "rs-pension-qualification"}, 422, "purpose"),
], ids=["no-name", "no-birth-date", "placeholder-date", "placeholder-name", "bad-sex", "no-purpose", "huge-name",
        "long-id", "nul", "limit", "free-text-purpose", "zero-width-purpose", "other-departments-purpose"])
def test_bad_input_is_refused_naming_the_field(api, keys, published, body, status, field):
    since = _last(published["engine"])
    r = api.post("/v1/persons/probe", headers={"X-API-Key": keys["civil_affairs"]}, json=body)
    assert r.status_code == status, r.text
    if field is not None:
        assert field in r.text
    assert "张伟" not in r.text and "1" * 41 not in r.text and "核查低保" not in r.text  # never echoed
    assert [row["status"] for row in _log_rows(published["engine"], since)] == [status]


def test_cli_probe_is_the_same_search_and_is_logged(published, people):
    from typer.testing import CliRunner

    from hub.cli import app

    p = people.iloc[2]
    since = _last(published["engine"])
    args = ["probe", "--name", p["name"], "--birth-date", str(p["birth_date"]), "--id-number", _swapped(p["id_number"]),
            "--department", "civil_affairs", "--purpose", DIBAO, "--json"]
    result = CliRunner().invoke(app, args, prog_name="hub")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["candidates"][0]["master_id"] == p["master_id"]
    assert set(answer["candidates"][0]["person"]) == {f for f in SHARING["civil_affairs"].visible() if f in PERSON_FIELDS}
    rows = _log_rows(published["engine"], since)
    assert [(r["endpoint"], r["department"], r["purpose"]) for r in rows] == [("CLI hub probe", "civil_affairs", DIBAO)]
    assert rows[0]["master_ids"] == [c["master_id"] for c in answer["candidates"]]
    bad = CliRunner().invoke(app, ["probe", "--name", p["name"], "--birth-date", "不详"], prog_name="hub")
    assert bad.exit_code == 1 and "birth_date" in bad.output
    # a department's probe needs an approved purpose of its own in force; the operator's needs none
    for purpose in ([], ["--purpose", "核查低保"], ["--purpose", "rs-pension-qualification"]):
        refused = CliRunner().invoke(app, args[:-5] + ["--department", "civil_affairs", *purpose, "--json"], prog_name="hub")
        assert refused.exit_code == 1 and "purpose" in refused.output and "candidates" not in refused.output
    operator = CliRunner().invoke(app, args[:-5] + ["--json"], prog_name="hub")
    assert operator.exit_code == 0, operator.output
    assert json.loads(operator.output)["candidates"][0]["master_id"] == p["master_id"]
    assert "person" not in json.loads(operator.output)["candidates"][0]


def _cut(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "fields_not_used"}


def test_fields_the_purpose_does_not_release_do_not_move_the_answer(api, keys, people, published):
    """Probes differing only in a field not released to the department for the purpose (a phone or an
    address 人社 may never see, a birth date its purpose does not release) get the same answer, scores
    included; the answer names the fields not used. The operator's probe does use them."""
    p = people.iloc[3]
    other_day = str((pd.Timestamp(p["birth_date"]) + pd.Timedelta(days=40)).date())

    def ask(department, **changes):
        r = api.post("/v1/persons/probe", headers={"X-API-Key": keys[department]}, json=_body(p, **changes))
        assert r.status_code == 200, r.text
        return r.json()

    social = "rs-pension-qualification"  # name, ID number, birth date; phone and address are 不予共享
    plain = ask("social_security", purpose=social, address=None)
    assert plain["fields_not_used"] == [] and plain["candidates"][0]["master_id"] == p["master_id"]
    for changes in ({"phone": p["phone"]}, {"phone": "13900000000", "address": "花园镇幸福村9组"},
                    {"address": p["address_raw"]}):
        answer = ask("social_security", purpose=social, **{"address": None, **changes})
        assert _cut(answer) == _cut(plain) and answer["fields_not_used"] == [f for f in ("phone", "address") if changes.get(f)]
    # 残疾人补贴 does not release the birth date: the true one, another day or another year answer alike, the
    # partial-number candidates included (they are chosen by birth year otherwise)
    canji = "mz-canji-subsidy"
    for number in (_swapped(p["id_number"]), p["id_number"][10:17]):
        answers = [ask("civil_affairs", purpose=canji, birth_date=day, id_number=number, address=None)
                   for day in (str(p["birth_date"]), other_day, "1931-02-03")]
        assert _cut(answers[1]) == _cut(answers[0]) == _cut(answers[2])
        assert answers[0]["fields_not_used"] == ["birth_date"]
    with published["engine"].connect() as conn:  # the birth date does count when the operator probes
        weights = [{c["master_id"]: c["match_weight"] for c in probe(
            conn, ProbeQuery(name=p["name"], birth_date=day, sex=str(int(p["sex"])), id_number=p["id_number"][10:17]),
            sharing=None, purpose=None)["candidates"]} for day in (str(p["birth_date"]), other_day)]
    assert weights[0][p["master_id"]] > weights[1].get(p["master_id"], -99)


def test_an_expired_purpose_is_refused(published, people):
    import datetime as dt
    from dataclasses import replace

    from hub.probe import ProbeInputError

    civil = SHARING["civil_affairs"]
    lapsed = replace(civil, purposes={**civil.purposes, DIBAO: replace(civil.purposes[DIBAO],
                                                                        expires=dt.date(2024, 12, 31))})
    p = people.iloc[0]
    with published["engine"].connect() as conn, pytest.raises(ProbeInputError) as refused:
        probe(conn, ProbeQuery(name=p["name"], birth_date=str(p["birth_date"])), sharing=lapsed, purpose=DIBAO)
    assert refused.value.field == "purpose" and "expired" in str(refused.value)

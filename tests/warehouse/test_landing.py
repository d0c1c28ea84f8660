"""Landing raw records in a real PostgreSQL: idempotent, nothing lost."""

import datetime as dt

import sqlalchemy as sa

from warehouse.landing import content_hash, land_records, open_batch

NOW = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)


def _land(engine, records, source="t_src"):
    with engine.begin() as conn:
        batch = open_batch(conn, source)
        return land_records(conn, source=source, batch_id=batch, records=records, primary_key="id", fetched_at=NOW)


def test_landing_is_idempotent_and_reconciles(clean_warehouse):
    records = [{"id": "A1", "xm": "张三"}, {"id": "A2", "xm": "李四"}, {"id": "A2", "xm": "李四"}]
    first = _land(clean_warehouse, records)
    assert (first.received, first.landed, first.duplicates, first.quarantined) == (3, 2, 1, 0)
    again = _land(clean_warehouse, records)
    assert (again.received, again.landed, again.duplicates) == (3, 0, 3)
    changed = _land(clean_warehouse, [{"id": "A1", "xm": "张三丰"}])
    assert changed.landed == 1  # a new version of A1 lands beside the old one
    with clean_warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM raw.record")).scalar_one() == 3


def test_unparseable_records_are_quarantined_with_reason_and_payload(clean_warehouse):
    counts = _land(clean_warehouse, [{"id": "B1"}, {"xm": "no key"}, ["not", "an", "object"], {"id": "  "}])
    assert (counts.received, counts.landed, counts.quarantined) == (4, 1, 3)
    with clean_warehouse.connect() as conn:
        rows = conn.execute(sa.text("SELECT reason_code, payload FROM raw.quarantine ORDER BY quarantine_id")).all()
    assert [r.reason_code for r in rows] == ["missing_primary_key", "not_an_object", "missing_primary_key"]
    assert '"no key"' in rows[0].payload


def test_payload_is_stored_exactly_as_received(clean_warehouse):
    record = {"id": "C1", "xm": "买买提•艾力", "csrq": "1990年03月07日", "n": 3, "x": None, "e": ""}
    _land(clean_warehouse, [record])
    with clean_warehouse.connect() as conn:
        payload, digest = conn.execute(sa.text("SELECT payload, content_hash FROM raw.record")).one()
    assert payload == record
    assert digest == content_hash(dict(reversed(record.items())))

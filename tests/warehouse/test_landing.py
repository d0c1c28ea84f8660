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


def test_a_change_in_a_volatile_field_alone_is_no_new_version(clean_warehouse):
    """A ledger renumbers its rows (序号) when one is added or removed; the records did not change."""
    def land(records):
        with clean_warehouse.begin() as conn:
            return land_records(conn, source="t_src", batch_id=open_batch(conn, "t_src"), records=records,
                                primary_key="id", fetched_at=NOW, volatile_fields=("序号",))

    first = land([{"序号": "1", "id": "D1", "xm": "张三"}, {"序号": "2", "id": "D2", "xm": "李四"}])
    renumbered = land([{"序号": "1", "id": "D2", "xm": "李四"}])
    corrected = land([{"序号": "1", "id": "D2", "xm": "李思"}])
    assert (first.landed, renumbered.landed, renumbered.duplicates, corrected.landed) == (2, 0, 1, 1)
    with clean_warehouse.connect() as conn:
        rows = conn.execute(sa.text("SELECT payload FROM raw.record WHERE source_record_id = 'D2'"
                                    " ORDER BY record_id")).scalars().all()
    # the stored versions keep the row number they were received with
    assert rows == [{"序号": "2", "id": "D2", "xm": "李四"}, {"序号": "1", "id": "D2", "xm": "李思"}]
    assert content_hash({"序号": "7", "id": "D2"}, ("序号",)) == content_hash({"id": "D2"})


def test_unchanged_records_are_checked_for_their_deletion_flag(clean_warehouse):
    """A page sends the payloads of changed records only, and of those whose flag field may hold the deletion
    value: an unchanged record flagged deleted is still tombstoned, whether its flag is a string or a number."""
    def land(records, flag=("yxbz", "0")):
        with clean_warehouse.begin() as conn:
            batch = open_batch(conn, "t_flag")
            return land_records(conn, source="t_flag", batch_id=batch, records=records, primary_key="id",
                                fetched_at=NOW, deleted_flag=flag)

    first = [{"id": "E1", "yxbz": "0"}, {"id": "E2", "yxbz": 0}, {"id": "E3", "yxbz": "1"}, {"id": "E4"},
             {"id": "E5", "yxbz": 'say "0"'}]
    assert land(first, flag=None).landed == 5  # landed before the source declared its flag: no tombstones
    again = land(first)
    assert (again.landed, again.duplicates, again.tombstones) == (0, 5, 2)
    quoted = land(first, flag=("yxbz", 'say "0"'))
    assert (quoted.landed, quoted.tombstones) == (0, 1)
    changed = land([{"id": "E3", "yxbz": "0"}, {"id": "E4", "xm": "新"}])
    assert (changed.landed, changed.tombstones) == (2, 1)
    with clean_warehouse.connect() as conn:
        tombstoned = conn.execute(sa.text("SELECT source_record_id FROM raw.tombstone WHERE source = 't_flag'"
                                          " ORDER BY 1")).scalars().all()
        assert tombstoned == ["E1", "E2", "E3", "E5"]
        assert conn.execute(sa.text("SELECT payload FROM raw.record WHERE source_record_id = 'E4'"
                                    " ORDER BY record_id DESC LIMIT 1")).scalar_one() == {"id": "E4", "xm": "新"}


def test_deletions_since_counts_what_the_current_records_say(clean_warehouse):
    """The gate's deletion figures (deleted since, and the records the source had before them) agree with
    ``raw.current_record`` — whether a record was deleted, sent again, or deleted again — though they are
    counted from the keys, not from the records' newest versions."""
    from warehouse.landing import record_absent
    from warehouse.validation import deletions_since

    def land(records, *, seen=None, flag=None):
        with clean_warehouse.begin() as conn:
            batch = open_batch(conn, "t_del")
            land_records(conn, source="t_del", batch_id=batch, records=records, primary_key="id", fetched_at=NOW,
                         deleted_flag=flag)
            if seen is not None:
                record_absent(conn, source="t_del", batch_id=batch, seen=seen)

    land([{"id": f"K{i}", "v": "1"} for i in range(1, 9)])  # K1 … K8
    land([], seen={"K1", "K2", "K3", "K4", "K5", "K6", "K7"})  # K8 absent: deleted before ``since``
    with clean_warehouse.connect() as conn:
        since = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    land([], seen={"K1", "K2", "K3", "K4"})  # K5, K6, K7 absent
    land([{"id": "K5", "v": "2"}, {"id": "K6", "v": "1"}])  # K5 changed and K6 unchanged, both sent again
    land([{"id": "K2", "v": "1", "del": "1"}], flag=("del", "1"))  # K2 flagged deleted
    land([{"id": "K9", "v": "1"}])  # a new record
    current = ("SELECT count(*) FILTER (WHERE NOT deleted) FROM raw.current_record WHERE source = 't_del'")
    with clean_warehouse.connect() as conn:
        found = deletions_since(conn, since)
        live = conn.execute(sa.text(current)).scalar_one()
        standing = conn.execute(sa.text(
            "SELECT count(DISTINCT source_record_id) FROM raw.tombstone WHERE source = 't_del'"
            " AND revoked_in IS NULL AND detected_at > :since"), {"since": since}).scalar_one()
    assert (live, standing) == (6, 2)  # K1 K3 K4 K5 K6 K9 live; K7 and K2 deleted since (K8 before)
    deleted, had_before, _ = found["t_del"]
    assert (deleted, had_before) == (standing, standing + live) == (2, 8)


def test_leading_values_are_the_distinct_values(clean_warehouse):
    """The sources read by skipping through the keys' index are those a scan of every row finds, NULLs left out,
    on an empty table too."""
    from warehouse.bulk import leading_values

    with clean_warehouse.begin() as conn:
        assert leading_values(conn, "raw.record", "source") == []
        conn.execute(sa.text("CREATE TEMP TABLE t_lead (source text, n int)"))
        conn.execute(sa.text("CREATE INDEX ON t_lead (source)"))
        conn.execute(sa.text("INSERT INTO t_lead SELECT (ARRAY['wj_yuling', 'mz_dibao', NULL, 'rs_yiliao'])[1 + i % 4],"
                             " i FROM generate_series(1, 5000) i"))
        found = leading_values(conn, "t_lead", "source")
        scanned = conn.execute(sa.text("SELECT DISTINCT source FROM t_lead WHERE source IS NOT NULL"
                                       " ORDER BY 1")).scalars().all()
        assert found == scanned == ["mz_dibao", "rs_yiliao", "wj_yuling"]

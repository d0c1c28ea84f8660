"""Numbered releases: atomic switch, readers during a publish, show, rollback and withdrawal."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from warehouse.audit import record_gate_run
from warehouse.releases import list_releases, publish, rollback, show_release


def _golden(conn, masters: int, *, version: int) -> None:
    """Replace mpi.golden with ``masters`` synthetic golden rows (no personal data: surrogate values)."""
    conn.execute(sa.text("DELETE FROM mpi.golden"))
    conn.execute(sa.text(
        "INSERT INTO mpi.master (master_id, anchor) SELECT 'M' || lpad(i::text, 8, '0'), 'rec:t/' || i"
        " FROM generate_series(1, :n) i ON CONFLICT DO NOTHING"), {"n": masters})
    conn.execute(sa.text(
        "INSERT INTO mpi.golden (master_id, name, id_number_status, sex, record_count, sources, status)"
        " SELECT 'M' || lpad(i::text, 8, '0'), 'person ' || i || ' v' || :v, 'missing', 1 + i % 2, 1,"
        " ARRAY['mz_dibao'], 'alive' FROM generate_series(1, :n) i"), {"n": masters, "v": version})


def _gate_run(conn) -> int:
    return record_gate_run(conn, [{"suite": "master_index", "success": True, "row_count": 0, "outcomes": []}],
                           docs_path=None)


def _publish(engine, masters: int, version: int):
    with engine.begin() as conn:
        _golden(conn, masters, version=version)
        return publish(conn, _gate_run(conn))


def test_publish_show_rollback_and_withdrawn_content(clean_warehouse):
    engine = clean_warehouse
    assert _publish(engine, 100, 1).release_no == 1
    again = _publish(engine, 100, 1)
    assert (again.outcome, again.release_no) == ("unchanged", 1)
    second = _publish(engine, 120, 2)
    assert (second.outcome, second.release_no) == ("published", 2)

    with engine.connect() as conn:
        shown = show_release(conn, 2)
        assert shown["is_current"] and shown["previous"] == 1
        assert shown["changes"] == {"added": 20, "removed": 0, "changed": 100}
        assert [s["suite"] for s in shown["suites"]] == ["master_index"]
        with pytest.raises(LookupError, match="no release 7"):
            show_release(conn, 7)

    with engine.begin() as conn:
        with pytest.raises(ValueError, match="needs a reason"):
            rollback(conn, 1, reason=" ")
    with engine.begin() as conn:
        outcome = rollback(conn, 1, reason="release 2 misses a source", actor="auditor")
    assert outcome.outcome == "rolled_back" and "withdrawing 2" in outcome.reason
    with engine.connect() as conn:
        releases = {r["release_no"]: r for r in list_releases(conn)}
        assert releases[1]["is_current"] and releases[2]["withdrawn_at"] is not None
        assert conn.execute(sa.text("SELECT count(*) FROM publish.master_person_current")).scalar_one() == 100
        attempt = conn.execute(sa.text(
            "SELECT outcome, release_no, actor FROM audit.publish_attempt ORDER BY attempt_id DESC LIMIT 1")).one()
        assert tuple(attempt) == ("rolled_back", 1, "auditor")
    with engine.begin() as conn, pytest.raises(ValueError, match="withdrawn"):
        rollback(conn, 2, reason="undo")

    # the withdrawn content is not published again; changed content is, as release 3
    blocked = _publish(engine, 120, 2)
    assert (blocked.outcome, blocked.release_no) == ("blocked", 1) and "withdrawn" in blocked.reason
    third = _publish(engine, 130, 3)
    assert (third.outcome, third.release_no) == ("published", 3)


def test_readers_see_whole_releases_while_new_ones_are_published(clean_warehouse):
    """Queries against the published view keep running without errors through several publishes, and
    every answer is one whole release; a reader inside a transaction keeps the release it started with."""
    engine = clean_warehouse
    sizes = {1: 20_000, 2: 25_000, 3: 30_000, 4: 35_000}
    _publish(engine, sizes[1], 1)

    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[tuple[int, int, int]] = []

    def reader() -> None:
        try:
            with engine.connect() as conn:
                while not stop.is_set():
                    row = conn.execute(sa.text(
                        "SELECT count(*), min(release_no), max(release_no) FROM publish.master_person_current")).one()
                    seen.append(tuple(row))
                    conn.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    # a reader in a repeatable-read transaction that started before the publishes
    snapshot = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    snapshot.begin()
    before = snapshot.execute(sa.text("SELECT count(*) FROM publish.master_person_current")).scalar_one()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for version in (2, 3, 4):
            time.sleep(0.2)
            assert _publish(engine, sizes[version], version).release_no == version
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    after = snapshot.execute(sa.text("SELECT count(*) FROM publish.master_person_current")).scalar_one()
    snapshot.rollback()
    snapshot.close()

    assert errors == []
    assert len(seen) > 10
    for count, low, high in seen:
        assert low == high and count == sizes[low], (count, low, high)
    assert {low for _, low, _ in seen} >= {1, 4}
    assert before == after == sizes[1]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM publish.master_person_current")).scalar_one() == sizes[4]


def _validated_gate_run(engine, departments) -> int:
    """A gate run recorded as the pipeline's gate records one: the digest with the state it was read in."""
    from warehouse.releases import content_state

    with engine.begin() as conn:
        digest, state = content_state(conn, departments)
        return record_gate_run(conn, [{"suite": "master_index", "success": True, "row_count": 0, "outcomes": []}],
                               docs_path=None, content_hash=digest, index_state=state)


def _publish_reading(engine, run_id: int, departments) -> tuple[object, bool]:
    """Publish gate run ``run_id``; also whether the publish read the whole index to compute its digest."""
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        with engine.begin() as conn:
            outcome = publish(conn, run_id, departments)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    return outcome, any("FROM mpi.golden g" in s for s in statements)


def test_publish_takes_the_gate_digest_only_while_nothing_it_covers_was_written(clean_warehouse):
    """Every transaction that writes the golden records, the crosswalk or std.resident (through the hub or
    by hand, with or without the index lock) leaves a row in audit.index_write; publish reads the whole index
    again only when one committed since the gate, or the registry changed — and then holds a changed index."""
    engine = clean_warehouse
    departments = {"mz_dibao": "民政"}
    with engine.begin() as conn:
        _golden(conn, 50, version=1)
    run = _validated_gate_run(engine, departments)
    with engine.begin() as conn:  # a write that was rolled back changed nothing
        conn.execute(sa.text("UPDATE mpi.golden SET phone = '0' WHERE master_id = 'M00000001'"))
        conn.rollback()
    first, read = _publish_reading(engine, run, departments)
    assert (first.outcome, first.release_no, read) == ("published", 1, False)

    run = _validated_gate_run(engine, departments)
    with engine.begin() as conn:  # by hand, without the index lock: the trigger sees it all the same
        conn.execute(sa.text("UPDATE mpi.golden SET name = 'person 1 v2' WHERE master_id = 'M00000001'"))
    held, read = _publish_reading(engine, run, departments)
    assert held.outcome == "blocked" and "changed after gate run" in held.reason and read

    run = _validated_gate_run(engine, departments)
    with engine.begin() as conn:
        _golden(conn, 50, version=1)  # rewritten as it was in release 1: read again, found equal to it
    same, read = _publish_reading(engine, run, departments)
    assert read and (same.outcome, same.release_no) == ("unchanged", 1)

    run = _validated_gate_run(engine, departments)
    moved, read = _publish_reading(engine, run, {"mz_dibao": "卫健"})  # the registry changed since the gate
    assert read and (moved.outcome, moved.release_no) == ("unchanged", 1)
    untouched, read = _publish_reading(engine, run, departments)
    assert not read and (untouched.outcome, untouched.release_no) == ("unchanged", 1)


def test_releases_recorded_with_the_earlier_content_hash_are_still_recognised(clean_warehouse):
    """A release (current or withdrawn) or a gate run recorded before the content hash took its 'v2:' form is
    compared with the content's hash in that earlier form: an unchanged index stays unchanged, withdrawn content
    is not published again, across the upgrade."""
    from warehouse.releases import _LEGACY_HASH, content_hash

    engine = clean_warehouse
    first = _publish(engine, 40, 1)
    second = _publish(engine, 60, 2)
    assert (first.release_no, second.release_no) == (1, 2)
    with engine.begin() as conn:
        assert content_hash(conn, None).startswith("v2:")
        legacy = conn.execute(sa.text(f"SELECT {_LEGACY_HASH}"), {"s": [], "d": []}).scalar_one()
        conn.execute(sa.text("UPDATE publish.release SET content_hash = :h WHERE release_no = 2"), {"h": legacy})
    again = _publish(engine, 60, 2)
    assert (again.outcome, again.release_no) == ("unchanged", 2)

    with engine.begin() as conn:
        rollback(conn, 1, reason="release 2 misses a source")
    withdrawn = _publish(engine, 60, 2)
    assert (withdrawn.outcome, withdrawn.release_no) == ("blocked", 1) and "withdrawn" in withdrawn.reason
    with engine.begin() as conn:  # a gate run of the earlier form that validated this very content
        _golden(conn, 70, version=3)
        legacy = conn.execute(sa.text(f"SELECT {_LEGACY_HASH}"), {"s": [], "d": []}).scalar_one()
        run = record_gate_run(conn, [{"suite": "master_index", "success": True, "row_count": 0, "outcomes": []}],
                              docs_path=None, content_hash=legacy)
    with engine.begin() as conn:
        third = publish(conn, run)
    assert (third.outcome, third.release_no) == ("published", 3)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT content_hash FROM publish.release WHERE release_no = 3")).scalar_one() \
            == content_hash(conn, None)

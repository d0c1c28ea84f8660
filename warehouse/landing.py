"""Landing raw records: as received (JSONB), idempotent, nothing lost; and the bookkeeping of loads.

A load of a source is one batch, under the source's lock: batches a stopped process left running
are marked failed, the batch opens, the cursor and the ingested files are read, the records land,
and the cursor advances in the same transaction that commits them.

Every load reports ``received = landed + quarantined + duplicates`` and fails when that identity
does not hold. A record is a duplicate when it equals the newest landed version of its (source,
source_record_id) by content hash, so sources may repeat pages without doubling anything, and a record
returning to an earlier content is a new version. A source's volatile fields
(a ledger's row number, renumbered whenever a row is added or removed) are left out of the hash.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from schemas.masking import mask_id_number
from warehouse.bulk import copy_rows, staging_table


class LoadIdentityError(RuntimeError):
    """received != landed + quarantined + duplicates."""


@dataclass
class LoadCounts:
    received: int = 0
    landed: int = 0
    quarantined: int = 0
    duplicates: int = 0
    pages: int = 0
    tombstones: int = 0
    files_unchanged: int = 0  # files loaded before, seen again and skipped unread

    def add(self, other: LoadCounts) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def check(self, source: str) -> None:
        if self.received != self.landed + self.quarantined + self.duplicates:
            raise LoadIdentityError(
                f"{source}: load does not reconcile: received {self.received} != landed {self.landed} + "
                f"quarantined {self.quarantined} + duplicates {self.duplicates}")


def content_hash(record: dict, volatile: Collection[str] = ()) -> str:
    """A stable hash of a record's content (key order does not matter), leaving out ``volatile`` fields."""
    return _hashed(record, volatile)[0]


def _canonical(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _hashed(record: dict, volatile: Collection[str] = ()) -> tuple[str, str]:
    """(content hash, JSON text of the whole record): one serialisation serves both when no field is volatile
    (the text is stored as JSONB, where key order and spacing do not count)."""
    if volatile:
        content = {k: v for k, v in record.items() if k not in volatile}
        return hashlib.sha256(_canonical(content).encode("utf-8")).hexdigest(), _payload(record)
    text = _canonical(record)
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), text


@contextlib.contextmanager
def source_lock(engine: sa.Engine, source: str) -> Iterator[bool]:
    """Hold the load lock of ``source`` while the block runs; yields False when another load holds it.

    A PostgreSQL advisory lock on a connection of its own: it ends with the process, so a batch
    left 'running' without it was interrupted.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as guard:
        if not guard.execute(sa.text("SELECT pg_try_advisory_lock(hashtext('ingest:' || :s))"), {"s": source}).scalar():
            yield False
            return
        try:
            yield True
        finally:
            guard.execute(sa.text("SELECT pg_advisory_unlock(hashtext('ingest:' || :s))"), {"s": source})


def fail_interrupted_batches(conn: sa.Connection, source: str) -> int:
    """Mark the batches of ``source`` still 'running' as failed: the process stopped before they committed.

    Call it holding :func:`source_lock`, which no running load then holds.
    """
    return conn.execute(sa.text(
        "UPDATE raw.load_batch SET status = 'failed', finished_at = now(),"
        " error = 'interrupted: the process stopped before the batch committed'"
        " WHERE source = :s AND status = 'running'"), {"s": source}).rowcount


def open_batch(conn: sa.Connection, source: str) -> int:
    """Start a load batch of ``source`` (status 'running'); returns its id."""
    return conn.execute(sa.text("INSERT INTO raw.load_batch (source) VALUES (:s) RETURNING batch_id"),
                        {"s": source}).scalar_one()


def close_batch(conn: sa.Connection, batch_id: int, counts: LoadCounts, status: str, error: str | None = None,
                *, mode: str = "full", schema_drift: dict | None = None) -> None:
    """Finish a batch with its counts, status, mode and schema drift (or the error it failed with)."""
    conn.execute(sa.text(
        "UPDATE raw.load_batch SET finished_at = now(), status = :status, received = :received, landed = :landed, "
        "quarantined = :quarantined, duplicates = :duplicates, pages = :pages, tombstones = :tombstones, "
        "error = :error, mode = :mode, schema_drift = CAST(:drift AS jsonb) WHERE batch_id = :b"),
        {**asdict(counts), "status": status, "error": error, "b": batch_id, "mode": mode,
         "drift": json.dumps(_nul_safe_columns(schema_drift), ensure_ascii=False) if schema_drift else None})


def _nul_safe_columns(drift: dict) -> dict:
    # a column name with a NUL character: JSONB cannot hold it, so it is written as \u0000
    return {k: [_nul_safe(c) for c in v] if isinstance(v, list) else v for k, v in drift.items()}


def source_cursor(conn: sa.Connection, source: str) -> str | None:
    """The incremental cursor of ``source``: the greatest update time landed so far (None before the first load)."""
    return conn.execute(sa.text("SELECT cursor FROM raw.source_state WHERE source = :s"), {"s": source}).scalar()


def advance_cursor(conn: sa.Connection, source: str, cursor: str | None, batch_id: int) -> None:
    """Store the cursor of ``source`` reached by ``batch_id``; in the transaction that commits its data."""
    conn.execute(sa.text(
        "INSERT INTO raw.source_state (source, cursor, batch_id) VALUES (:s, :c, :b)"
        " ON CONFLICT (source) DO UPDATE SET cursor = EXCLUDED.cursor, batch_id = EXCLUDED.batch_id,"
        " updated_at = now()"), {"s": source, "c": cursor, "b": batch_id})


def ingested_files(conn: sa.Connection, source: str) -> set[str]:
    """Content hashes of the files of ``source`` ingested before."""
    return set(conn.execute(sa.text("SELECT content_hash FROM raw.ingested_file WHERE source = :s"),
                            {"s": source}).scalars())


def ingested_file_stamps(conn: sa.Connection, source: str) -> dict[tuple[str, int, int], int]:
    """(file name, size, modification time in ns) of the files of ``source`` ingested before → the batch that
    took each (files taken before their stamps were recorded are not in it)."""
    return {(name, size, mtime): batch for name, size, mtime, batch in conn.execute(sa.text(
        "SELECT file_name, file_size, file_mtime_ns, batch_id FROM raw.ingested_file"
        " WHERE source = :s AND file_size IS NOT NULL AND file_mtime_ns IS NOT NULL"), {"s": source})}


def record_ingested_file(conn: sa.Connection, *, source: str, file_hash: str, file_name: str | None,
                         batch_id: int, records: int, stamp: tuple[int, int] | None = None) -> None:
    """Remember a file whose content was ingested, so that the same content is never ingested again, with its
    ``stamp`` (size, modification time in ns) so that the same file is not even read again."""
    size, mtime = stamp or (None, None)
    conn.execute(sa.text(
        "INSERT INTO raw.ingested_file (source, content_hash, file_name, batch_id, records, file_size, file_mtime_ns)"
        " VALUES (:s, :h, :f, :b, :n, :size, :mtime)"),
        {"s": source, "h": file_hash, "f": file_name, "b": batch_id, "n": records, "size": size, "mtime": mtime})
    # the file's snapshot ends: a later file may hold newer versions of the same keys
    conn.execute(sa.text("DROP TABLE IF EXISTS extract_key"))


def file_ended(conn: sa.Connection) -> None:
    """A file that is not a snapshot ends: a later file of the same load may hold newer versions of its keys."""
    conn.execute(sa.text("DROP TABLE IF EXISTS extract_key"))


def last_snapshot_records(conn: sa.Connection, source: str) -> int | None:
    """How many records the last complete file of ``source`` held (None before its first)."""
    return conn.execute(sa.text("SELECT records FROM raw.ingested_file WHERE source = :s"
                                " ORDER BY batch_id DESC, ingested_at DESC LIMIT 1"), {"s": source}).scalar()


def last_snapshot_file(conn: sa.Connection, source: str) -> str | None:
    """The name of the newest file of ``source`` taken as a complete snapshot (files are taken in name order)."""
    return conn.execute(sa.text("SELECT max(file_name) FROM raw.ingested_file WHERE source = :s"),
                        {"s": source}).scalar()


def quarantine(conn: sa.Connection, *, source: str, batch_id: int, rows: list[tuple[str, str]]) -> int:
    """Store records that could not be parsed, with a reason code and their raw text."""
    if rows:
        conn.execute(sa.text(
            "INSERT INTO raw.quarantine (batch_id, source, source_record_id, reason_code, detail, payload) "
            "VALUES (:b, :s, NULL, :r, :d, :p)"),
            [{"b": batch_id, "s": source, "r": r, "d": _nul_safe(p.split("\n", 1)[0]), "p": _nul_safe(p)}
             for r, p in rows])
    return len(rows)


def record_absent(conn: sa.Connection, *, source: str, batch_id: int, seen: set[str]) -> int:
    """Tombstone every live record of ``source`` missing from a full snapshot (the keys in ``seen``)."""
    copy_rows(conn, staging_table(conn, "seen_key", "source_record_id text"), ("source_record_id",),
              ((_nul_safe(k),) for k in seen))
    conn.execute(sa.text("ANALYZE seen_key"))
    # only this source's keys are scanned (by index); the deletion check runs on the few absent ones
    return conn.execute(sa.text(
        "WITH absent AS ("
        "  SELECT DISTINCT r.source_record_id FROM raw.record r WHERE r.source = :s"
        "    AND NOT EXISTS (SELECT 1 FROM seen_key k WHERE k.source_record_id = r.source_record_id))"
        " INSERT INTO raw.tombstone (source, source_record_id, batch_id, reason)"
        " SELECT :s, a.source_record_id, :b, 'absent_from_snapshot' FROM absent a"
        " WHERE NOT EXISTS (SELECT 1 FROM raw.tombstone t WHERE t.source = :s"
        "   AND t.source_record_id = a.source_record_id AND t.revoked_in IS NULL"
        "   AND t.batch_id >= (SELECT max(r.batch_id) FROM raw.record r"
        "                      WHERE r.source = :s AND r.source_record_id = a.source_record_id))"
        " ON CONFLICT DO NOTHING"), {"s": source, "b": batch_id}).rowcount


#: A text field longer than this (in UTF-8 bytes) is quarantined as ``field_too_long``.
MAX_FIELD_BYTES = 64 * 1024


def _nul_safe(text: str) -> str:
    """``text`` with NUL characters written as ``\\u0000``: PostgreSQL text cannot hold them."""
    return text.replace("\x00", "\\u0000")


def _flaw(value, field: str | None = None) -> tuple[str, str] | None:
    """(reason code, field) of the first value PostgreSQL cannot store (NUL) or that is too long; else None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "nul_character", field or "?"
        if len(value) > MAX_FIELD_BYTES // 4 and len(value.encode("utf-8")) > MAX_FIELD_BYTES:
            return "field_too_long", field or "?"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for name, item in items:
        here = _nul_safe(str(name)) if field is None else f"{field}.{_nul_safe(str(name))}"
        if isinstance(name, str) and "\x00" in name:
            return "nul_character", here
        flaw = _flaw(item, here)
        if flaw:
            return flaw
    return None


def _where(label: str | None, position: int, key: object = None) -> str:
    """Where a record is, without personal data: page or file, position, and the key masked."""
    place = f"{label}, record {position}" if label else f"record {position}"
    return place if key is None else f"{place} (key {mask_id_number(_nul_safe(str(key)))})"


def _payload(record: object) -> str:
    # json.dumps writes NUL as the escape \u0000, so the text can be stored in a quarantine row
    return json.dumps(record, ensure_ascii=False, default=str)


def _sort_page(records: list, primary_key: str, volatile_fields: Collection[str],
               label: str | None) -> tuple[list[tuple], list[tuple], int]:
    """Split a page into records to land (key, hash, payload), records to quarantine (key, reason, detail,
    payload) and the number of exact repeats within the page (duplicates)."""
    good: list[tuple] = []
    bad: list[tuple] = []
    first: dict[str, str] = {}
    repeats = 0
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            bad.append((None, "not_an_object",
                        f"{_where(label, position)} is a {type(record).__name__}, not an object", _payload(record)))
            continue
        key = record.get(primary_key)
        if key is None or (isinstance(key, str) and not key.strip()):
            bad.append((None, "missing_primary_key", f"{_where(label, position)} has no value in field "
                        f"{_nul_safe(primary_key)!r}", _payload(record)))
            continue
        digest, text = _hashed(record, volatile_fields)
        # a NUL character shows in the JSON text as its escape, a field over MAX_FIELD_BYTES makes it long:
        # only then is the record looked at field by field
        flaw = _flaw(record) if "\\u0000" in text or len(text) > MAX_FIELD_BYTES // 4 else None
        if flaw:
            reason, field = flaw
            what = "holds a NUL character" if reason == "nul_character" else f"is longer than {MAX_FIELD_BYTES} bytes"
            bad.append((_nul_safe(str(key)), reason, f"{_where(label, position, key)}: field {field!r} {what}",
                        _payload(record)))
            continue
        key = str(key)
        if key in first:
            if first[key] == digest:
                repeats += 1
            else:
                bad.append((key, "duplicate_key_conflict", f"{_where(label, position, key)}: a second, different "
                            "version of a key received earlier in this extract", _payload(record)))
            continue
        first[key] = digest
        good.append((key, digest, text, position))
    return good, bad, repeats


#: One statement lands a page (one round trip: pages of 500 records each paid seven before). The page comes as
#: arrays; a key an earlier page of this extract (or file) sent with other content is taken out (returned,
#: to be quarantined); the rest is remembered for the pages after (``extract_key``, dropped when a file ends).
#: A record lands as a new version when it differs from the newest landed version of its key. Keys seen again
#: lift an 'absent from snapshot' tombstone; a record flagged deleted is tombstoned unless a deletion is
#: recorded already for the key's newest version (the tombstones lifted here do not count; a version landed
#: here is the newest).
_LAND_PAGE = """
CREATE TEMP TABLE IF NOT EXISTS extract_key (source_record_id text PRIMARY KEY, content_hash text NOT NULL)
    ON COMMIT DROP;
WITH incoming AS (
    SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:hashes AS text[]), CAST(:payloads AS jsonb[]),
                         CAST(:positions AS int[])) AS i (source_record_id, content_hash, payload, position)),
conflict AS (
    SELECT i.source_record_id, i.position FROM incoming i JOIN extract_key e USING (source_record_id)
    WHERE e.content_hash <> i.content_hash),
ok AS (
    SELECT i.* FROM incoming i WHERE NOT EXISTS (SELECT 1 FROM conflict c WHERE c.source_record_id = i.source_record_id)),
remembered AS (
    INSERT INTO extract_key SELECT source_record_id, content_hash FROM ok ON CONFLICT DO NOTHING),
ins AS (
    INSERT INTO raw.record (source, source_record_id, content_hash, payload, batch_id, fetched_at)
    SELECT :s, o.source_record_id, o.content_hash, o.payload, :b, :f FROM ok o
    WHERE o.payload IS NOT NULL AND o.content_hash IS DISTINCT FROM (SELECT r.content_hash FROM raw.record r
        WHERE r.source = :s AND r.source_record_id = o.source_record_id ORDER BY r.record_id DESC LIMIT 1)
    ORDER BY o.source_record_id
    RETURNING source_record_id),
lifted AS (
    UPDATE raw.tombstone t SET revoked_in = :b FROM ok o
    WHERE t.source = :s AND t.source_record_id = o.source_record_id AND t.revoked_in IS NULL
      AND t.reason = 'absent_from_snapshot' AND t.batch_id < :b),
flagged AS (
    INSERT INTO raw.tombstone (source, source_record_id, batch_id, reason)
    SELECT DISTINCT :s, o.source_record_id, :b, 'flagged_deleted' FROM ok o
    WHERE CAST(:flag_field AS text) IS NOT NULL AND o.payload ->> CAST(:flag_field AS text) = CAST(:flag_value AS text)
      AND (o.source_record_id IN (SELECT source_record_id FROM ins) OR NOT EXISTS (
          SELECT 1 FROM raw.tombstone t WHERE t.source = :s AND t.source_record_id = o.source_record_id
            AND t.revoked_in IS NULL AND NOT (t.reason = 'absent_from_snapshot' AND t.batch_id < :b)
            AND t.batch_id >= (SELECT max(r.batch_id) FROM raw.record r
                               WHERE r.source = :s AND r.source_record_id = o.source_record_id)))
    ON CONFLICT DO NOTHING
    RETURNING 1)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM flagged),
       (SELECT coalesce(json_agg(json_build_array(source_record_id, position) ORDER BY position), '[]') FROM conflict)
"""


#: Which keys of a page differ from the newest landed version of their key (or are new): only their payloads go
#: with the page. A daily extract resends mostly what landed before: its unchanged records' JSON was parsed into
#: JSONB and thrown away (at 200,000 persons the medical insurance roll's 179,153 records a day, for one change).
#: The page's statement runs right after, in the same transaction and under the source's lock (no other load
#: lands a version of these keys in between), and inserts only records sent with their payload.
_CHANGED_KEYS = """
SELECT i.k FROM unnest(CAST(:keys AS text[]), CAST(:hashes AS text[])) AS i (k, h)
WHERE i.h IS DISTINCT FROM (SELECT r.content_hash FROM raw.record r
    WHERE r.source = :s AND r.source_record_id = i.k ORDER BY r.record_id DESC LIMIT 1)
"""


def _payloads_needed(conn: sa.Connection, source: str, good: list[tuple], records: list,
                     field: str | None, value: str | None) -> list:
    """The payloads of ``good`` to send with the page: those of records that land as a new version, and of those
    whose deletion flag ``field`` may hold the deletion ``value`` (the page's statement reads it as ``payload ->>``:
    a string is itself, anything but a string or null is left for it to read); None for the rest, which the
    statement handles by key and hash only."""
    changed = set(conn.execute(sa.text(_CHANGED_KEYS), {"keys": [g[0] for g in good], "hashes": [g[1] for g in good],
                                                        "s": source}).scalars())

    def may_be_flagged(record: dict) -> bool:
        held = record.get(field) if field is not None else None
        return held is not None and (not isinstance(held, str) or held == value)

    return [text if key in changed or may_be_flagged(records[position]) else None
            for key, _, text, position in good]


def _conflict_rows(taken: list, records: list, label: str | None) -> list[tuple]:
    """Quarantine rows of the records whose key an earlier page of this extract sent with other content."""
    return [(key, "duplicate_key_conflict", f"{_where(label, position, key)}: a second, different version of a key "
             "received earlier in this extract", _payload(records[position])) for key, position in taken]


def land_records(conn: sa.Connection, *, source: str, batch_id: int, records: list, primary_key: str,
                 fetched_at: dt.datetime, deleted_flag: tuple[str, str] | None = None,
                 volatile_fields: Collection[str] = (), label: str | None = None) -> LoadCounts:
    """Land one page of records (``label``: the page or file, for messages) in the caller's transaction.

    A record lands as a new version when its content differs from the newest landed version of its
    key (so a record returning to an earlier content is a change); otherwise it is a duplicate. A
    record that differs from the newest version only in ``volatile_fields`` (a ledger's row number)
    is a duplicate: the stored version stays the current one. Records that are not objects, have no
    key, hold a NUL character or a field over :data:`MAX_FIELD_BYTES`, or are a second, different
    version of a key earlier in the page are quarantined with their reason; the rest lands.

    Records seen again lift an earlier 'absent from snapshot' tombstone; records whose
    ``deleted_flag`` field holds the deletion value are tombstoned.
    """
    good, bad, repeats = _sort_page(records, primary_key, volatile_fields, label)
    counts, candidates = LoadCounts(received=len(records), pages=1), 0
    if good:
        keys, hashes, _, positions = (list(column) for column in zip(*good))
        flag_field, flag_value = deleted_flag or (None, None)
        payloads = _payloads_needed(conn, source, good, records, flag_field, flag_value)
        counts.landed, counts.tombstones, taken = conn.execute(sa.text(_LAND_PAGE), {
            "keys": keys, "hashes": hashes, "payloads": payloads, "positions": positions, "s": source,
            "b": batch_id, "f": fetched_at, "flag_field": flag_field, "flag_value": flag_value}).one()
        conflicts = _conflict_rows(taken, records, label)
        bad, candidates = bad + conflicts, len(good) - len(conflicts)
    counts.quarantined = len(bad)
    if bad:
        conn.execute(sa.text(
            "INSERT INTO raw.quarantine (batch_id, source, source_record_id, reason_code, detail, payload) "
            "VALUES (:b, :s, :k, :r, :d, :p)"),
            [{"b": batch_id, "s": source, "k": k, "r": r, "d": d, "p": p} for k, r, d, p in bad])
    counts.duplicates = candidates - counts.landed + repeats
    counts.check(source)
    return counts


def quarantine_set_aside(conn: sa.Connection, *, source: str, batch_id: int,
                         rows: list[tuple[str | None, str, str, object]]) -> int:
    """Store whole records set aside before landing, as (key, reason code, detail, record)."""
    if rows:
        conn.execute(sa.text(
            "INSERT INTO raw.quarantine (batch_id, source, source_record_id, reason_code, detail, payload) "
            "VALUES (:b, :s, :k, :r, :d, :p)"),
            [{"b": batch_id, "s": source, "k": None if k is None else _nul_safe(k), "r": r, "d": _nul_safe(d),
              "p": _payload(p)} for k, r, d, p in rows])
    return len(rows)


def last_full_extract(conn: sa.Connection, source: str) -> dt.datetime | None:
    """When the last successful complete extract of ``source`` finished (None: never)."""
    return conn.execute(sa.text(
        "SELECT max(finished_at) FROM raw.load_batch WHERE source = :s AND status = 'succeeded' AND mode = 'full'"),
        {"s": source}).scalar()


def conflicting_keys(conn: sa.Connection, batch_id: int) -> int:
    """How many records of ``batch_id`` were quarantined as a second, different version of a key."""
    return conn.execute(sa.text("SELECT count(*) FROM raw.quarantine WHERE batch_id = :b"
                                " AND reason_code = 'duplicate_key_conflict'"), {"b": batch_id}).scalar_one()

"""A drop file loaded before is skipped, unread, with a log line and a result that say so; a changed one is read.

Real files in a drop folder, the hub's ingest against the session's PostgreSQL (``wj_liudong``: CSV in GBK).
"""

from __future__ import annotations

import logging
import os

import pytest
import sqlalchemy as sa

from hub import pipeline
from hub.errors import HubError
from tests.reliability.test_file_drops import csv_text, drop, drops, facts, person  # noqa: F401


def _stamps(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT file_name, file_size, file_mtime_ns FROM raw.ingested_file WHERE source = 'wj_liudong'"
            " ORDER BY batch_id"))]


def _left_in_place(folder):
    """processed/ cannot be made: the file stays in the drop folder after its load (as on a read-only share)."""
    (folder / "processed").write_text("in the way")


def test_a_file_seen_again_with_its_size_and_time_is_skipped_unread(drops, clean_warehouse, caplog):  # noqa: F811
    folder = drops / "wj_liudong"
    path = drop(folder, "LDRK_20261201.csv", csv_text([person(i) for i in range(30)]))
    _left_in_place(folder)
    with pytest.raises(HubError, match="could not be moved into processed/"):
        pipeline.ingest_source("wj_liudong")
    stat = path.stat()
    assert _stamps(clean_warehouse) == [("LDRK_20261201.csv", stat.st_size, stat.st_mtime_ns)]

    # the same bytes length and modification time, other content: the stamp says "unchanged", so it is not read
    changed = csv_text([person(i, phone=f"139{i:08d}") for i in range(30)]).encode("gbk")
    assert len(changed) == stat.st_size
    path.write_bytes(changed)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (folder / "processed").unlink()
    with caplog.at_level(logging.INFO, logger="connectors.files"):
        again = pipeline.ingest_source("wj_liudong")
    assert (again["files_unchanged"], again["received"], again["landed"], again["tombstones"]) == (1, 0, 0, 0)
    assert "wj_liudong: LDRK_20261201.csv skipped, unchanged: loaded in batch" in caplog.text
    assert "size and modification time have not changed" in caplog.text
    assert not path.exists() and (folder / "processed" / path.name).exists()
    f = facts(clean_warehouse)
    assert all(p["联系电话"].startswith("138") for p in f["payloads"].values())  # nothing of it was read
    assert f["batches"][-1]["status"] == "succeeded" and f["batches"][-1]["received"] == 0


def test_the_same_content_under_a_new_name_is_skipped_by_its_hash(drops, clean_warehouse, caplog):  # noqa: F811
    folder = drops / "wj_liudong"
    content = csv_text([person(i) for i in range(30)])
    drop(folder, "LDRK_20261201.csv", content)
    first = pipeline.ingest_source("wj_liudong")
    assert (first["landed"], first["files_unchanged"]) == (30, 0)

    drop(folder, "LDRK_20261202.csv", content)  # the next night's export, nothing changed
    with caplog.at_level(logging.INFO, logger="connectors.files"):
        again = pipeline.ingest_source("wj_liudong")
    assert (again["files_unchanged"], again["received"], again["landed"], again["tombstones"]) == (1, 0, 0, 0)
    assert "LDRK_20261202.csv skipped, unchanged: its content equals a file loaded before" in caplog.text
    assert (folder / "processed" / "LDRK_20261202.csv").exists()
    assert len(facts(clean_warehouse)["live"]) == 30


def test_a_changed_file_is_read_and_lands_only_what_changed(drops, clean_warehouse):  # noqa: F811
    folder = drops / "wj_liudong"
    drop(folder, "LDRK_20261201.csv", csv_text([person(i) for i in range(30)]))
    pipeline.ingest_source("wj_liudong")
    rows = [person(i) for i in range(1, 31)]  # LD000 deleted, LD030 new
    rows[4] = person(5, phone="13999999999")  # LD005 changed
    drop(folder, "LDRK_20261202.csv", csv_text(rows))
    again = pipeline.ingest_source("wj_liudong")
    assert (again["files_unchanged"], again["received"], again["landed"], again["duplicates"],
            again["tombstones"]) == (0, 30, 2, 28, 1)
    f = facts(clean_warehouse)
    assert f["tombstones"] == {"LD000"} and "LD030" in f["live"] and len(f["live"]) == 30
    assert [s[0] for s in _stamps(clean_warehouse)] == ["LDRK_20261201.csv", "LDRK_20261202.csv"]

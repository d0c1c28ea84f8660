"""Helpers shared by the tests that fill the warehouse."""

from __future__ import annotations

import sqlalchemy as sa


def empty_warehouse(engine: sa.Engine) -> None:
    """Empty every warehouse table and restart the master-id sequence (what ``clean_warehouse`` does)."""
    with engine.begin() as conn:
        tables = conn.execute(sa.text(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables"
            " WHERE schemaname IN ('raw', 'std', 'mpi', 'publish', 'audit')")).scalars().all()
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        conn.execute(sa.text("ALTER SEQUENCE mpi.master_id_seq RESTART"))


def publish_served_county() -> dict:
    """Ingest every served source, standardize, match, gate and publish; the release must be new."""
    from hub import pipeline

    for name in pipeline.source_names():
        pipeline.ingest_source(name)
    pipeline.standardize_sources()
    pipeline.build_master_index()
    gate = pipeline.run_gate()
    release = pipeline.publish_release(gate["validation_run_id"])
    assert release["outcome"] == "published", release
    return {**release, "gate": gate}


def publish_day0(engine: sa.Engine, platforms, county) -> dict:
    """An empty warehouse, then the simulated county of day 0 served (no faults), ingested, matched and
    published (:func:`publish_served_county`)."""
    empty_warehouse(engine)
    platforms.set_faults(None)
    platforms.advance(county)
    return publish_served_county()

"""Writing the master person index: master ids, crosswalk and golden records.

Master ids are assigned per anchor and never reused: an anchor seen before keeps its id, so a
rerun on the same data gives the same ids.
"""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

from warehouse.bulk import copy_frame, staging_table


def write_crosswalk(conn: sa.Connection, anchors: pd.DataFrame) -> dict[str, int]:
    """Assign master ids to ``anchors`` (source, source_record_id, anchor, match_rule) and store the crosswalk."""
    staging_table(conn, "incoming_anchor", "source text, source_record_id text, anchor text, match_rule text")
    copy_frame(conn, "incoming_anchor", anchors, ("source", "source_record_id", "anchor", "match_rule"))
    created = conn.execute(sa.text(
        "WITH new AS (SELECT DISTINCT anchor FROM incoming_anchor a"
        "             WHERE NOT EXISTS (SELECT 1 FROM mpi.master m WHERE m.anchor = a.anchor) ORDER BY anchor),"
        " ins AS (INSERT INTO mpi.master (master_id, anchor)"
        "         SELECT 'M' || lpad(nextval('mpi.master_id_seq')::text, 9, '0'), anchor FROM new RETURNING 1)"
        " SELECT count(*) FROM ins")).scalar_one()
    changed = conn.execute(sa.text(
        "WITH up AS ("
        " INSERT INTO mpi.crosswalk (source, source_record_id, master_id, match_rule)"
        " SELECT a.source, a.source_record_id, m.master_id, a.match_rule"
        " FROM incoming_anchor a JOIN mpi.master m USING (anchor)"
        " ON CONFLICT (source, source_record_id) DO UPDATE"
        "   SET master_id = EXCLUDED.master_id, match_rule = EXCLUDED.match_rule, updated_at = now()"
        "   WHERE (mpi.crosswalk.master_id, mpi.crosswalk.match_rule)"
        "         IS DISTINCT FROM (EXCLUDED.master_id, EXCLUDED.match_rule)"
        " RETURNING 1) SELECT count(*) FROM up")).scalar_one()
    removed = conn.execute(sa.text(
        "DELETE FROM mpi.crosswalk c WHERE NOT EXISTS (SELECT 1 FROM incoming_anchor a"
        " WHERE a.source = c.source AND a.source_record_id = c.source_record_id)")).rowcount
    return {"masters_created": created, "crosswalk_changed": changed, "crosswalk_removed": removed}


def store_reviews(conn: sa.Connection, reviews: pd.DataFrame) -> int:
    """Replace the open grey-zone and constraint pairs with this run's (evidence: match weights only)."""
    conn.execute(sa.text("DELETE FROM mpi.review_pair WHERE decided_at IS NULL"))
    if reviews.empty:
        return 0
    evidence = reviews.filter(regex="^(mw_|gamma_)").astype(float).to_dict(orient="records")
    frame = reviews[["record_key_l", "record_key_r", "match_probability", "match_weight", "review_reason"]].copy()
    frame["evidence"] = [json.dumps(e) for e in evidence]
    return copy_frame(conn, "mpi.review_pair", frame, ("record_key_l", "record_key_r", "match_probability",
                                                       "match_weight", "review_reason", "evidence"))


def rebuild_golden(conn: sa.Connection) -> int:
    """Rebuild one golden record per master id from its standardized records.

    The ID number is the one the master is anchored on (see :mod:`mpi.anchors`); a master whose
    records carry a valid number claimed by another master is marked ``id_name_conflict``.
    """
    conn.execute(sa.text("DELETE FROM mpi.golden"))
    return conn.execute(sa.text(
        "INSERT INTO mpi.golden (master_id, name, id_number, id_number_status, sex, birth_date, record_count, sources)"
        " SELECT c.master_id,"
        "   mode() WITHIN GROUP (ORDER BY r.name),"
        "   min(substr(m.anchor, 4)) FILTER (WHERE m.anchor LIKE 'id:%'),"
        "   CASE WHEN min(m.anchor) LIKE 'id:%' THEN"
        "          CASE WHEN bool_or(r.id_number = substr(m.anchor, 4) AND r.id_number_status = 'valid') THEN 'valid'"
        "               ELSE 'upgraded_from_15' END"
        "        WHEN bool_or(r.id_number_status IN ('valid', 'upgraded_from_15')) THEN 'id_name_conflict'"
        "        ELSE min(r.id_number_status) END,"
        "   max(r.id_sex) FILTER (WHERE r.id_number = substr(m.anchor, 4)),"
        "   max(r.id_birth_date) FILTER (WHERE r.id_number = substr(m.anchor, 4)),"
        "   count(*), array_agg(DISTINCT r.source ORDER BY r.source)"
        " FROM mpi.crosswalk c JOIN mpi.master m USING (master_id)"
        " JOIN std.resident r USING (source, source_record_id)"
        " GROUP BY c.master_id")).rowcount

"""Writing the master person index: master ids, crosswalk and golden records.

Master ids are assigned per anchor and never reused: an anchor seen before keeps its id, so a
rerun on the same data gives the same ids.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from warehouse.bulk import copy_frame


def write_crosswalk(conn: sa.Connection, anchors: pd.DataFrame) -> dict[str, int]:
    """Assign master ids to ``anchors`` (source, source_record_id, anchor, match_rule) and store the crosswalk."""
    conn.execute(sa.text("CREATE TEMP TABLE IF NOT EXISTS incoming_anchor "
                         "(source text, source_record_id text, anchor text, match_rule text) ON COMMIT DROP"))
    conn.execute(sa.text("TRUNCATE incoming_anchor"))
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


def rebuild_golden(conn: sa.Connection) -> int:
    """Rebuild one golden record per master id from its standardized records."""
    conn.execute(sa.text("DELETE FROM mpi.golden"))
    return conn.execute(sa.text(
        "INSERT INTO mpi.golden (master_id, name, id_number, id_number_status, sex, birth_date, record_count, sources)"
        " SELECT c.master_id,"
        "   mode() WITHIN GROUP (ORDER BY r.name),"
        # an ID number whose records name someone else is not given to this master
        "   max(r.id_number) FILTER (WHERE c.match_rule <> 'id_name_conflict'),"
        "   CASE WHEN bool_or(c.match_rule = 'id_name_conflict') THEN 'id_name_conflict'"
        "        WHEN bool_or(r.id_number_status = 'valid') THEN 'valid'"
        "        WHEN bool_or(r.id_number_status = 'upgraded_from_15') THEN 'upgraded_from_15'"
        "        ELSE min(r.id_number_status) END,"
        "   max(r.id_sex) FILTER (WHERE c.match_rule <> 'id_name_conflict'),"
        "   max(r.id_birth_date) FILTER (WHERE c.match_rule <> 'id_name_conflict'),"
        "   count(*), array_agg(DISTINCT r.source ORDER BY r.source)"
        " FROM mpi.crosswalk c JOIN std.resident r USING (source, source_record_id)"
        " GROUP BY c.master_id")).rowcount

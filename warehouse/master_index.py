"""Writing the master person index: master ids, crosswalk, events, reviews and golden records.

Which id each record gets is decided by :func:`mpi.ids.assign_master_ids`; this module stores the
outcome: new ids from the ``mpi.master_id_seq`` sequence, retired ids with their redirect, the
crosswalk rows that changed, and every event with the run that caused it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import sqlalchemy as sa

from warehouse.bulk import copy_columns, copy_frame, deferred_when_empty, staging_table


def mint_master_ids(conn: sa.Connection, n: int) -> list[str]:
    """``n`` new master ids, in order, registered in mpi.master (anchor set later)."""
    if n <= 0:
        return []
    return list(conn.execute(sa.text(
        "INSERT INTO mpi.master (master_id) SELECT 'M' || lpad(nextval('mpi.master_id_seq')::text, 9, '0')"
        " FROM generate_series(1, :n) ORDER BY 1 RETURNING master_id"), {"n": n}).scalars().all())


def apply_assignment(conn: sa.Connection, run_id: int, crosswalk: pd.DataFrame, removed: list[str],
                     retired: pd.DataFrame, events: pd.DataFrame, anchors: pd.DataFrame) -> dict[str, int]:
    """Store one run's outcome for the records it concerned.

    ``crosswalk``: record_key, master_id, match_rule; ``removed``: record keys gone from the sources;
    ``retired``: master_id, retired_into; ``events``: :data:`mpi.ids.EVENT_COLUMNS`;
    ``anchors``: master_id, anchor (``id:<number>`` or ``rec:<record>``)."""
    source, record_id = _split_keys(crosswalk["record_key"])
    frame = pd.DataFrame({"source": source, "source_record_id": record_id,
                          "master_id": crosswalk["master_id"].to_numpy(dtype=object),
                          "match_rule": crosswalk["match_rule"].to_numpy(dtype=object)})
    staging_table(conn, "incoming_crosswalk", "source text, source_record_id text, master_id text, match_rule text")
    copy_columns(conn, "incoming_crosswalk", frame, ("source", "source_record_id", "master_id", "match_rule"))
    with deferred_when_empty(conn, "mpi.crosswalk"):
        changed = _upsert_crosswalk(conn)
    gone = 0
    if removed:
        rp = [k.split("/", 1) for k in removed]
        staging_table(conn, "removed_record", "source text, source_record_id text")
        copy_frame(conn, "removed_record", pd.DataFrame(rp, columns=["source", "source_record_id"]),
                   ("source", "source_record_id"))
        gone = conn.execute(sa.text("DELETE FROM mpi.crosswalk c USING removed_record r"
                                    " WHERE c.source = r.source AND c.source_record_id = r.source_record_id")).rowcount
    staging_table(conn, "retiring", "master_id text, retired_into text")
    copy_frame(conn, "retiring", retired, ("master_id", "retired_into"))
    n_retired = conn.execute(sa.text(
        "UPDATE mpi.master m SET status = 'retired', retired_into = r.retired_into, retired_at = now(), anchor = NULL"
        " FROM retiring r WHERE m.master_id = r.master_id AND m.status = 'active'")).rowcount
    # redirects stay one hop: ids retired earlier into a now-retired id point at its survivor
    conn.execute(sa.text(
        "UPDATE mpi.master m SET retired_into = r.retired_into FROM retiring r"
        " WHERE m.retired_into = r.master_id AND r.retired_into IS NOT NULL"))
    conn.execute(sa.text("DELETE FROM mpi.golden g USING retiring r WHERE g.master_id = r.master_id"))
    staging_table(conn, "incoming_anchor", "master_id text, anchor text")
    copy_columns(conn, "incoming_anchor", anchors, ("master_id", "anchor"))
    conn.execute(sa.text("ANALYZE incoming_anchor"))
    moved_anchor = conn.execute(sa.text(
        "UPDATE mpi.master m SET anchor = a.anchor FROM incoming_anchor a"
        " WHERE m.master_id = a.master_id AND m.anchor IS DISTINCT FROM a.anchor RETURNING m.master_id")).scalars().all()
    ev = pd.DataFrame({"run_id": np.full(len(events), run_id, dtype=np.int64),
                       "master_id": events["master_id"].to_numpy(dtype=object),
                       "event": events["event"].to_numpy(dtype=object), "cause": events["cause"].to_numpy(dtype=object),
                       "other_master_id": events["other_master_id"].to_numpy(dtype=object)})
    ev["source"], ev["source_record_id"] = _split_keys(events["record_key"])
    ev["detail"] = [_detail_json(d) for d in events["detail"]]
    with deferred_when_empty(conn, "mpi.master_event"):
        copy_columns(conn, "mpi.master_event", ev, ("run_id", "master_id", "event", "cause", "other_master_id",
                                                    "source", "source_record_id", "detail"))
    return {"crosswalk_changed": int(changed), "crosswalk_removed": int(gone), "masters_retired": int(n_retired),
            "events": int(len(ev)), "anchors_changed": list(moved_anchor)}


def _upsert_crosswalk(conn: sa.Connection) -> int:
    return conn.execute(sa.text(
        "WITH up AS ("
        " INSERT INTO mpi.crosswalk (source, source_record_id, master_id, match_rule)"
        " SELECT source, source_record_id, master_id, match_rule FROM incoming_crosswalk"
        " ON CONFLICT (source, source_record_id) DO UPDATE"
        "   SET master_id = EXCLUDED.master_id, match_rule = EXCLUDED.match_rule, updated_at = now()"
        "   WHERE (mpi.crosswalk.master_id, mpi.crosswalk.match_rule)"
        "         IS DISTINCT FROM (EXCLUDED.master_id, EXCLUDED.match_rule)"
        " RETURNING 1) SELECT count(*) FROM up")).scalar_one()


def _split_keys(keys: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Record keys ``<source>/<source_record_id>`` → (source, source_record_id); a missing key gives two nulls."""
    parts = [k.partition("/") if isinstance(k, str) else (None, None, None) for k in keys.astype(object)]
    return (np.array([p[0] for p in parts], dtype=object), np.array([p[2] for p in parts], dtype=object))


def _detail_json(detail: dict) -> str:
    if not detail:
        return "{}"
    if len(detail) == 1 and type(detail.get("records")) is int:  # noqa: E721 - the common case, as json.dumps writes it
        return f'{{"records": {detail["records"]}}}'
    return json.dumps(detail)


def store_reviews(conn: sa.Connection, reviews: pd.DataFrame, touching: list[str] | None = None) -> int:
    """Replace the open grey-zone and constraint pairs (all, or those touching the record keys
    ``touching``) with this run's (evidence: match weights only). Decided pairs are kept."""
    if touching is None:
        conn.execute(sa.text("DELETE FROM mpi.review_pair WHERE decided_at IS NULL"))
    else:
        staging_table(conn, "review_scope", "record_key text PRIMARY KEY")
        copy_frame(conn, "review_scope", pd.DataFrame({"record_key": sorted(set(touching))}), ("record_key",))
        conn.execute(sa.text("DELETE FROM mpi.review_pair p USING review_scope s WHERE p.decided_at IS NULL"
                             " AND (p.record_key_l = s.record_key OR p.record_key_r = s.record_key)"))
    if reviews.empty:
        return 0
    evidence = reviews.filter(regex="^(mw_|gamma_)").astype(float).to_dict(orient="records")
    frame = reviews[["record_key_l", "record_key_r", "match_probability", "match_weight", "review_reason"]].copy()
    frame["evidence"] = [json.dumps(e) for e in evidence]
    return copy_frame(conn, "mpi.review_pair", frame, ("record_key_l", "record_key_r", "match_probability",
                                                       "match_weight", "review_reason", "evidence"))

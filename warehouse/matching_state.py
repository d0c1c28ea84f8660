"""What matching keeps between runs: features, scored links, term frequencies, runs, events, decisions.

An incremental run reads only what concerns the records that changed: their standardized rows,
the stored records their blocking keys reach (:func:`candidates`), and the stored links and
clusters around them (:func:`region`). :class:`MatchingStore` offers these to the matcher's delta
entry point (``mpi.delta.StoredIndex``). Record keys are ``<source>/<source_record_id>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from warehouse.bulk import copy_columns, copy_frame, copy_out, indexes_deferred, staging_table
from warehouse.locks import lock_index

FEATURE_COLUMNS = ("record_key", "source", "source_record_id", "name_key", "name_pinyin", "surname", "given_key",
                   "given_pinyin", "id_valid", "id_body", "id_claimed", "dob", "birth_year", "sex", "phone",
                   "address_key", "village", "anchor_key", "standardized_at")
# the values a record is matched on: when none of them changed, the record did not change for matching
MATCH_VALUES = FEATURE_COLUMNS[3:-1]


def key(alias: str) -> str:
    """SQL for the record key of a row of std.resident / mpi.crosswalk under ``alias``."""
    return f"{alias}.source || '/' || {alias}.source_record_id"


def _keys_table(conn: sa.Connection, name: str, keys: Iterable[str]) -> str:
    """A temporary table of record keys, with their source and source record id (split at the first '/')."""
    staging_table(conn, name, "record_key text PRIMARY KEY, source text, source_record_id text")
    keys = sorted(set(keys))
    parts = [k.split("/", 1) for k in keys]
    copy_frame(conn, name, pd.DataFrame({"record_key": keys, "source": [p[0] for p in parts],
                                         "source_record_id": [p[1] if len(p) > 1 else "" for p in parts]}),
               ("record_key", "source", "source_record_id"))
    conn.execute(sa.text(f"ANALYZE {name}"))
    return name


# -- model state and runs ---------------------------------------------------------------------

def lock_matching(conn: sa.Connection) -> None:
    """Hold the matching lock (the index lock, :mod:`warehouse.locks`) until the transaction ends: one run at a
    time, and no standardizing, gate or publish reading half of it."""
    lock_index(conn)


def analyze_index(conn: sa.Connection) -> None:
    """Fresh planner statistics for the index tables (after a full run), so that lookups plan well."""
    conn.execute(sa.text("ANALYZE mpi.match_feature, mpi.match_edge, mpi.crosswalk, mpi.master, mpi.golden,"
                         " mpi.golden_value, mpi.golden_conflict, mpi.review_pair"))


def read_model_state(conn: sa.Connection) -> tuple[str, int] | None:
    row = conn.execute(sa.text("SELECT model_version, records FROM mpi.model_state")).first()
    return (row.model_version, row.records) if row else None


def read_frequencies(conn: sa.Connection, only: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The term-frequency snapshot; with ``only`` (a frame with the snapshot's columns), just the
    values it holds."""
    sql = "SELECT column_name, value, tf FROM mpi.term_frequency"
    if only is not None:
        values = pd.concat([pd.DataFrame({"column_name": c, "value": only[c].dropna().astype(str).unique()})
                            for c in ("name_key", "phone", "address_key")], ignore_index=True)
        staging_table(conn, "wanted_terms", "column_name text, value text")
        copy_frame(conn, "wanted_terms", values, ("column_name", "value"))
        conn.execute(sa.text("ANALYZE wanted_terms"))
        sql += " t JOIN wanted_terms w USING (column_name, value)"
    frame = copy_out(conn, sql, ["column_name", "value", "tf"])
    return {col: pd.DataFrame({col: g["value"].astype(str).to_numpy(), f"tf_{col}": g["tf"].to_numpy(float)})
            for col, g in frame.groupby("column_name")}


def save_frequencies(conn: sa.Connection, tables: dict[str, pd.DataFrame], records: int, model_version: str) -> None:
    conn.execute(sa.text("DELETE FROM mpi.term_frequency"))
    for col, table in tables.items():
        frame = pd.DataFrame({"column_name": col, "value": table[col].to_numpy(), "tf": table[f"tf_{col}"].to_numpy()})
        copy_frame(conn, "mpi.term_frequency", frame, ("column_name", "value", "tf"))
    conn.execute(sa.text(
        "INSERT INTO mpi.model_state (model_version, records) VALUES (:v, :n) ON CONFLICT (singleton) DO UPDATE"
        " SET model_version = EXCLUDED.model_version, records = EXCLUDED.records, frequencies_at = now()"),
        {"v": model_version, "n": records})


def last_run(conn: sa.Connection) -> dict | None:
    row = conn.execute(sa.text(
        "SELECT run_id, mode, started_at, model_version FROM mpi.link_run WHERE finished_at IS NOT NULL"
        " ORDER BY run_id DESC LIMIT 1")).mappings().first()
    return dict(row) if row else None


def start_run(conn: sa.Connection, mode: str, model_version: str, ran_with: dict | None = None) -> int:
    """Record the start of a matching run with what it runs with (model, rules, code, Airflow run)."""
    return conn.execute(sa.text(
        "INSERT INTO mpi.link_run (mode, model_version, ran_with) VALUES (:m, :v, :w) RETURNING run_id"),
        {"m": mode, "v": model_version, "w": json.dumps(ran_with) if ran_with is not None else None}).scalar_one()


def finish_run(conn: sa.Connection, run_id: int, records: int, affected: int, counts: dict) -> None:
    conn.execute(sa.text(
        "UPDATE mpi.link_run SET finished_at = clock_timestamp(), records = :r, affected = :a, counts = :c"
        " WHERE run_id = :id"), {"id": run_id, "r": records, "a": affected, "c": json.dumps(counts, default=str)})


@dataclass
class StewardDecisions:
    """What the decisions in force ask of a run (:func:`warehouse.stewardship.in_force`).

    ``must`` / ``cannot``: record-key pairs (a cannot-link from a split or move-out is (kept, taken out));
    ``recent``: records named by a decision made since the last run; ``detached``: records whose ID number
    belongs to someone else; ``leaving``: records a split or move-out took out, with the master id they left."""

    must: list[tuple[str, str]]
    cannot: list[tuple[str, str]]
    recent: set[str]
    detached: set[str]
    leaving: dict[str, str]


def decisions(conn: sa.Connection, since=None) -> StewardDecisions:
    """The steward decisions every run honours (the latest per pair of records and per record), from
    the append-only history ``mpi.decision``."""
    from warehouse.stewardship import all_decisions, in_force

    rows = all_decisions(conn)
    force = in_force(rows)
    must, cannot = force.pairs()
    recent = {k for r in rows if since is None or r["decided_at"] > since for k in (*r["record_keys"], *r["other_keys"])}
    leaving = {k: m for k, m in force.leaving().items() if k in recent}
    return StewardDecisions(must, cannot, recent, force.detached(), leaving)


# -- standardized records and features ----------------------------------------------------------

def read_std(conn: sa.Connection, columns: Sequence[str], keys: Iterable[str] | None = None) -> pd.DataFrame:
    """Standardized records (all, or those of ``keys``), ordered by record key, via COPY."""
    cols = ", ".join(f"r.{c}" for c in columns)
    if keys is None:
        sql = f"SELECT {cols}, r.standardized_at FROM std.resident r ORDER BY r.source, r.source_record_id"
    else:
        table = _keys_table(conn, "wanted_std", keys)
        sql = (f"SELECT {cols}, r.standardized_at FROM std.resident r JOIN {table} k"
               " USING (source, source_record_id) ORDER BY r.source, r.source_record_id")
    return copy_out(conn, sql, [*columns, "standardized_at"])


def delta(conn: sa.Connection) -> tuple[set[str], set[str], set[str]]:
    """Record keys that are new in std, re-standardized since matching saw them, and gone from std."""
    rows = conn.execute(sa.text(  # one pass over both tables
        f"SELECT coalesce(f.record_key, {key('r')}) AS k,"
        "  CASE WHEN f.record_key IS NULL THEN 'new' WHEN r.source IS NULL THEN 'gone' ELSE 'restd' END AS kind"
        " FROM std.resident r FULL JOIN mpi.match_feature f"
        "   ON f.source = r.source AND f.source_record_id = r.source_record_id"
        " WHERE f.record_key IS NULL OR r.source IS NULL OR f.standardized_at <> r.standardized_at")).all()
    found: dict[str, set[str]] = {"new": set(), "restd": set(), "gone": set()}
    for r in rows:
        found[r.kind].add(r.k)
    return found["new"], found["restd"], found["gone"]


def read_features(conn: sa.Connection, keys: Iterable[str] | None = None, *, ids: Iterable[str] = (),
                  anchors: Iterable[str] = ()) -> pd.DataFrame:
    """Stored features: of ``keys``, of records carrying one of ``ids`` (trusted), or in one of ``anchors``."""
    cols = ", ".join(f"f.{c}" for c in FEATURE_COLUMNS)
    if keys is None and not ids and not anchors:
        return _tidy(copy_out(conn, f"SELECT {cols} FROM mpi.match_feature f ORDER BY f.record_key", FEATURE_COLUMNS))
    k = _keys_table(conn, "wanted_keys", keys or ())
    i = _values_table(conn, "wanted_ids", ids)
    a = _values_table(conn, "wanted_anchors", anchors)
    # one indexed lookup per kind (an OR of the three would scan the table)
    sql = (f"SELECT {cols} FROM mpi.match_feature f JOIN {k} k USING (record_key)"
           f" UNION SELECT {cols} FROM mpi.match_feature f JOIN {i} i ON i.value = f.id_valid"
           f" UNION SELECT {cols} FROM mpi.match_feature f JOIN {a} a ON a.value = f.anchor_key ORDER BY 1")
    return _tidy(copy_out(conn, sql, FEATURE_COLUMNS))


def _values_table(conn: sa.Connection, name: str, values: Iterable[str]) -> str:
    staging_table(conn, name, "value text PRIMARY KEY")
    copy_frame(conn, name, pd.DataFrame({"value": sorted(set(values))}), ("value",))
    conn.execute(sa.text(f"ANALYZE {name}"))
    return name


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    for col in FEATURE_COLUMNS:
        if col == "sex":
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int16")
        elif col != "standardized_at":
            frame[col] = frame[col].astype("string")
    return frame


def write_features(conn: sa.Connection, feats: pd.DataFrame, *, remove: Iterable[str] = (), replace_all: bool = False) -> int:
    """Store the features of ``feats`` (replacing their earlier rows) and drop the ``remove`` keys."""
    if replace_all:  # the whole store: loaded with its lookup indexes built afterwards
        conn.execute(sa.text("TRUNCATE mpi.match_feature"))
        with indexes_deferred(conn, "mpi.match_feature"):
            return copy_columns(conn, "mpi.match_feature", feats, FEATURE_COLUMNS)
    gone = sorted(set(remove) | set(feats["record_key"].astype(str)))
    if gone:
        table = _keys_table(conn, "feature_out", gone)
        conn.execute(sa.text(f"DELETE FROM mpi.match_feature f USING {table} k WHERE f.record_key = k.record_key"))
    return copy_frame(conn, "mpi.match_feature", feats, FEATURE_COLUMNS)


def touch_features(conn: sa.Connection, stamps: pd.DataFrame) -> None:
    """Move the standardized_at of records re-standardized to the same values (record_key, standardized_at)."""
    staging_table(conn, "restamp", "record_key text PRIMARY KEY, standardized_at timestamptz")
    copy_frame(conn, "restamp", stamps, ("record_key", "standardized_at"))
    conn.execute(sa.text("ANALYZE restamp"))
    conn.execute(sa.text("UPDATE mpi.match_feature f SET standardized_at = s.standardized_at FROM restamp s"
                         " WHERE f.record_key = s.record_key"))


def candidates(conn: sa.Connection, probe: pd.DataFrame, rules: Sequence[str], exclude: Iterable[str]) -> pd.DataFrame:
    """Stored records that a blocking rule pairs with a record of ``probe``, other than ``exclude``."""
    if probe.empty:
        return read_features(conn, [])
    staging_table(conn, "probe", "record_key text, surname text, id_body text, dob text, birth_year text,"
                  " name_pinyin text, name_key text, phone text, address_key text, anchor_key text")
    cols = ("record_key", "surname", "id_body", "dob", "birth_year", "name_pinyin", "name_key", "phone",
            "address_key", "anchor_key")
    copy_frame(conn, "probe", probe, cols)
    conn.execute(sa.text("ANALYZE probe"))
    skip = _keys_table(conn, "probe_skip", exclude)
    found = []
    for rule in rules:
        cond = rule.replace("l.", "p.").replace("r.", "f.")
        found.append(f"SELECT f.record_key FROM probe p JOIN mpi.match_feature f ON {cond}"
                     f" AND p.anchor_key <> f.anchor_key")
    sql = (f"SELECT {', '.join('f.' + c for c in FEATURE_COLUMNS)} FROM mpi.match_feature f"
           f" JOIN ({' UNION '.join(found)}) c USING (record_key)"
           f" WHERE NOT EXISTS (SELECT 1 FROM {skip} s WHERE s.record_key = f.record_key) ORDER BY f.record_key")
    return _tidy(copy_out(conn, sql, FEATURE_COLUMNS))


# -- scored links --------------------------------------------------------------------------------

EDGE_COLUMNS = ("record_key_l", "record_key_r", "match_probability", "match_weight", "evidence")


def edges_frame(links: pd.DataFrame) -> pd.DataFrame:
    """Scored pairs by record key (l < r) with their evidence columns (mw_*, gamma_*) → the stored
    form, the evidence as one JSON object per pair."""
    if links.empty:
        return pd.DataFrame(columns=list(EDGE_COLUMNS))
    evidence = links.filter(regex="^(mw_|gamma_)").astype(float)
    return pd.DataFrame({"record_key_l": links["record_key_l"].to_numpy(), "record_key_r": links["record_key_r"].to_numpy(),
                         "match_probability": links["match_probability"].to_numpy(float),
                         "match_weight": links["match_weight"].to_numpy(float),
                         "evidence": evidence_json(evidence)})


_JSON_FLOAT = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def evidence_json(evidence: pd.DataFrame) -> np.ndarray:
    """One JSON object per row of float columns, keys sorted: the text ``json.dumps(row, sort_keys=True)``
    gives, built a column at a time (a county has millions of pairs)."""
    out = np.full(len(evidence), "{", dtype=object)
    for i, col in enumerate(sorted(evidence.columns)):
        text = np.array([_JSON_FLOAT.get(r, r) for r in map(repr, evidence[col].to_numpy(float).tolist())],
                        dtype=object)
        out = out + (", " if i else "") + json.dumps(col) + ": " + text
    return out + "}"


def with_evidence(edges: pd.DataFrame) -> pd.DataFrame:
    """Stored pairs (from :func:`read_edges`) with their evidence spread into mw_* / gamma_* columns."""
    evidence = pd.DataFrame([json.loads(e) for e in edges["evidence"]], index=edges.index)
    return pd.concat([edges.drop(columns=["evidence"]), evidence], axis=1)


def write_edges(conn: sa.Connection, links: pd.DataFrame, *, touching: Iterable[str] = (), replace_all: bool = False) -> int:
    """Store scored pairs (by record key, with evidence columns), replacing every stored pair touching ``touching``."""
    if replace_all:  # every pair: loaded with the lookup index built afterwards
        conn.execute(sa.text("TRUNCATE mpi.match_edge"))
        with indexes_deferred(conn, "mpi.match_edge"):
            return copy_columns(conn, "mpi.match_edge", edges_frame(links), EDGE_COLUMNS)
    table = _keys_table(conn, "edge_out", touching)
    conn.execute(sa.text(f"DELETE FROM mpi.match_edge e USING {table} k WHERE e.record_key_l = k.record_key"))
    conn.execute(sa.text(f"DELETE FROM mpi.match_edge e USING {table} k WHERE e.record_key_r = k.record_key"))
    return copy_frame(conn, "mpi.match_edge", edges_frame(links), EDGE_COLUMNS)


def read_edges(conn: sa.Connection, *, touching: Iterable[str] | None = None, at_least: float | None = None) -> pd.DataFrame:
    """Stored pairs touching ``touching`` (all when None), at or above ``at_least``."""
    cols = ", ".join(EDGE_COLUMNS)
    strong = "" if at_least is None else " AND match_probability >= :p"
    if touching is None:
        sql = f"SELECT {cols} FROM mpi.match_edge WHERE true{strong}"
    else:
        sql = (f"SELECT {cols} FROM mpi.match_edge WHERE record_key_l = ANY(:k){strong}"
               f" UNION SELECT {cols} FROM mpi.match_edge WHERE record_key_r = ANY(:k){strong}")
    rows = conn.execute(sa.text(sql), {"k": sorted(set(touching or ())), "p": at_least}).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(EDGE_COLUMNS))
    frame["evidence"] = [e if isinstance(e, str) else json.dumps(e, sort_keys=True) for e in frame["evidence"]]
    return frame


# -- the region of the index a change can reach --------------------------------------------------

def region(conn: sa.Connection, seeds: Iterable[str], threshold: float, must: Sequence[tuple[str, str]]) -> set[str]:
    """Every record whose cluster may change when ``seeds`` change: the closure over previous master
    ids, stored links at or above ``threshold``, deterministic anchors, trusted ID numbers and
    steward "match" pairs. Each step is a few indexed lookups for the current frontier only."""
    links: dict[str, set[str]] = {}
    for a, b in must:
        links.setdefault(a, set()).add(b)
        links.setdefault(b, set()).add(a)
    found: set[str] = set()
    frontier = set(seeds)
    while frontier:
        found |= frontier
        table = _keys_table(conn, "region_frontier", frontier)
        rows = conn.execute(sa.text(
            f"WITH m AS (SELECT DISTINCT c.master_id FROM mpi.crosswalk c JOIN {table} k USING (source, source_record_id)),"
            f" f AS (SELECT f.anchor_key, f.id_valid FROM mpi.match_feature f JOIN {table} k USING (record_key))"
            f" SELECT {key('c')} FROM mpi.crosswalk c JOIN m USING (master_id)"
            " UNION SELECT g.record_key FROM mpi.match_feature g WHERE g.anchor_key IN (SELECT anchor_key FROM f)"
            " UNION SELECT g.record_key FROM mpi.match_feature g WHERE g.id_valid IN (SELECT id_valid FROM f)"
            f" UNION SELECT e.record_key_r FROM mpi.match_edge e JOIN {table} k ON k.record_key = e.record_key_l"
            "   WHERE e.match_probability >= :p"
            f" UNION SELECT e.record_key_l FROM mpi.match_edge e JOIN {table} k ON k.record_key = e.record_key_r"
            "   WHERE e.match_probability >= :p"), {"p": threshold}
        ).scalars().all()
        reached = set(rows)
        for k in frontier:
            reached |= links.get(k, set())
        frontier = reached - found
    return found


def read_previous(conn: sa.Connection, keys: Iterable[str] | None = None) -> pd.DataFrame:
    """record_key, master_id of the current crosswalk (all, or of ``keys``)."""
    if keys is None:  # the whole crosswalk (a full run): via COPY
        return copy_out(conn, f"SELECT {key('c')} AS record_key, master_id FROM mpi.crosswalk c",
                         ["record_key", "master_id"])
    else:
        table = _keys_table(conn, "previous_keys", keys)
        rows = conn.execute(sa.text(f"SELECT k.record_key, c.master_id FROM mpi.crosswalk c"
                                    f" JOIN {table} k USING (source, source_record_id)")).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["record_key", "master_id"])


def masters_without_golden(conn: sa.Connection) -> list[str]:
    """Master ids the crosswalk holds records under that have no golden record."""
    return conn.execute(sa.text(
        "SELECT DISTINCT c.master_id FROM mpi.crosswalk c"
        " WHERE NOT EXISTS (SELECT 1 FROM mpi.golden g WHERE g.master_id = c.master_id)")).scalars().all()


class MatchingStore:
    """The warehouse's matching state as the stored index a delta run is matched against
    (``mpi.delta.StoredIndex``), inside the caller's transaction."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn

    def features(self, keys: Iterable[str] | None = None, *, ids: Iterable[str] = ()) -> pd.DataFrame:
        return read_features(self.conn, keys, ids=ids)

    def candidates(self, probe: pd.DataFrame, rules: Sequence[str], exclude: Iterable[str]) -> pd.DataFrame:
        return candidates(self.conn, probe, rules, exclude)

    def term_frequencies(self, values: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], int]:
        state = read_model_state(self.conn)
        if state is None:
            raise ValueError("no term-frequency snapshot is stored: run a full rebuild first")
        return read_frequencies(self.conn, only=values), state[1]

    def links(self, touching: Iterable[str]) -> pd.DataFrame:
        return with_evidence(read_edges(self.conn, touching=touching))

    def restamp(self, stamps: pd.DataFrame) -> None:
        touch_features(self.conn, stamps)

    def save_features(self, feats: pd.DataFrame, *, remove: Iterable[str] = ()) -> None:
        write_features(self.conn, feats, remove=remove)

    def save_links(self, links: pd.DataFrame, *, touching: Iterable[str]) -> None:
        write_edges(self.conn, links, touching=touching)

    def region(self, seeds: Iterable[str], threshold: float, must: Sequence[tuple[str, str]]) -> set[str]:
        return region(self.conn, seeds, threshold, must)

    def record_count(self) -> int:
        return self.conn.execute(sa.text("SELECT count(*) FROM mpi.match_feature")).scalar_one()

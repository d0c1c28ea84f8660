"""Golden records by declared survivorship rules, with provenance and conflicts.

One golden record per master id (``mpi.golden``) is built from the standardized records the master
holds. Each field's value is chosen by the survivorship rules (``mpi/survivorship.yaml``, loaded by
``mpi.survivorship.load_rules`` and passed in by the caller): authority, then recency and frequency,
then the smallest (source, source_record_id). ``mpi.golden_value`` says where every golden value came
from (source, record, load time) and which rule decided; ``mpi.golden_conflict`` lists every value
of a field the master's records disagree on.

What the values are (as text in golden_value / golden_conflict):

* ``name`` — the clean name (``name_status`` valid);
* ``sex`` — GB/T 2261.1 ``1`` / ``2`` (a valid code; 0 unknown and 9 unspecified say nothing, and
  a code contradicting the record's own ID number is ``conflict_with_id`` and not used); with the
  ``id_number`` authority, also the sex the anchored ID number encodes;
* ``birth_date`` — ``YYYY-MM-DD`` (valid or Excel serial); with ``id_number``, also the anchored
  number's birth date;
* ``phone`` — E.164 (valid, or the first of several numbers);
* ``address`` — the parsed levels joined back in a readable canonical form, province to house:
  ``安徽省六安市霍邱县城关镇东湖村3组12号`` (group and house numbers in Arabic numerals, with their
  组 / 号; a street name stays before the house number). Only addresses that name their town and
  village and whose status is valid or county_assumed (the levels above the town were left out and
  are the hub's county) count, so the same house written at different granularity (with or without
  province, 三组 or 3组) is one value, and a bare 东湖村 is no candidate;
* ``status`` — the person's vital status, ``alive`` or ``deceased``: a record's raw status
  (``status_raw``, a program's own code: 停发, 在保, a disability class …) read through the rules'
  ``vital_status`` codes, and otherwise their default (a record still on a roll: ``alive``);
  ``status_date`` comes from the same record as the status (for a civil-affairs death, the death
  date; for a roll that dates its entries, such as 流动人口登记, the registration date) and has a
  golden_value row of its own with rule ``with_status``.

``id_number`` and ``id_number_status`` are the master's anchor (``id:<number>``) exactly as before
(golden_value rule ``anchor``, provenance the first record carrying that number); ``record_count``
and ``sources`` count the master's records; ``conflicts`` is the number of the six fields above
whose records disagree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pandas as pd
import sqlalchemy as sa

from schemas import addresses, dates, names, phones, sex
from warehouse.bulk import copy_columns, deferred_when_empty, staging_table

FEW = 10_000  # masters to rebuild up to which their old rows are deleted by index lookups
WORK_MEM = "64MB"
FIELDS = ("name", "sex", "birth_date", "phone", "address", "status")
ID_NUMBER = "id_number"

# the record's own value of each field, as text; NULL unless its status code says it is usable
_VALUE = {
    "name": "CASE WHEN r.name_status = ANY(:name_ok) THEN r.name END",
    "sex": "CASE WHEN r.sex_status = ANY(:sex_ok) AND r.sex IN (1, 2) THEN r.sex::text END",
    "birth_date": "CASE WHEN r.birth_date_status = ANY(:date_ok) THEN to_char(r.birth_date, 'YYYY-MM-DD') END",
    "phone": "CASE WHEN r.phone_status = ANY(:phone_ok) THEN r.phone END",
    "address": ("CASE WHEN r.address_status = ANY(:address_ok) AND r.address_town IS NOT NULL"
                " AND r.address_village IS NOT NULL THEN nullif(concat(r.address_province, r.address_city,"
                " r.address_county, r.address_town, r.address_village, r.address_group || '组',"
                " r.address_house_no || '号'), '') END"),
    "status": "coalesce(sc.status, CAST(:status_default AS text))",
}
# the value the master's anchored ID number encodes (records carrying that number only)
_ID_VALUE = {"sex": "id_sex", "birth_date": "id_birth_date"}
_STATUS_OK = {
    "name_ok": [names.VALID], "sex_ok": [sex.VALID], "date_ok": list(dates.USABLE), "phone_ok": list(phones.USABLE),
    "address_ok": [addresses.VALID, addresses.COUNTY_ASSUMED],
}


class Rules(Protocol):
    """What :func:`rebuild_golden` reads of the rules (an ``mpi.survivorship.SurvivorshipRules``)."""

    recency: Any
    vital_status: Any

    def field(self, name: str) -> Any: ...

    def check_names(self, departments: Mapping[str, str]) -> None: ...


def rebuild_golden(conn: sa.Connection, rules: Rules, departments: Mapping[str, str],
                   master_ids: Sequence[str] | None = None) -> int:
    """Rebuild the golden records (all, or only those of ``master_ids``) and their provenance and conflicts.

    ``departments``: source name → department name (from the source registry). Masters in
    ``master_ids`` that no longer hold records (retired) lose their golden record. When the rules or
    the registry differ from those the stored golden records were built with (``mpi.golden_basis``),
    every golden record is rebuilt, whatever ``master_ids`` says. Returns the number of golden records
    written. Runs in the caller's transaction.
    """
    rules.check_names(departments)
    basis = _fingerprint(rules, departments)
    stored = conn.execute(sa.text("SELECT fingerprint FROM mpi.golden_basis")).scalar()
    if master_ids is not None and stored != basis:
        master_ids = None  # the rules or the registry changed since the golden records were built: all of them
    conn.execute(sa.text(f"SET LOCAL work_mem = '{WORK_MEM}'"))  # the field rankings sort in memory
    _scope(conn, master_ids)
    _gather_records(conn, rules, departments)
    staging_table(conn, "golden_candidate",
                  "field text, master_id text, value text, source text, source_record_id text,"
                  " loaded_at timestamptz, loaded_key timestamptz, status_date date, tier integer")
    staging_table(conn, "golden_pick",
                  "master_id text, field text, value text, source text, source_record_id text, loaded_at timestamptz,"
                  " status_date date, rule text, n_values integer")
    for name in FIELDS:
        _candidates(conn, name, rules.field(name))
    conn.execute(sa.text("ANALYZE golden_candidate (field, master_id)"))
    for name in FIELDS:
        _pick(conn, name, rules.field(name))
    conn.execute(sa.text("ANALYZE golden_pick (master_id, field)"))
    written = _write(conn)
    conn.execute(sa.text(
        "INSERT INTO mpi.golden_basis (fingerprint) VALUES (:f) ON CONFLICT (singleton) DO UPDATE"
        " SET fingerprint = EXCLUDED.fingerprint, built_at = now()"), {"f": basis})
    return written


def _fingerprint(rules: Rules, departments: Mapping[str, str]) -> str:
    """What the golden records are built with: the rules' content and the source → department registry."""
    dump = getattr(rules, "model_dump_json", None)
    text = json.dumps({"rules": dump() if dump else repr(rules), "departments": sorted(departments.items())},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _scope(conn: sa.Connection, master_ids: Sequence[str] | None) -> None:
    """The masters to rebuild, in ``golden_scope``; their old golden rows deleted."""
    staging_table(conn, "golden_scope", "master_id text PRIMARY KEY")
    if master_ids is None:
        for table in ("mpi.golden_conflict", "mpi.golden_value", "mpi.golden"):
            conn.execute(sa.text(f"DELETE FROM {table}"))
        conn.execute(sa.text("INSERT INTO golden_scope SELECT DISTINCT master_id FROM mpi.crosswalk"))
    elif len(master_ids) <= FEW:
        ids = sorted(set(master_ids))
        conn.execute(sa.text("INSERT INTO golden_scope SELECT unnest(CAST(:ids AS text[]))"), {"ids": ids})
        for table in ("mpi.golden_conflict", "mpi.golden_value", "mpi.golden"):
            # an array lookup walks the index; a join with the scope table would scan the whole table
            conn.execute(sa.text(f"DELETE FROM {table} WHERE master_id = ANY(CAST(:ids AS text[]))"), {"ids": ids})
    else:  # many (a full run's changes): loaded in bulk, deleted by a join
        copy_columns(conn, "golden_scope", pd.DataFrame({"master_id": sorted(set(master_ids))}), ("master_id",))
        conn.execute(sa.text("ANALYZE golden_scope"))
        for table in ("mpi.golden_conflict", "mpi.golden_value", "mpi.golden"):
            conn.execute(sa.text(f"DELETE FROM {table} t USING golden_scope s WHERE t.master_id = s.master_id"))
    conn.execute(sa.text("ANALYZE golden_scope"))


def _gather_records(conn: sa.Connection, rules: Rules, departments: Mapping[str, str]) -> None:
    """Every record of the masters in scope with its load time and usable values, in ``golden_record``."""
    staging_table(conn, "golden_department", "source text PRIMARY KEY, department text")
    conn.execute(sa.text("INSERT INTO golden_department SELECT * FROM unnest(CAST(:s AS text[]), CAST(:d AS text[]))"),
                 {"s": list(departments), "d": list(departments.values())})
    codes = [(s, raw.strip(), status) for s, values in rules.vital_status.codes.items() for raw, status in values.items()]
    staging_table(conn, "golden_status_code", "source text, raw text, status text, PRIMARY KEY (source, raw)")
    conn.execute(sa.text("INSERT INTO golden_status_code"
                         " SELECT * FROM unnest(CAST(:s AS text[]), CAST(:r AS text[]), CAST(:v AS text[]))"),
                 {"s": [c[0] for c in codes], "r": [c[1] for c in codes], "v": [c[2] for c in codes]})

    resolution = rules.recency.resolution
    loaded_key = "x.fetched_at" if resolution == "exact" else "date_trunc(:resolution, x.fetched_at, :tz)"
    value_columns = ", ".join(f"{expr} AS {name}_value" for name, expr in _VALUE.items())
    staging_table(conn, "golden_record",
                  "master_id text, anchor text, source text, source_record_id text, department text,"
                  " loaded_at timestamptz, loaded_key timestamptz, id_number text, id_number_status text,"
                  " id_sex text, id_birth_date text, anchored boolean, "
                  + ", ".join(f"{name}_value text" for name in _VALUE) + ", status_date date")
    conn.execute(sa.text(
        "INSERT INTO golden_record"
        " SELECT c.master_id, m.anchor, r.source, r.source_record_id, d.department, x.fetched_at,"
        f"  {loaded_key}, r.id_number, r.id_number_status, r.id_sex::text, to_char(r.id_birth_date, 'YYYY-MM-DD'),"
        "   coalesce(m.anchor LIKE 'id:%' AND r.id_number = substr(m.anchor, 4), false),"
        f"  {value_columns},"
        "   CASE WHEN r.status_date_status = ANY(:date_ok) THEN r.status_date END"
        " FROM golden_scope s JOIN mpi.crosswalk c USING (master_id) JOIN mpi.master m USING (master_id)"
        " JOIN std.resident r ON r.source = c.source AND r.source_record_id = c.source_record_id"
        " JOIN raw.record x ON x.record_id = r.raw_record_id"
        " LEFT JOIN golden_department d ON d.source = r.source"
        " LEFT JOIN golden_status_code sc ON sc.source = r.source AND sc.raw = btrim(r.status_raw)"),
        {**_STATUS_OK, "status_default": rules.vital_status.default,
         "resolution": resolution, "tz": rules.recency.timezone})
    conn.execute(sa.text("ANALYZE golden_record (master_id)"))  # the join key: row count and spread are what plans need


def _candidates(conn: sa.Connection, name: str, rule: Any) -> None:
    """The usable values of one field with their authority tier, one row per record and value."""
    params: dict[str, Any] = {"field": name}
    whens = []
    for position, entry in enumerate(rule.authority):
        if entry != ID_NUMBER:
            params[f"a{position}"] = entry
            whens.append(f"WHEN source = :a{position} OR department = :a{position} THEN {position}")
    tier = f"CASE {' '.join(whens)} ELSE {len(rule.authority)} END" if whens else str(len(rule.authority))
    status_date = "status_date" if name == "status" else "NULL::date AS status_date"
    select = (f"SELECT master_id, {{value}} AS value, source, source_record_id, loaded_at, loaded_key, {status_date},"
              f" {{tier}} AS tier FROM golden_record WHERE {{value}} IS NOT NULL")
    sql = select.format(value=f"{name}_value", tier=tier)
    if ID_NUMBER in rule.authority and name in _ID_VALUE:
        # a record carrying the anchored number offers that number's value too; one row per record and value
        by_id = select.format(value=_ID_VALUE[name], tier=rule.authority.index(ID_NUMBER)) + " AND anchored"
        sql = (f"SELECT master_id, value, source, source_record_id, loaded_at, loaded_key, status_date, min(tier)"
               f" FROM ({sql} UNION ALL {by_id}) c"
               " GROUP BY master_id, value, source, source_record_id, loaded_at, loaded_key, status_date")
    conn.execute(sa.text(f"INSERT INTO golden_candidate SELECT :field, * FROM ({sql}) q"), params)


def _pick(conn: sa.Connection, name: str, rule: Any) -> None:
    """The chosen value of one field per master, and the rule that decided it, into ``golden_pick``.

    Values are ranked by their best candidate; the rule is the first sort key on which the chosen
    value's best candidate differs from the next value's.
    """
    keys, decided = ["tier"], []
    for criterion in rule.order:
        if criterion == "recency" and rule.recency == "status_date":
            keys += ["status_date DESC NULLS LAST", "loaded_key DESC"]
            decided.append("WHEN (status_date, loaded_key) IS DISTINCT FROM (next_status_date, next_loaded_key)"
                           " THEN 'recency'")
        elif criterion == "recency":
            keys.append("loaded_key DESC")
            decided.append("WHEN loaded_key IS DISTINCT FROM next_loaded_key THEN 'recency'")
        else:
            keys.append("records DESC")
            decided.append("WHEN records <> next_records THEN 'frequency'")
    order = ", ".join([*keys, "source", "source_record_id"])
    conn.execute(sa.text(
        "INSERT INTO golden_pick"
        " WITH c AS (SELECT *, count(*) OVER (PARTITION BY master_id, value) AS records"
        "            FROM golden_candidate WHERE field = :field),"
        f" best AS (SELECT DISTINCT ON (master_id, value) * FROM c ORDER BY master_id, value, {order}),"
        " ranked AS ("
        f"  SELECT *, row_number() OVER w AS pos, count(*) OVER (PARTITION BY master_id) AS n_values,"
        "          lead(tier) OVER w AS next_tier, lead(loaded_key) OVER w AS next_loaded_key,"
        "          lead(status_date) OVER w AS next_status_date, lead(records) OVER w AS next_records"
        f"  FROM best WINDOW w AS (PARTITION BY master_id ORDER BY {order}))"
        " SELECT master_id, :field, value, source, source_record_id, loaded_at, status_date,"
        "   CASE WHEN n_values = 1 THEN 'only_value'"
        "        WHEN tier < next_tier THEN 'authority:' || (CAST(:authority AS text[]))[tier + 1]"
        f"       {' '.join(decided)} ELSE 'tie_break' END,"
        "   n_values"
        " FROM ranked WHERE pos = 1"), {"field": name, "authority": list(rule.authority)})


def _write(conn: sa.Connection) -> int:
    conn.execute(sa.text(
        "INSERT INTO mpi.golden_conflict (master_id, field, value, sources, records, chosen)"
        " SELECT c.master_id, c.field, c.value, array_agg(DISTINCT c.source ORDER BY c.source), count(*),"
        "        c.value = p.value"
        " FROM golden_candidate c JOIN golden_pick p ON p.master_id = c.master_id AND p.field = c.field"
        " WHERE p.n_values > 1"
        " GROUP BY c.master_id, c.field, c.value, p.value"
        " ORDER BY c.master_id, c.field, c.value"))  # in key order: the index is filled from left to right
    # id_number / id_number_status exactly as the anchor gives them (see mpi.anchors)
    with deferred_when_empty(conn, "mpi.golden"):
        written = _write_golden(conn)
    conn.execute(sa.text(
        "INSERT INTO mpi.golden_value (master_id, field, value, source, source_record_id, loaded_at, rule)"
        " SELECT master_id, field, value, source, source_record_id, loaded_at, rule FROM golden_pick"
        " UNION ALL"
        " SELECT master_id, 'status_date', to_char(status_date, 'YYYY-MM-DD'), source, source_record_id, loaded_at,"
        "        'with_status'"
        " FROM golden_pick WHERE field = 'status' AND status_date IS NOT NULL"
        " UNION ALL"
        " SELECT g.master_id, 'id_number', g.id_number, a.source, a.source_record_id, a.loaded_at, 'anchor'"
        " FROM (SELECT DISTINCT master_id, substr(anchor, 4) AS id_number FROM golden_record"
        "       WHERE anchor LIKE 'id:%') g"
        " LEFT JOIN (SELECT DISTINCT ON (master_id) master_id, source, source_record_id, loaded_at FROM golden_record"
        "            WHERE anchored ORDER BY master_id, id_number_status <> 'valid', source, source_record_id) a"
        "   USING (master_id)"
        " ORDER BY 1, 2"))
    return written


def _write_golden(conn: sa.Connection) -> int:
    return conn.execute(sa.text(
        "INSERT INTO mpi.golden (master_id, name, id_number, id_number_status, sex, birth_date, phone, address,"
        "                        status, status_date, record_count, sources, conflicts)"
        " SELECT g.master_id, p.name, g.id_number, g.id_number_status, CAST(p.sex AS smallint),"
        "        CAST(p.birth_date AS date), p.phone, p.address, p.status, p.status_date, g.record_count, g.sources,"
        "        coalesce(p.conflicts, 0)"
        " FROM (SELECT master_id,"
        "         min(substr(anchor, 4)) FILTER (WHERE anchor LIKE 'id:%') AS id_number,"
        "         CASE WHEN min(anchor) LIKE 'id:%' THEN"
        "                CASE WHEN bool_or(id_number = substr(anchor, 4) AND id_number_status = 'valid') THEN 'valid'"
        "                     ELSE 'upgraded_from_15' END"
        "              WHEN bool_or(id_number_status IN ('valid', 'upgraded_from_15')) THEN 'id_name_conflict'"
        "              ELSE min(id_number_status) END AS id_number_status,"
        "         count(*) AS record_count, array_agg(DISTINCT source ORDER BY source) AS sources"
        "       FROM golden_record GROUP BY master_id) g"
        " LEFT JOIN (SELECT master_id,"
        "         max(value) FILTER (WHERE field = 'name') AS name, max(value) FILTER (WHERE field = 'sex') AS sex,"
        "         max(value) FILTER (WHERE field = 'birth_date') AS birth_date,"
        "         max(value) FILTER (WHERE field = 'phone') AS phone,"
        "         max(value) FILTER (WHERE field = 'address') AS address,"
        "         max(value) FILTER (WHERE field = 'status') AS status,"
        "         max(status_date) FILTER (WHERE field = 'status') AS status_date,"
        "         count(*) FILTER (WHERE n_values > 1) AS conflicts"
        "       FROM golden_pick GROUP BY master_id) p USING (master_id)")).rowcount

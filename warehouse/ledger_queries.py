"""What the community ledgers (台账) read from a release: its golden records and its enrolments (with each
record's status, status date, own address and fields as received when the release was published).
Nothing is read from the records' later versions, so a ledger of release N reads release N only.

A community is found by the *lead* of a golden address: the address before its first digit (numbers
in golden addresses are Arabic), i.e. down to the village, before group and house number.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa

ADDRESS_LEAD = "regexp_replace({col}, '[0-9].*$', '')"

PERSON_COLUMNS = ("master_id", "name", "id_number", "sex", "birth_date", "phone", "address", "status", "status_date",
                  "sources")


def _frame(result: sa.CursorResult) -> pd.DataFrame:
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def address_leads(conn: sa.Connection, release_no: int) -> pd.DataFrame:
    """lead, persons: the release's golden addresses down to the village, with how many persons have each."""
    return _frame(conn.execute(sa.text(
        f"SELECT {ADDRESS_LEAD.format(col='address')} AS lead, count(*) AS persons FROM publish.master_person"
        " WHERE release_no = :n AND address IS NOT NULL GROUP BY 1"), {"n": release_no}))


def ledger_enrolments(conn: sa.Connection, release_no: int, *, sources: Sequence[str], leads: Sequence[str],
                      town: str | None, village: str | None, raw_fields: Sequence[str] = ()) -> pd.DataFrame:
    """The release's enrolments in ``sources`` of the persons living in a community.

    A person lives there when the lead of their golden address is one of ``leads``; a person without a
    golden address, when their enrolment record's own address is in ``town`` (and ``village`` when
    given). Columns: master_id, source, source_record_id, program, status_raw, record_status_date,
    record_address, record_town, record_village, record_group, record_house_no, and a column
    ``raw:<field>`` per ``raw_fields`` name (the field as received), all as the release published them.
    """
    raw_select = "".join(f", e.record_fields ->> CAST(:raw{i} AS text) AS raw{i}" for i in range(len(raw_fields)))
    village_test = "" if village is None else " AND e.address_village = CAST(:village AS text)"
    result = conn.execute(sa.text(
        "SELECT e.master_id, e.source, e.source_record_id, e.program, e.status_raw, e.status_date AS record_status_date,"
        " e.address_raw AS record_address, e.address_town AS record_town, e.address_village AS record_village,"
        " e.address_group AS record_group, e.address_house_no AS record_house_no" + raw_select +
        " FROM publish.enrolment e"
        " JOIN publish.master_person p ON p.release_no = e.release_no AND p.master_id = e.master_id"
        " WHERE e.release_no = :n AND e.source = ANY(CAST(:sources AS text[]))"
        f"   AND ((p.address IS NOT NULL AND {ADDRESS_LEAD.format(col='p.address')} = ANY(CAST(:leads AS text[])))"
        "     OR (p.address IS NULL AND e.address_town IS NOT DISTINCT FROM CAST(:town AS text)" + village_test + "))"
        " ORDER BY e.master_id, e.source, e.source_record_id"),
        {"n": release_no, "sources": list(sources), "leads": list(leads), "town": town, "village": village,
         **{f"raw{i}": f for i, f in enumerate(raw_fields)}})
    return _frame(result).rename(columns={f"raw{i}": f"raw:{f}" for i, f in enumerate(raw_fields)})


def golden_persons(conn: sa.Connection, release_no: int, master_ids: Sequence[str]) -> pd.DataFrame:
    """The release's golden records of ``master_ids`` (columns :data:`PERSON_COLUMNS`), by master id."""
    return _frame(conn.execute(sa.text(
        f"SELECT {', '.join(PERSON_COLUMNS)} FROM publish.master_person"
        " WHERE release_no = :n AND master_id = ANY(CAST(:ids AS text[])) ORDER BY master_id"),
        {"n": release_no, "ids": list(master_ids)}))

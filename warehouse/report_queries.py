"""What the statistical reports (统计报表) read from a release: its persons and its enrolments, whole.

Two set-based reads per release — every person with the lead of their golden address, and the
enrolments of the sources a kind counts — from which every community's report of every kind is
counted in memory (a county of 200,000 persons is read once, not once per community). Nothing is
read from later versions of the records: a report of release N reads release N only.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa

from warehouse.bulk import copy_out
from warehouse.ledger_queries import ADDRESS_LEAD


def _frame(result: sa.CursorResult) -> pd.DataFrame:
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def report_persons(conn: sa.Connection, release_no: int) -> pd.DataFrame:
    """master_id, sex, birth_date, status, status_date, address, lead (the golden address before its
    first digit: down to the village) of every person of the release."""
    return _frame(conn.execute(sa.text(
        f"SELECT master_id, sex, birth_date, status, status_date, address, {ADDRESS_LEAD.format(col='address')} AS lead"
        " FROM publish.master_person WHERE release_no = :n ORDER BY master_id"), {"n": release_no}))


def report_enrolments(conn: sa.Connection, release_no: int, sources: Sequence[str],
                      fields: Sequence[str] = ()) -> pd.DataFrame:
    """master_id, source, source_record_id, program, status_raw, record_town, record_village, record_group,
    record_house_no and one column ``field:<name>`` per ``fields`` (the record's field as received) of the release's enrolments
    in ``sources``, ordered by master id, source and record; pandas strings (read with COPY: a county's enrolments are
    hundreds of thousands of rows)."""
    select = "".join(f", record_fields ->> CAST(%(f{i})s AS text)" for i in range(len(fields)))
    columns = ["master_id", "source", "source_record_id", "program", "status_raw", "record_town", "record_village",
               "record_group", "record_house_no", *(f"field:{f}" for f in fields)]
    return copy_out(conn,
                    "SELECT master_id, source, source_record_id, program, status_raw, address_town, address_village,"
                    " address_group, address_house_no" + select +
                    " FROM publish.enrolment WHERE release_no = %(n)s AND source = ANY(CAST(%(sources)s AS text[]))"
                    " ORDER BY master_id, source, source_record_id",
                    columns, {"n": release_no, "sources": list(sources), **{f"f{i}": f for i, f in enumerate(fields)}})


def previous_release(conn: sa.Connection, release_no: int) -> dict | None:
    """The release published before ``release_no`` that was not withdrawn (its number and date), or None."""
    row = conn.execute(sa.text(
        "SELECT release_no, published_at FROM publish.release WHERE release_no < :n AND withdrawn_at IS NULL"
        " ORDER BY release_no DESC LIMIT 1"), {"n": release_no}).mappings().first()
    return dict(row) if row else None

"""The candidate query of a probe search beyond the model's blocking rules: records whose ID number holds
the digits of a partial number (the rules' candidates are :func:`warehouse.matching_state.candidates`)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa

from warehouse.matching_state import FEATURE_COLUMNS, _tidy

MAX_FRAGMENT_CANDIDATES = 200


def records_with_id_digits(conn: sa.Connection, digits: str, *, birth_year: str | None, surname: str | None,
                           exclude: Iterable[str] = ()) -> pd.DataFrame:
    """Stored features of records whose ID number body holds ``digits`` (a partial number) and that share
    the birth year or the surname (at most :data:`MAX_FRAGMENT_CANDIDATES`: those sharing both first); a
    birth year or surname of None (not given, or not released to the department) chooses nobody."""
    cols = ", ".join(f"f.{c}" for c in FEATURE_COLUMNS)
    rows = conn.execute(sa.text(
        f"SELECT {cols} FROM mpi.match_feature f WHERE strpos(f.id_body, :digits) > 0"
        " AND (f.birth_year = CAST(:year AS text) OR f.surname = CAST(:surname AS text))"
        " AND NOT (f.record_key = ANY(:skip)) ORDER BY (f.birth_year = CAST(:year AS text)"
        " AND f.surname = CAST(:surname AS text)) DESC NULLS LAST, f.record_key LIMIT :n"),
        {"digits": digits, "year": birth_year, "surname": surname, "skip": sorted(set(exclude)),
         "n": MAX_FRAGMENT_CANDIDATES}).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(FEATURE_COLUMNS), dtype=object)
    return _tidy(frame.astype({c: "string" for c in FEATURE_COLUMNS if c not in ("sex", "standardized_at")}))

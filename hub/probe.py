"""Probe search (match without create), the same for ``POST /v1/persons/probe`` and ``hub probe``.

A clerk about to register a person asks whether the index knows them already: name, sex and birth date,
and perhaps a phone, an address and an ID number that may be partial or mistyped. The probe is

1. standardized like every received record (:func:`schemas.resident.standardize_frame`: traditional
   characters, separators, date forms, full-width digits, 15-digit numbers);
2. turned into matching features and paired, in the warehouse, with the stored records the model's
   blocking rules pair it with (:func:`warehouse.matching_state.candidates`: surname and birth date,
   the ID number's body or parts of it, name pinyin and birth year, phone and name, house and birth
   year), plus records whose ID number contains a partial number's digits;
3. scored against each with the matcher's model and the term-frequency snapshot of the last matching
   run (:mod:`mpi.probe`), so that a probe scores as the same record would score in a matching run;
4. answered with the best master ids of the current release, their match probability and the
   comparisons that agreed, and only the fields the department may see for the purpose given.

A department's probe needs an approved purpose of its own that is in force, and is searched and scored
with the fields that purpose releases to it only: a phone, an address, a birth date or an ID number the
department may not see is checked as typed and then left out before any candidate is chosen or scored
(a score that moved with it would tell it). The answer names the fields given but not used.

Nothing is written but the access-log row: no record, no master id, no event. The answer never holds
the probe's own values; a comparison is shown only when the field it compares is released to the
department for the purpose (that "the birth date agrees" tells the birth date).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from hub.errors import HubError
from mpi.probe import COMPARED_FIELDS, PROBE_KEY, probe_features, rank_masters, score_probe
from mpi.scoring import Frequencies
from warehouse import matching_state as ms
from warehouse import serving
from warehouse.probe import records_with_id_digits
from warehouse.sharing import CONDITIONAL, DepartmentSharing
from warehouse.stewardship import masters_of

DEFAULT_LIMIT = 5
MAX_LIMIT = 20
#: the fields of a master a probe may answer with (identity only: for programmes and sources, look the
#: master id up)
PERSON_FIELDS = ("name", "id_number", "id_number_status", "sex", "birth_date", "phone", "address", "status",
                 "status_date")
#: the fields a clerk may give, each compared with the published field of the same name
PROBE_FIELDS = ("name", "birth_date", "sex", "phone", "address", "id_number")
_FRAGMENT_DIGITS = (6, 16)  # a partial ID number: at least 6 and at most 16 digits
_DIGITS = re.compile(r"\d+")


class ProbeInputError(HubError):
    """A probe that cannot be searched: ``field`` names what to correct (the value is never echoed)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class ProbeQuery:
    """What a clerk knows of the person (as typed: the probe standardizes it)."""

    name: str | None
    birth_date: str | None
    sex: str | None = None
    phone: str | None = None
    address: str | None = None
    id_number: str | None = None


def given(query: ProbeQuery) -> tuple[str, ...]:
    """The probe fields the clerk filled in."""
    return tuple(f for f in PROBE_FIELDS if (getattr(query, f) or "").strip())


def standardized(query: ProbeQuery, use: Iterable[str] | None = None) -> pd.DataFrame:
    """The probe as a standardized record (one row) of the fields in ``use`` (None: all); every field given is
    checked first — :class:`ProbeInputError` when name or birth date is missing or not usable, or sex is given
    but not a sex."""
    from schemas.dates import USABLE as USABLE_DATES
    from schemas.resident import standardize_frame

    for field in ("name", "birth_date"):
        if not (getattr(query, field) or "").strip():
            raise ProbeInputError(field, "required: a probe needs the person's name and birth date")
    typed = {f: getattr(query, f) or None for f in PROBE_FIELDS}
    kept = {f: v if use is None or f in use else None for f, v in typed.items()}
    # row 0 as typed (checked), row 1 with the fields in use only (searched)
    std = standardize_frame(pd.DataFrame([{"source": "probe", "source_record_id": "0", **typed},
                                          {"source": "probe", "source_record_id": "1", **kept}]))
    row = std.iloc[0]
    if row["name_status"] != "valid":
        raise ProbeInputError("name", f"not a usable name ({row['name_status']}): give the person's name as on the"
                                      " household register")
    if row["birth_date_status"] not in USABLE_DATES:
        raise ProbeInputError("birth_date", f"not a usable date ({row['birth_date_status']}): write it as"
                                            " YYYY-MM-DD, e.g. 1990-03-07")
    if query.sex and row["sex_status"] != "valid":
        raise ProbeInputError("sex", f"not a sex code ({row['sex_status']}): 男/女, 1/2 or M/F; leave it out when"
                                     " not known")
    return std.iloc[[1]].reset_index(drop=True)


def id_fragment(query: ProbeQuery, feats: pd.DataFrame) -> str | None:
    """The digits of a partial ID number (6 to 16 digits in one run), when the number has no body of its own
    (``feats``: the probe's features)."""
    from schemas.id_number import normalize_text

    if not query.id_number or pd.notna(feats["id_body"].iloc[0]):
        return None
    text = str(normalize_text(pd.Series([query.id_number], dtype="object")).iloc[0] or "")
    runs = sorted(_DIGITS.findall(text), key=len, reverse=True)
    low, high = _FRAGMENT_DIGITS
    return runs[0] if runs and low <= len(runs[0]) <= high else None


def snapshot(conn: sa.Connection, feats: pd.DataFrame) -> Frequencies | None:
    """The term-frequency snapshot of the last matching run, for the values of ``feats``."""
    state = ms.read_model_state(conn)
    if state is None:
        return None
    return Frequencies(ms.read_frequencies(conn, only=feats), state[1])


@dataclass
class Candidate:
    master_id: str
    match_probability: float
    match_weight: float
    comparisons: list  # mpi.explain.ComparisonRow of the best-scoring record


def find_masters(conn: sa.Connection, query: ProbeQuery, *, use: Iterable[str] | None = None,
                 exclude: Iterable[str] = (), model_path: str | Path | None = None) -> list[Candidate]:
    """Every master with a candidate record, best first (by the match weight of its best record), from
    the matching state (the current release is checked when they are read). ``use``: the probe fields
    searched and scored (None: all; the others are not used for choosing candidates either). ``exclude``:
    record keys left out of the candidates (the benchmark's held-out records)."""
    from mpi.model import BLOCKING_RULES

    use = None if use is None else set(use)
    std = standardized(query, use)
    feats = probe_features(std)
    exclude = set(exclude)
    cands = ms.candidates(conn, feats, BLOCKING_RULES, exclude)
    fragment = id_fragment(query, feats) if use is None or "id_number" in use else None
    if fragment:
        year, surname = (None if pd.isna(v) else str(v) for v in (feats["birth_year"].iloc[0], feats["surname"].iloc[0]))
        extra = records_with_id_digits(conn, fragment, birth_year=year, surname=surname, exclude=exclude)
        cands = pd.concat([cands, extra[~extra["record_key"].isin(cands["record_key"])]], ignore_index=True)
    scored = score_probe(feats, cands, frequencies=snapshot(conn, pd.concat([feats, cands])), model_path=model_path)
    ranked = rank_masters(scored, masters_of(conn, [s.record_key for s in scored]))
    return [Candidate(m, best.match_probability, best.match_weight, best.explained.comparisons)
            for m, best, _ in ranked]


def released_fields(sharing: DepartmentSharing, purpose: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the person fields released to the department for ``purpose``, the 有条件 ones withheld)."""
    unlocked = set(sharing.unlocked(purpose))
    visible = [f for f in sharing.visible() if f in PERSON_FIELDS]
    return (tuple(f for f in visible if sharing.classes[f] != CONDITIONAL or f in unlocked),
            tuple(f for f in visible if sharing.classes[f] == CONDITIONAL and f not in unlocked))


def check_purpose(sharing: DepartmentSharing, purpose: str | None) -> None:
    """:class:`ProbeInputError` naming ``purpose`` unless it is an approved purpose of the department in force
    that releases the person's name (what was sent is never echoed)."""
    found = sharing.purpose(purpose)
    if found is None:
        raise ProbeInputError("purpose", f"a probe needs the code of an approved purpose of {sharing.department}"
                                         " (warehouse/purposes.yaml; GET /v1/purposes lists them); what was sent is not one")
    if not found.in_force():
        raise ProbeInputError("purpose", f"{found.code} expired on {found.expires}: the department renews it with"
                                         " the data office")
    if "name" not in released_fields(sharing, purpose)[0]:
        raise ProbeInputError("purpose", f"{found.code} does not release the person's name: a probe needs a purpose"
                                         " that does")


def _comparisons(rows: list, shown: set[str] | None) -> list[dict]:
    """The comparisons that agreed (a positive weight), of the fields in ``shown`` (all when None)."""
    return [{"comparison": r.comparison, "comparison_zh": r.comparison_zh, "level": r.level, "level_zh": r.level_zh,
             "weight": round(r.weight, 3)}
            for r in rows if r.weight > 0 and (shown is None or COMPARED_FIELDS.get(r.comparison) in shown)]


def probe(conn: sa.Connection, query: ProbeQuery, *, sharing: DepartmentSharing | None, purpose: str | None,
          limit: int = DEFAULT_LIMIT, model_path: str | Path | None = None, exclude: Iterable[str] = ()) -> dict:
    """The answer to a probe: the release, the candidate masters and what the department may see of them.

    ``sharing`` None: the hub's operator (``hub probe`` without a department) — master ids, probabilities
    and every agreeing comparison, no person fields. Otherwise ``purpose`` must be an approved purpose of the
    department in force (:func:`check_purpose`); the probe is searched and scored with the fields it releases
    only (``fields_not_used``: the others given), the persons are read as the department (its views) and cut
    to those fields, and comparisons of other fields are left out."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ProbeInputError("limit", f"between 1 and {MAX_LIMIT}")
    if sharing is not None:
        check_purpose(sharing, purpose)
    release = serving.current_release_no(conn)
    if release is None:
        raise HubError("no release is published yet: a probe searches the published index")
    fields, withheld = released_fields(sharing, purpose) if sharing is not None else ((), ())
    shown = None if sharing is None else set(fields)
    use = None if shown is None else {f for f in PROBE_FIELDS if f in shown}
    not_used = [f for f in given(query) if use is not None and f not in use]
    department = sharing.department if sharing is not None else None
    found, persons = [], {}
    for c in find_masters(conn, query, use=use, exclude=exclude, model_path=model_path):
        # read as the department (its view shows the current release only); a master matched since the
        # release was published is not in it yet
        rows = serving.persons_by_master_id(conn, c.master_id, fields, department=department)
        if rows:
            found.append(c)
            persons[c.master_id] = {f: rows[0][f] for f in fields}
        if len(found) >= limit:
            break
    hidden = sorted({r.comparison for c in found for r in c.comparisons}
                    - {k for k, f in COMPARED_FIELDS.items() if shown is None or f in shown})
    candidates = []
    for rank, c in enumerate(found, 1):
        item = {"rank": rank, "master_id": c.master_id, "match_probability": c.match_probability,
                "match_weight": round(c.match_weight, 3), "agreed": _comparisons(c.comparisons, shown)}
        if sharing is not None:
            item["person"] = persons[c.master_id]
        candidates.append(item)
    return {"release_no": release, "candidates": candidates, "withheld": list(withheld),
            "comparisons_withheld": hidden, "fields_not_used": not_used}


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "PROBE_FIELDS", "PROBE_KEY", "ProbeInputError", "ProbeQuery", "check_purpose",
           "find_masters", "given", "probe", "released_fields", "standardized"]

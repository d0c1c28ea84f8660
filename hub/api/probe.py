"""``POST /v1/persons/probe``: probe search (match without create) — does the index know this person?

The route standardizes and scores the probe with the matcher's own model (:mod:`hub.probe`, the same code
as ``hub probe``), reserves the persons of the answer of the day's quotas before reading them, and reads
them as the caller's department. The access log keeps the master ids answered, never the probe's values.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from hub.api.deps import ERRORS, CallerDep, Warehouse, declare_purpose, not_found, purpose_header
from hub.api.guard import reserve_persons
from hub.api.models import PURPOSE_MAX, Person
from hub.errors import HubError
from hub.probe import DEFAULT_LIMIT, MAX_LIMIT, ProbeInputError, ProbeQuery, check_purpose, probe

router = APIRouter()

_PURPOSE = ("required: the code of an approved purpose of the department in force (`GET /v1/purposes`), here or"
            " in `X-Purpose`; anything else is refused (422). It releases the 有条件 fields it lists: the probe is"
            " searched and scored with the fields released to the department for it only. The access log keeps"
            " only the code")


class ProbeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=60, description="the person's name (traditional characters, a"
                      " minority name's separator in any form and stray spaces are standardized)")
    birth_date: str = Field(min_length=1, max_length=40, description="birth date: 1990-03-07, 19900307, 1990/3/7,"
                            " 1990年03月07日")
    sex: str | None = Field(None, max_length=10, description="男/女, 1/2 or M/F; leave it out when not known")
    phone: str | None = Field(None, max_length=40)
    address: str | None = Field(None, max_length=200)
    id_number: str | None = Field(None, max_length=40, description="the ID number as the person gives it: it may be"
                                  " mistyped (one digit, two digits swapped) or partial (6 to 16 digits)")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="how many candidate masters at most")
    purpose: str | None = Field(None, max_length=PURPOSE_MAX, description=_PURPOSE)


class AgreedComparison(BaseModel):
    comparison: str = Field(description="id, name, dob, sex, phone or address")
    comparison_zh: str
    level: str = Field(description="how the two agree, e.g. 'one digit differs', 'same pinyin (homophone)'")
    level_zh: str
    weight: float = Field(description="the match weight the agreement adds (log2 odds)")


class ProbeCandidate(BaseModel):
    rank: int
    master_id: str
    match_probability: float = Field(description="the model's probability that the probe is this person (0-1)")
    match_weight: float
    agreed: list[AgreedComparison] = Field(description="the comparisons that agreed, of the fields released to"
                                           " the department for the purpose")
    person: Person = Field(description="the person's released fields (for programmes and sources, look the"
                           " master id up)")


class ProbeAnswer(BaseModel):
    release_no: int
    candidates: list[ProbeCandidate] = Field(description="best first; empty when no person of the index is close")
    withheld: list[str] = Field(description="有条件 fields left out (no purpose in force that releases them)")
    comparisons_withheld: list[str] = Field(description="comparisons left out of `agreed` because the field they"
                                            " compare is not released to the department for the purpose")
    fields_not_used: list[str] = Field(description="fields given in the probe but not released to the department"
                                       " for the purpose: left out before searching and scoring (names only)")


@router.post("/v1/persons/probe", tags=["persons"], response_model=ProbeAnswer, response_model_exclude_unset=True,
             responses=ERRORS, summary="Probe search: candidate persons for a name, sex and birth date (creates nothing)",
             description="Before registering a person, ask whether the index knows them: name and birth date"
                         " (required), sex, phone, address and an ID number that may be missing, partial or"
                         " mistyped. The probe is standardized and scored by the hub's matcher against the"
                         " published persons' records; the answer lists the best master ids with the match"
                         " probability and the comparisons that agreed. Nothing is created or changed. Needs an"
                         " approved purpose of the department in force (422 otherwise); only the fields it"
                         " releases are used (`fields_not_used` names the others given); each candidate counts"
                         " against the day's quotas.")
def probe_route(request: Request, body: ProbeRequest, c: CallerDep, engine: Warehouse,
                x_purpose: Annotated[str | None, purpose_header()] = None):
    purpose = declare_purpose(request, body.purpose, x_purpose)
    request.state.access.requested = 1
    if purpose is None:
        raise HTTPException(422, "purpose: a probe needs the code of an approved purpose of the department"
                                 " (`purpose` in the body or the X-Purpose header; GET /v1/purposes lists them)")
    if c.sharing is None or not c.may_use("master_id"):  # a department the sharing does not know sees nobody
        raise not_found()
    try:
        check_purpose(c.sharing, purpose)
    except ProbeInputError as bad:
        raise HTTPException(422, str(bad)) from None
    query = ProbeQuery(name=body.name, birth_date=body.birth_date, sex=body.sex, phone=body.phone,
                       address=body.address, id_number=body.id_number)
    reserve_persons(request, c, body.limit, "this probe")
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for the answer
            answer = probe(conn, query, sharing=c.sharing, purpose=purpose, limit=body.limit)
    except ProbeInputError as bad:
        raise HTTPException(422, str(bad)) from None
    except HubError:  # nothing published yet
        raise not_found() from None
    ids = [cand["master_id"] for cand in answer["candidates"]]
    request.state.access.results = len(ids)
    request.state.access.master_ids = ids
    return answer

"""The read API's request and answer models (pydantic): what the OpenAPI description shows."""

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MAX_BATCH = 1000
PURPOSE_MAX = 200
_PURPOSE = ("the code of an approved purpose of the department (`GET /v1/purposes`), e.g. `mz-dibao-review`:"
            " releases the 有条件 fields that purpose lists. Anything else (free text, an unknown, expired or"
            " other department's code) releases no 有条件 field. The access log keeps only the code")
_WITHHELD = ("有条件 fields left out: no purpose named, or the purpose named is not an approved one of the"
             " department in force, or it does not list them")


#: what a 422 says of a body field the route does not take (pydantic's "Extra inputs are not permitted")
UNEXPECTED_FIELD = {
    "/v1/persons/search": ("search is by ID number only: the body holds `id_number` and, optionally, `purpose`;"
                           " to compare a name with the person of an ID number, use the batch check"
                           " (POST /v1/persons/check) with `name` in the item"),
    "/v1/persons/check": ("a batch check holds `items` (each an `id_number` and, optionally, a `name`) and,"
                          " optionally, `purpose`; remove the other fields and send the request again"),
}
UNEXPECTED_FIELD_ELSEWHERE = ("this request does not take this field (the API description at /docs lists the"
                              " fields each request takes); remove it and send the request again")


class Person(BaseModel):
    """A published master person, cut to the fields the department may see (absent = not released)."""
    master_id: str | None = None
    name: str | None = None
    id_number: str | None = None
    id_number_status: str | None = None
    sex: int | None = Field(None, description="GB/T 2261.1: 0 unknown, 1 male, 2 female, 9 unspecified")
    birth_date: date | None = None
    phone: str | None = None
    address: str | None = None
    status: str | None = Field(None, description="vital status, e.g. alive / deceased")
    status_date: date | None = None
    record_count: int | None = Field(None, description="source records linked to this person (for a department that"
                                                       " sees only its own programmes: its own records)")
    sources: list[str] | None = Field(None, description="source systems holding a record of this person (for a"
                                                        " department that sees only its own programmes: its own)")
    conflicts: int | None = Field(None, description="fields on which the sources disagree (left out for a"
                                                    " department that sees only its own programmes)")
    enrolments: list["Enrolment"] = Field(
        default_factory=list,
        description="the person's enrolments the department may see (its own programmes', or all)")


class Enrolment(BaseModel):
    source: str
    source_record_id: str
    department: str
    program: str | None = None
    status_raw: str | None = None


class PersonAnswer(BaseModel):
    release_no: int
    requested_master_id: str = Field(description="the master id asked for")
    redirected_from: list[str] = Field(
        description="retired master ids followed to reach this person (empty when the id asked for is in force)")
    person: Person
    withheld: list[str] = Field(description=_WITHHELD)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_number: str = Field(min_length=1, max_length=40,
                           description="citizen ID number (18 characters, or 15 for a first-generation one)")
    purpose: str | None = Field(None, max_length=PURPOSE_MAX, description=_PURPOSE)


class SearchAnswer(BaseModel):
    release_no: int
    results: list[Person]
    withheld: list[str] = Field(description=_WITHHELD)


class CheckItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_number: str = Field(max_length=40)
    name: str | None = Field(None, max_length=100, description="compared with the golden name when given")


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[CheckItem] = Field(description="residents to check, in the department's order")
    purpose: str | None = Field(None, max_length=PURPOSE_MAX,
                                description=_PURPOSE + " (names are compared only when the purpose releases `name`)")


class CheckResult(BaseModel):
    index: int = Field(description="position of the item in the request")
    match: Literal["matched", "name_mismatch", "not_found", "invalid_id_number", "ambiguous"] = Field(
        description="matched: ID number found (and the name agrees, when compared); name_mismatch: ID number"
                    " found, the name differs; not_found: no published person with that ID number (or a look-up"
                    " the department may not make); invalid_id_number: not a usable citizen ID number;"
                    " ambiguous: more than one published person holds the number (see candidates)")
    master_id: str | None = None
    candidates: list[str] | None = None
    name_checked: bool = False
    person_status: str | None = Field(None, description="vital status, when released to the department")


class CheckAnswer(BaseModel):
    release_no: int | None
    results: list[CheckResult]
    counts: dict[str, int]
    name_checked: bool = Field(description="whether names were compared (name released to the department)")
    withheld: list[str] = Field(description=_WITHHELD)


class PurposeInfo(BaseModel):
    code: str = Field(description="what a request names in `X-Purpose` or `purpose`")
    title: str = Field(description="the purpose, in Chinese and English")
    legal_basis: str = Field(description="the law or regulation the purpose rests on")
    fields: list[str] = Field(description="the 有条件 fields the purpose releases")
    expires: date = Field(description="the last day the purpose is in force")
    in_force: bool = Field(description="false once expired: the purpose then releases nothing")


class PurposesAnswer(BaseModel):
    department: str
    conditional_fields: list[str] = Field(description="the department's 有条件 fields (released only for a purpose)")
    purposes: list[PurposeInfo]


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["match", "not_a_match"]
    reviewer: str = Field(min_length=1, max_length=100, description="who decides (kept with the decision)")
    comment: str | None = Field(None, max_length=2000)


class SplitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[str] = Field(min_length=1, max_length=500,
                               description="the records (`source/record id`) that become a master apart from the rest")
    reviewer: str = Field(min_length=1, max_length=100, description="who decides (kept with the decision)")
    reason: str = Field(min_length=1, max_length=2000, description="why (kept in the master's history)")


class RecordDecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    record: str = Field(min_length=3, max_length=200, description="the record (`source/record id`) of this master")
    reviewer: str = Field(min_length=1, max_length=100, description="who decides (kept with the decision)")
    reason: str = Field(min_length=1, max_length=2000, description="why (kept in the master's history)")


Person.model_rebuild()

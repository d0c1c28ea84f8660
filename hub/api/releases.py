"""Routes of the releases: which releases were published and what each was made of (its manifest).

Any department's key may read them: a manifest holds versions, checksums, batch ids, times and counts —
no personal data and no master id. Per-source record counts and landing batches are shown for the caller's
own department's sources only; the other departments' sources are named under ``other_sources``, without
counts (``hub release show`` shows the operator everything). Like every ``/v1`` request, each read is written to the access log
(by the guard, :mod:`hub.api.guard`); no person is counted against the key's quotas.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from hub.api.deps import ERRORS, CallerDep, Warehouse, not_found
from warehouse.releases import department_manifest, list_releases, manifest, release_row

router = APIRouter()


class ModelInfo(BaseModel):
    version: str | None = Field(None, description="the model's declared version (hub_model_version)")
    sha256: str | None = Field(None, description="SHA-256 of the model file")
    file: str | None = None


class CodeInfo(BaseModel):
    version: str | None = Field(None, description="the hub's package version")
    commit: str | None = Field(None, description="the git commit of the hub's code, when known")


class BatchInfo(BaseModel):
    batch_id: int
    mode: str | None = Field(None, description="full or incremental")
    status: str | None = None
    started_at: str | None = Field(None, description="when the batch began to be received (ISO 8601, UTC)")
    finished_at: str | None = Field(None, description="when it was committed (ISO 8601, UTC)")
    received: int | None = None
    landed: int | None = None
    quarantined: int | None = None
    records: int = Field(description="records of the release that are the versions this batch landed")


class SourceBatches(BaseModel):
    records: int = Field(description="the source's records in the release")
    last_batch: int | None = Field(None, description="the source's last successful batch when the release was made")
    batches: list[BatchInfo]


class ReleaseSummary(BaseModel):
    release_no: int
    published_at: dt.datetime
    master_count: int
    record_count: int
    is_current: bool
    withdrawn_at: dt.datetime | None = None


class ReleasesAnswer(BaseModel):
    current: int | None = Field(None, description="the release in force (null before the first publish)")
    releases: list[ReleaseSummary]


class ManifestAnswer(BaseModel):
    release_no: int
    published_at: dt.datetime
    is_current: bool
    withdrawn_at: dt.datetime | None = None
    withdrawn_reason: str | None = None
    content_hash: str = Field(description="digest of the golden records and enrolments the release holds")
    master_count: int
    record_count: int
    validation_run_id: int = Field(description="the gate run that let the release through")
    matching_run_id: int | None = Field(None, description="the matching run that built the index")
    model: ModelInfo | None = Field(None, description="the matching model (null: not recorded)")
    rules: dict[str, str | None] = Field(
        description="SHA-256 of each rules file: survivorship, gate_rules, sharing, purposes (null: not recorded)")
    code: CodeInfo | None = None
    airflow: dict[str, dict[str, str | None]] = Field(
        description="the Airflow run of each step (match, gate, publish) that ran under Airflow")
    source_batches: dict[str, SourceBatches] | None = Field(
        None, description="per source of the caller's department, the landing batches its records in the release"
                          " came from (null: not recorded)")
    other_sources: list[str] = Field(
        [], description="the other departments' sources of the release, named without counts or batches")
    redirect_count: int = Field(description="retired master ids the release redirects to their survivor")


@router.get("/v1/releases", tags=["releases"], response_model=ReleasesAnswer, responses=ERRORS,
            summary="The published releases, the current one marked",
            description="Every release with its time, figures and whether it is current or was withdrawn by a"
                        " rollback. No personal data.")
def releases(request: Request, c: CallerDep, engine: Warehouse):
    with engine.connect() as conn:
        rows = list_releases(conn)
    return {"current": next((r["release_no"] for r in rows if r["is_current"]), None),
            "releases": [{k: r[k] for k in ReleaseSummary.model_fields} for r in rows]}


@router.get("/v1/releases/{release_no}", tags=["releases"], response_model=ManifestAnswer, responses=ERRORS,
            summary="A release's manifest: model, rules, code and source batches",
            description="What the release was made of: the matching model's version and SHA-256, the SHA-256 of"
                        " the rules files (survivorship, gate rules, sharing, purposes), the code version, the"
                        " Airflow runs, and per source of the caller's department the landing batches its records"
                        " came from (received times in UTC, counts); the other departments' sources are named"
                        " under `other_sources` without counts. No personal data. An unknown release answers 404.")
def release_manifest(request: Request, c: CallerDep, engine: Warehouse,
                     release_no: Annotated[int, PathParam(ge=1, le=2_147_483_647, description="the release number")]):
    request.state.access.requested = 1
    with engine.connect() as conn:
        try:
            row = release_row(conn, release_no)
        except LookupError:
            raise not_found() from None
    return department_manifest(manifest(row), _source_departments(), c.key.department)


@functools.cache
def _source_departments() -> dict[str, str]:
    """source → the department that owns it (the source registry)."""
    from connectors.registry import source_departments

    return source_departments()

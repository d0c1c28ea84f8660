"""Workbench pages: the review queue (being built)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hub.workbench.pages import page
from hub.workbench.session import StewardDep

router = APIRouter(include_in_schema=False)


@router.get("/workbench/reviews")
def queue(request: Request, user: StewardDep):
    return page(request, "message.html.j2", title="待审核配对 Review queue", zh="待审核配对", en="Review queue")

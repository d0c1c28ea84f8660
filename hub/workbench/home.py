"""The workbench's first page: who is signed in, the release in force, the last gate, and what to do next."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hub.workbench.pages import page
from hub.workbench.session import UserDep
from warehouse.releases import current_release
from warehouse.status import last_gate

router = APIRouter(include_in_schema=False)


@router.get("/workbench/")
def home(request: Request, user: UserDep):
    with request.app.state.engine.connect() as conn:
        release, gate = current_release(conn), last_gate(conn)
    return page(request, "home.html.j2", title="工作台 Workbench", release=release, gate=gate)

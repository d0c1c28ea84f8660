"""The workbench: web pages for stewards, auditors and departments, served by ``hub serve`` at ``/workbench/``.

Server-rendered pages (Jinja2 templates in ``reports/templates/workbench/``), static files from
``reports/static/workbench/`` at ``/workbench/static/`` — nothing a page loads comes from outside the machine,
and every page answers with a Content-Security-Policy that lets the browser fetch from the hub only.

Signing in: a department's API key (``hub api-key create``) typed once into ``/workbench/login`` opens a
session (:mod:`warehouse.workbench_sessions`; the cookie holds a random token, the warehouse its hash). The
key's scopes decide the pages: ``steward`` the review queue and the master view with its decisions,
``auditor`` the findings inbox; every key the quality pages of its own department. A revoked or blocked
key ends its sessions at once.

Every request to a page, refused ones too, is written to ``audit.access_log`` (:mod:`hub.workbench.guard`;
the scripts, styles and fonts a Data Docs page loads are not page views and are not logged when served)
like the read API's: who, which page (master ids and numbers kept, anything else in the path masked),
the purpose code, the persons shown. A page that changes something writes its row in the transaction of the
change (:func:`hub.api.deps.log_in`).

Adding a page: a module with ``router = APIRouter()`` and routes under ``/workbench/…`` declared with
``include_in_schema=False``; take the user with :data:`hub.workbench.session.UserDep` (or ``StewardDep``,
``AuditorDep``), a form's token with :func:`hub.workbench.session.checked_form`, and answer with
:func:`hub.workbench.pages.page`; set ``request.state.access.results`` / ``.master_ids`` / ``.purpose`` for
what the page shows. List the module in :data:`PAGES`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from hub.workbench import findings, guard, home, masters, pages, quality, reviews, session

#: the page modules, in the order of the navigation
PAGES = (session, home, reviews, masters, findings, quality)


def mount(app: FastAPI) -> None:
    """Add the workbench to the read API's app: its guard, its static files, its pages and its error pages."""
    app.middleware("http")(guard.workbench_guard)
    app.mount("/workbench/static", StaticFiles(directory=pages.STATIC, check_dir=True), name="workbench-static")
    for module in PAGES:
        app.include_router(module.router)
    for exc_class, handler in pages.ERROR_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)


__all__ = ["PAGES", "mount"]

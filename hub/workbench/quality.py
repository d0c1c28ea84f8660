"""The quality pages of the workbench: scorecards, the validation history, and the Data Docs, signed in only.

* ``/workbench/quality/``: the scorecards the user may open — an auditor-scope key every one (the
  all-department scorecard and each department's), any other key its own department's only — and the validation
  history per suite and release (run time in China Standard Time, result, counts, the release, a link to that
  run's Data Docs validation page), filtered by suite and release. A department key sees its own sources'
  suites and the master index; an auditor every suite.
* ``/workbench/quality/docs/…``: the files of the gate's Data Docs site (``settings.gx_dir()/gx/uncommitted/
  data_docs/local_site``), where the scorecards are written too: GX's pages, made offline after each build
  (:mod:`expectations.offline_docs`), served with a Content-Security-Policy that lets their inline scripts run
  and fetch from the hub only. A path that leaves the site (``..``, a link pointing out) is refused alike
  (404); a scorecard file obeys the same rights as the list, and a suite's validation and expectation pages
  (``validations/<suite>/…``, ``expectations/<suite>.html``; GX writes ``source.<name>`` as ``source/<name>``) the
  same rights as the history: another department's answer 403. The index (which lists every suite's runs, counts
  and results only) and the site's static files are open to every signed-in key.

Which run of GX made which validation page: the pages sit under ``validations/<suite>/<run name>/<run time>/``;
a gate run's pages are those whose GX run time falls after the previous gate run was recorded and no later than
its own record (runs are serialized by the gate's lock; the database and the hub share a clock).
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from hub import settings
from hub.workbench.pages import HEADERS, PREFIX, Forbidden, page
from hub.workbench.session import User, UserDep
from warehouse.quality_history import history_releases, history_suites, validation_history

router = APIRouter(include_in_schema=False)

QUALITY = f"{PREFIX}/quality"
DOCS = f"{QUALITY}/docs"
SCORECARD = "scorecard.html"
DEPARTMENT_SCORECARD = re.compile(r"^scorecard_(?P<department>[A-Za-z0-9_-]{1,60})\.html$")
MASTER_INDEX_SUITE = "master_index"
SOURCE_SUITE_PREFIX = "source."
HISTORY_ROWS = 200

#: GX's pages run inline scripts (the index's table of runs is built by one): allowed, but still the hub only
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline';"
            " script-src 'self' 'unsafe-inline'; font-src 'self' data:; connect-src 'self'; frame-ancestors 'self';"
            " form-action 'none'; base-uri 'none'")
#: what the site holds that a browser may be given
_SERVED = {".html", ".css", ".js", ".png", ".gif", ".ico", ".svg", ".otf", ".ttf", ".woff", ".woff2", ".json"}
_GX_RUN_TIME = re.compile(r"^\d{8}T\d{6}(?:\.\d{1,6})?Z$")


def docs_site() -> Path:
    """The gate's Data Docs site, where the scorecards are written too."""
    return settings.gx_dir() / "gx" / "uncommitted" / "data_docs" / "local_site"


@dataclass(frozen=True)
class Scorecard:
    zh: str
    en: str
    href: str


# --------------------------------------------------------------------------- who may see what


def _source_departments() -> dict[str, str]:
    from connectors.registry import source_departments

    return source_departments()


def visible_suites(user: User, every: list[str]) -> list[str]:
    """The suites of the history ``user`` sees: every one for an auditor, else its sources' and the master index."""
    if user.is_auditor:
        return every
    mine = {f"{SOURCE_SUITE_PREFIX}{name}" for name, dept in _source_departments().items() if dept == user.department}
    return [s for s in every if s in mine or s == MASTER_INDEX_SUITE]


def may_open_scorecard(user: User, name: str) -> bool:
    """Whether ``user`` may open the scorecard file ``name`` (an auditor every one, a department its own)."""
    if user.is_auditor:
        return True
    found = DEPARTMENT_SCORECARD.match(name)
    return bool(found) and found.group("department") == user.department


def docs_suite(relative: tuple[str, ...]) -> str | None:
    """The suite a file of the site belongs to (its path's parts inside the site), or None for a file of no suite
    (the index, the static files, the scorecards): ``validations/source/mz_dibao/…`` and
    ``expectations/source/mz_dibao.html`` are ``source.mz_dibao``'s, ``…/master_index/…`` the master index's."""
    if len(relative) < 2 or relative[0] not in ("validations", "expectations"):
        return None
    first = relative[1].removesuffix(".html") if len(relative) == 2 else relative[1]
    if first == "source" and len(relative) >= 3:
        return SOURCE_SUITE_PREFIX + relative[2].removesuffix(".html")
    if first.startswith(SOURCE_SUITE_PREFIX):
        return first
    return MASTER_INDEX_SUITE if first.split(".")[0] == MASTER_INDEX_SUITE else first


def may_open_docs(user: User, relative: tuple[str, ...]) -> bool:
    """Whether ``user`` may open the site's file at ``relative``: a suite's pages as the history shows the suite."""
    suite = docs_suite(relative)
    return suite is None or bool(visible_suites(user, [suite]))


def _scorecards(user: User, site: Path) -> list[Scorecard]:
    from warehouse.sharing import department_titles

    titles = department_titles()
    cards = []
    if user.is_auditor and (site / SCORECARD).is_file():
        cards.append(Scorecard("全部门数据质量评分卡", "all-department scorecard", f"{DOCS}/{SCORECARD}"))
    for path in sorted(site.glob("scorecard_*.html")) if site.is_dir() else []:
        found = DEPARTMENT_SCORECARD.match(path.name)
        if found and may_open_scorecard(user, path.name):
            department = found.group("department")
            cards.append(Scorecard(f"{titles.get(department, department)} 部门评分卡",
                                   f"department scorecard: {department}", f"{DOCS}/{path.name}"))
    return cards


# --------------------------------------------------------------------------- the Data Docs page of a run


def _gx_time(text: str) -> dt.datetime | None:
    if not _GX_RUN_TIME.match(text):
        return None
    whole, _, fraction = text[:-1].partition(".")
    stamp = dt.datetime.strptime(whole, "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    return stamp + dt.timedelta(microseconds=int(fraction.ljust(6, "0")) if fraction else 0)


def validation_pages(site: Path, suite: str) -> list[tuple[dt.datetime, str, str]]:
    """(GX run time, label, path in the site) of every validation page of ``suite`` (``master_index`` has one per
    table suite: ``master_index.crosswalk`` and ``.golden``), oldest first."""
    folder = site / "validations" / Path(*suite.split("."))
    if not folder.is_dir() or ".." in suite.split("."):
        return []
    pages = []
    for path in folder.rglob("*.html"):
        parts = path.relative_to(folder).parts
        stamp = _gx_time(parts[-2]) if len(parts) >= 3 else None
        if stamp is not None:
            label = ".".join(parts[:-3]) or "Data Docs"
            pages.append((stamp, label, path.relative_to(site).as_posix()))
    return sorted(pages)


def _docs_links(site: Path, runs: list[dict]) -> dict[tuple[int, str], list[tuple[str, str]]]:
    """(run id, suite) → [(label, href)] of the validation pages the gate run made for the suite."""
    by_suite: dict[str, list[tuple[dt.datetime, str, str]]] = {}
    links: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for run in runs:
        pages = by_suite.setdefault(run["suite"], validation_pages(site, run["suite"]))
        after, until = run["previous_started_at"], run["started_at"]
        found = [(label, f"{DOCS}/{quote(path)}") for stamp, label, path in pages
                 if stamp <= until and (after is None or stamp > after)]
        # a run's suite has one page per table suite: the newest of each when a window holds more
        links[(run["run_id"], run["suite"])] = sorted(dict(found).items())
    return links


# --------------------------------------------------------------------------- the pages


@router.get(QUALITY)
def _bare():
    return RedirectResponse(QUALITY + "/", 308, headers=HEADERS)


def _overview(request: Request, user: User, suite: str | None, release: int | None) -> dict:
    site = docs_site()
    with request.app.state.engine.connect() as conn:
        every = history_suites(conn)
        suites = visible_suites(user, every)
        chosen = [suite] if suite in suites else suites
        runs = validation_history(conn, suites=chosen, release_no=release, limit=HISTORY_ROWS) if chosen else []
        releases = history_releases(conn)
    request.state.access.results = len(runs)
    return {"site_built": (site / "index.html").is_file(), "scorecards": _scorecards(user, site), "runs": runs,
            "links": _docs_links(site, runs), "suites": suites, "suite": suite if suite in suites else None,
            "releases": releases, "release": release, "limit": HISTORY_ROWS,
            "latest": _latest_per_suite(runs) if suite is None and release is None else []}


def _latest_per_suite(runs: list[dict]) -> list[dict]:
    latest: dict[str, dict] = {}
    for run in runs:  # newest first
        latest.setdefault(run["suite"], run)
    return sorted(latest.values(), key=lambda r: (r["suite"] != MASTER_INDEX_SUITE, r["suite"]))


@router.get(QUALITY + "/")
async def overview(request: Request, user: UserDep, suite: str | None = Query(None, max_length=120),
                   release: int | None = Query(None, ge=1, le=10**9)):
    context = await run_in_threadpool(_overview, request, user, suite, release)
    return page(request, "quality.html.j2", title="数据质量 Quality", **context)


@router.get(DOCS)
def _docs_bare():
    return RedirectResponse(DOCS + "/index.html", 308, headers=HEADERS)


@router.get(DOCS + "/{path:path}")
def docs(request: Request, path: str, user: UserDep):
    """A file of the Data Docs site; a path that leaves the site, or names no file, answers 404 alike."""
    site = docs_site()
    target = _inside(site, path or "index.html")
    if target is None:
        raise HTTPException(404)
    if target.parent == site.resolve() and (target.name == SCORECARD or DEPARTMENT_SCORECARD.match(target.name)):
        if not may_open_scorecard(user, target.name):
            raise Forbidden("auditor", "Another department's scorecard")
    if not may_open_docs(user, target.relative_to(site.resolve()).parts):
        raise Forbidden("auditor", "Another department's Data Docs page")
    headers = dict(HEADERS)
    if target.suffix.lower() == ".html":
        headers["Content-Security-Policy"] = DOCS_CSP
    else:  # the vendored scripts, styles and fonts: a page's twenty files need not be fetched on every page
        headers["Cache-Control"] = "private, max-age=3600"
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if media.startswith("text/") or media in ("application/javascript", "application/json"):
        media += "; charset=utf-8"
    return FileResponse(target, media_type=media, headers=headers)


def _inside(site: Path, path: str) -> Path | None:
    """The file ``path`` names inside ``site``, or None: no ``..``, no hidden part, no way out through a link."""
    parts = path.split("/")
    if "\\" in path or "\x00" in path or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    if Path(path).suffix.lower() not in _SERVED:
        return None
    root = site.resolve()
    try:
        target = (root / path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return target if target.is_relative_to(root) and target.is_file() else None

"""Driving the workbench in Debian's Chromium through Playwright's Python API, with the network cut off.

:func:`open_browser` launches the system's headless Chromium (never a downloaded one; skipped with the package
to install when there is none) in a context where every request is routed through a handler: a request for
127.0.0.1 goes on, any other is aborted and recorded in ``Browser.blocked``. A test asserts ``blocked == []``
after its pages: no page of the hub asked for anything outside the machine. :func:`serve` runs an app with
uvicorn on a free loopback port; :func:`artefact_path` is where screenshots go (``HUB_TEST_ARTEFACTS``, else
``.hub/test-artefacts/workbench`` of the checkout).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser import require_browser

LOOPBACK = {"127.0.0.1"}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def artefact_path(name: str) -> Path:
    """Where a test writes the screenshot ``name`` (the folder is made)."""
    folder = Path(os.environ.get("HUB_TEST_ARTEFACTS") or PROJECT_ROOT / ".hub" / "test-artefacts") / "workbench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@contextmanager
def serve(app) -> Iterator[str]:
    """uvicorn on a free loopback port in a thread (the read API tests' own server); yields the base URL."""
    from tests.test_api import _serve

    server, thread, url = _serve(app)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def served_as_api_role(engine, database_url: str, prefix: str, **app_options) -> Iterator[str]:
    """The hub's app on loopback as the read API's own database role (never a superuser), with the department
    roles and the API's role made under ``prefix`` first and dropped afterwards; yields the base URL."""
    from hub.api import create_app
    from hub.api_db import api_engine
    from warehouse.grants import apply_grants, drop_grants
    from warehouse.sharing import load_sharing

    with engine.begin() as conn:
        apply_grants(conn, load_sharing(), role_prefix=prefix)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("HUB_API_DATABASE_URL", raising=False)
        api = api_engine(database_url, role_prefix=prefix)
    try:
        with serve(create_app(api, **{"rate_limit": None, **app_options})) as base:
            yield base
    finally:
        api.dispose()
        with engine.begin() as conn:
            drop_grants(conn, role_prefix=prefix)


@dataclass
class Browser:
    """A browser context with the network cut off: ``blocked`` lists every request it refused."""
    context: object
    blocked: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def new_page(self):
        page = self.context.new_page()
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        return page


@contextmanager
def open_browser(*, width: int = 1400, height: int = 1000) -> Iterator[Browser]:
    """Headless Chromium of the system with every request outside 127.0.0.1 aborted and recorded."""
    executable = require_browser()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover — a dev dependency of the project
        pytest.skip("Playwright's Python package is missing: uv sync installs it (dev group)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN",
                                      timezone_id="Asia/Shanghai", service_workers="block")
        driven = Browser(context)

        def route(r):
            url = r.request.url
            driven.requested.append(url)
            scheme, host = urlsplit(url).scheme, urlsplit(url).hostname
            if scheme in ("data", "blob", "about") or host in LOOPBACK:
                r.continue_()
            else:
                driven.blocked.append(url)
                r.abort("blockedbyclient")

        context.route("**/*", route)
        try:
            yield driven
        finally:
            context.close()
            browser.close()


def sign_in(page, base: str, key: str, next_path: str = "/workbench/") -> None:
    """Sign in through the form, as a person would: type the key, press Enter."""
    page.goto(f"{base}/workbench/login?next={next_path}")
    page.fill("input[name=key]", key)
    page.press("input[name=key]", "Enter")
    page.wait_for_load_state()

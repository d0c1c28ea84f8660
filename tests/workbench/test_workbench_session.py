"""Signing in to the workbench with a department's key, as its own database role (hub_api, never a superuser):
the session cookie, the access-log row of every page (refused ones too), forms that must carry the session's
token, a revoked key that ends its sessions at once, and the sign-in page drawn with the network cut off."""

from __future__ import annotations

import secrets

import httpx
import pytest
import sqlalchemy as sa

from hub.api import create_app
from hub.api_keys import create_key, revoke_key
from tests.helpers import empty_warehouse
from tests.workbench.browser import artefact_path, open_browser, serve, served_as_api_role, sign_in

PREFIX = f"hub_w{secrets.token_hex(4)}_"


@pytest.fixture(scope="module")
def hub(engine, database_url):
    """An empty warehouse with the department roles and the API's role of this module; the app on loopback,
    connected as the API's role; keys of a department, a steward and an auditor."""
    empty_warehouse(engine)
    with engine.begin() as conn:
        keys = {"plain": create_key(conn, "health", "health office"),
                "steward": create_key(conn, "civil_affairs", "civil affairs data office", scopes=["steward"]),
                "auditor": create_key(conn, "social_security", "audit team", scopes=["auditor"])}
    try:
        with served_as_api_role(engine, database_url, PREFIX) as base:
            yield {"base": base, "keys": keys, "engine": engine}
    finally:
        empty_warehouse(engine)


def _log(engine, since: int = 0) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT endpoint, key_id, department, status FROM audit.access_log WHERE access_id > :a ORDER BY access_id"),
            {"a": since})]


def _last_id(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT coalesce(max(access_id), 0) FROM audit.access_log")).scalar_one()


def _client(hub) -> httpx.Client:
    return httpx.Client(base_url=hub["base"], timeout=10, follow_redirects=False)


def _signed_in(hub, which: str) -> httpx.Client:
    client = _client(hub)
    answer = client.post("/workbench/login", data={"key": hub["keys"][which], "next": "/workbench/"})
    assert answer.status_code == 303 and answer.headers["location"] == "/workbench/"
    return client


def test_a_page_without_a_session_sends_to_sign_in_and_is_logged(hub):
    since = _last_id(hub["engine"])
    with _client(hub) as client:
        answer = client.get("/workbench/findings?kind=x")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/workbench/login?next=/workbench/findings%3Fkind%3Dx"
        assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert _log(hub["engine"], since) == [("GET /workbench/findings", None, None, 303)]


def test_a_wrong_key_is_refused_alike_and_logged_without_the_key(hub):
    since = _last_id(hub["engine"])
    with _client(hub) as client:
        for key in ("ak_000000000000.nope", "anything", hub["keys"]["plain"] + "x"):
            answer = client.post("/workbench/login", data={"key": key, "next": "https://elsewhere.example/"})
            assert answer.status_code == 401 and "unknown or revoked key" in answer.text
            assert "hub_workbench" not in answer.headers.get("set-cookie", "")
    rows = _log(hub["engine"], since)
    assert rows == [("POST /workbench/login", None, None, 401)] * 3


def test_signing_in_opens_a_session_every_page_is_logged_and_forms_need_the_token(hub):
    since = _last_id(hub["engine"])
    client = _signed_in(hub, "plain")
    cookie = client.cookies.jar
    assert any(c.name == "hub_workbench" and c.path == "/workbench" for c in cookie)
    home = client.get("/workbench/")
    assert home.status_code == 200 and "卫健" in home.text and "北京时间" in home.text
    key_id = hub["keys"]["plain"].split(".")[0]
    # a form without the session's token is refused and changes nothing: still signed in
    assert client.post("/workbench/logout", data={}).status_code == 403
    assert client.get("/workbench/").status_code == 200
    # signing out with the token ends the session: the cookie no longer opens a page
    token = home.text.split('name="csrf" value="')[1].split('"')[0]
    assert client.post("/workbench/logout", data={"csrf": token}).status_code == 303
    client.cookies.set("hub_workbench", next(c.value for c in cookie if c.name == "hub_workbench") if list(cookie)
                       else "", path="/workbench")
    assert client.get("/workbench/").status_code == 303
    assert _log(hub["engine"], since) == [
        ("POST /workbench/login", key_id, "health", 303), ("GET /workbench/", key_id, "health", 200),
        ("POST /workbench/logout", key_id, "health", 403), ("GET /workbench/", key_id, "health", 200),
        ("POST /workbench/logout", key_id, "health", 303), ("GET /workbench/", None, None, 303)]


def test_a_revoked_key_ends_its_sessions_at_once(hub):
    with hub["engine"].begin() as conn:
        key = create_key(conn, "health", "a key about to be revoked")
    client = _client(hub)
    assert client.post("/workbench/login", data={"key": key}).status_code == 303
    assert client.get("/workbench/").status_code == 200
    with hub["engine"].begin() as conn:
        revoke_key(conn, key.split(".")[0])
    assert client.get("/workbench/").status_code == 303


def test_scopes_decide_the_pages(hub):
    plain, auditor = _signed_in(hub, "plain"), _signed_in(hub, "auditor")
    for client in (plain, auditor):  # no steward scope: no review queue
        answer = client.get("/workbench/reviews")
        assert answer.status_code == 403 and "steward" in answer.text
    steward = _signed_in(hub, "steward")
    assert "/workbench/reviews" in steward.get("/workbench/").text
    assert "/workbench/reviews" not in plain.get("/workbench/").text


def test_the_sign_in_page_draws_with_the_network_cut_off(hub):
    with open_browser() as browser:
        page = browser.new_page()
        sign_in(page, hub["base"], hub["keys"]["steward"])
        assert page.url.endswith("/workbench/")
        assert "民政" in page.inner_text("header")
        page.screenshot(path=str(artefact_path("home.png")), full_page=True)
        # the style sheet came from the hub: the header is dark, not the browser's default white
        colour = page.eval_on_selector("header.top", "e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(16, 42, 67)"
    assert browser.blocked == [] and browser.console_errors == []
    assert browser.requested and all(u.startswith(hub["base"]) for u in browser.requested)


def test_forms_from_another_site_nul_characters_and_bad_values_are_refused_with_a_page_and_logged(hub):
    client = _signed_in(hub, "plain")
    token = client.get("/workbench/").text.split('name="csrf" value="')[1].split('"')[0]
    since = _last_id(hub["engine"])
    other_site = client.post("/workbench/logout", data={"csrf": token}, headers={"Origin": "http://127.0.0.1:9999"})
    assert other_site.status_code == 403 and "其他网站" in other_site.text
    nul = client.post("/workbench/logout", data={"csrf": token, "comment": "a\x00b"})
    assert nul.status_code == 400 and "NUL" in nul.text
    stale = client.post("/workbench/logout", data={"csrf": "an old token"})
    assert stale.status_code == 403 and "表单已过期" in stale.text and "--session" not in stale.text
    bad_value = client.get("/workbench/quality/", params={"release": "abc"})
    assert bad_value.status_code == 422 and "release" in bad_value.text and "<html" in bad_value.text
    assert client.get("/workbench/").status_code == 200  # none of it ended the session
    key_id = hub["keys"]["plain"].split(".")[0]
    assert [r[3] for r in _log(hub["engine"], since)] == [403, 400, 403, 422, 200]
    assert {r[1] for r in _log(hub["engine"], since)} == {key_id}


def test_a_throttled_address_cannot_sign_in_even_with_the_right_key(engine, database_url):
    from hub.api import Quotas

    with engine.begin() as conn:
        key = create_key(conn, "health", "a key tried after many wrong ones")
    app = create_app(engine, rate_limit=None, quotas=Quotas(bad_keys_per_minute=3))
    # from an address of its own on loopback: the throttle counts per address and minute
    address = f"127.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}"
    transport = httpx.HTTPTransport(local_address=address)
    with serve(app) as base, httpx.Client(base_url=base, timeout=10, transport=transport) as client:
        since = _last_id(engine)
        answers = [client.post("/workbench/login", data={"key": f"ak_000000000000.wrong{i}"}).status_code
                   for i in range(5)]
        right = client.post("/workbench/login", data={"key": key})
    assert answers == [401, 401, 401, 429, 429]
    assert right.status_code == 429 and right.headers["retry-after"] and "hub_workbench" not in right.headers.get(
        "set-cookie", "")
    assert [r[3] for r in _log(engine, since)] == [401, 401, 401]  # throttled attempts: counted, not a row each


def test_looking_through_master_pages_one_by_one_blocks_the_key_like_the_api(engine, database_url):
    from hub.api import Quotas

    with engine.begin() as conn:
        key = create_key(conn, "civil_affairs", "a steward walking master ids", scopes=["steward"])
    app = create_app(engine, rate_limit=None, quotas=Quotas(sweep_ids=3, sweep_window=600))
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/workbench/login", data={"key": key}).status_code == 303
        statuses = [client.get(f"/workbench/masters/M00000000{i}").status_code for i in range(1, 6)]
        after = client.get("/workbench/")
    assert statuses[:3] == [404, 404, 404] and statuses[3] == 403  # the fourth distinct id blocks the key
    assert after.status_code == 303  # a blocked key has no session any more
    with engine.connect() as conn:
        blocked = conn.execute(sa.text("SELECT blocked_at IS NOT NULL FROM audit.api_key WHERE key_id = :k"),
                               {"k": key.split(".")[0]}).scalar_one()
    assert blocked


def test_a_form_of_unknown_length_is_not_read(hub):
    client = _signed_in(hub, "plain")
    token = client.get("/workbench/").text.split('name="csrf" value="')[1].split('"')[0]

    def chunks():  # sent without a Content-Length (chunked): refused before a byte is read
        yield f"csrf={token}&comment=".encode()
        yield b"x" * 1000

    answer = client.post("/workbench/logout", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 411 and "Content-Length" in answer.text
    assert client.get("/workbench/").status_code == 200  # still signed in: the form was not taken

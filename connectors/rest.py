"""REST extractor: token login, page-by-page fetching, retries, completeness check."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


class ExtractError(RuntimeError):
    """The source returned something that cannot be used; the message names source and page."""


@dataclass(frozen=True)
class Endpoint:
    """Where a platform is and how to log in. Secrets come from a connection, never from a file."""

    base_url: str
    login: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class Page:
    number: int
    records: list
    total: int


def make_session(retries: int = 5, backoff: float = 0.5) -> requests.Session:
    """A session that retries 429 and 5xx answers and honours Retry-After."""
    retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None,
                  respect_retry_after_header=True, raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _json_body(resp: requests.Response, source: str, what: str) -> dict:
    ctype = resp.headers.get("Content-Type", "")
    text = resp.text
    if "json" not in ctype or text.lstrip().startswith("<"):
        raise ExtractError(f"{source}: {what} returned an HTML/non-JSON page (status {resp.status_code}, "
                           f"Content-Type {ctype or 'none'})")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExtractError(f"{source}: {what} returned invalid or truncated JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(body, dict):
        raise ExtractError(f"{source}: {what} returned JSON that is not an object")
    return body


def login(session: requests.Session, endpoint: Endpoint, source: str, timeout: float = 30) -> str:
    resp = session.post(f"{endpoint.base_url}/api/v1/auth/token",
                        json={"username": endpoint.login, "password": endpoint.password}, timeout=timeout)
    if resp.status_code == 401:
        raise ExtractError(f"{source}: login refused (401): check the connection's login and password")
    resp.raise_for_status()
    token = _json_body(resp, source, "login").get("access_token")
    if not token:
        raise ExtractError(f"{source}: login answer has no access_token")
    return token


def fetch_pages(endpoint: Endpoint, resource: str, *, source: str, page_size: int = 100,
                session: requests.Session | None = None, timeout: float = 30,
                body_retries: int = 3) -> Iterator[Page]:
    """Yield every page of ``resource``; fail if the pages do not add up to the reported total."""
    session = session or make_session()
    headers = {"Authorization": f"Bearer {login(session, endpoint, source, timeout)}"}
    number, seen, total = 1, 0, None
    while True:
        what = f"{resource} page {number}"
        for attempt in range(body_retries):
            try:
                resp = session.get(f"{endpoint.base_url}{resource}", params={"page": number, "size": page_size},
                                   headers=headers, timeout=timeout)
                if resp.status_code >= 400:
                    raise ExtractError(f"{source}: {what} failed with HTTP {resp.status_code}")
                body = _json_body(resp, source, what)
                break
            except (ExtractError, requests.ConnectionError, requests.Timeout):
                if attempt == body_retries - 1:
                    raise
                time.sleep(0.5 * 2**attempt)
        records = body.get("data")
        if not isinstance(records, list) or not isinstance(body.get("total"), int):
            raise ExtractError(f"{source}: {what} has no 'data' list or no integer 'total'")
        total = body["total"] if total is None else total
        if not records:
            break
        seen += len(records)
        yield Page(number, records, total)
        if seen >= total:
            break
        number += 1
    if seen != total:
        raise ExtractError(f"{source}: incomplete extract: received {seen} records but the API reports {total}")

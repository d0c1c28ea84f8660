"""REST extractor: token login, page / offset / cursor paging, retries, completeness check.

What a platform looks like (login path, token field, paging style, envelope) comes from its
registry entry; this module has no per-platform code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from connectors.base import Chunk, ExtractError, ExtractState
from connectors.connections import ConnectionConfigError, ConnectionParts
from connectors.registry import RestSource


@dataclass(frozen=True)
class Endpoint:
    """Where a platform is and how to log in. Secrets come from a connection, never from a file."""

    base_url: str
    login: str | None = None
    password: str | None = None


def endpoint(connection: ConnectionParts) -> Endpoint:
    """The platform's base URL and login from a connection (``host``, ``port``, ``schema`` http/https)."""
    if not connection.host:
        raise ConnectionConfigError(f"connection {connection.conn_id!r} has no host")
    if connection.host.startswith(("http://", "https://")):
        base = connection.host.rstrip("/")
    else:
        scheme = connection.schema if connection.schema in ("http", "https") else "http"
        base = f"{scheme}://{connection.host}" + (f":{connection.port}" if connection.port else "")
    return Endpoint(base_url=base, login=connection.login, password=connection.password)


class RestExtractor:
    """A REST platform: login, pages, and the changes after the cursor when the source declares one."""

    reads_cursor = True
    marks_snapshots = False

    def extract(self, source: RestSource, connection: ConnectionParts, state: ExtractState) -> Iterator[Chunk]:
        return fetch(source, endpoint(connection), since=state.since, timeout=state.timeout)


def make_session(retries: int = 6, backoff: float = 0.3) -> requests.Session:
    """A session that retries 429, 5xx, connection errors and timeouts, honouring Retry-After."""
    retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff,
                  backoff_max=10, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None,
                  respect_retry_after_header=True, raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def dig(body: dict, path: str):
    """The value at a dotted path (``result.rows``), or None."""
    value = body
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


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


def login(session: requests.Session, source: RestSource, endpoint: Endpoint, timeout: float) -> dict[str, str]:
    """Log in and return the header that carries the token."""
    resp = session.post(endpoint.base_url + source.auth.path,
                        json={"username": endpoint.login, "password": endpoint.password}, timeout=timeout)
    if resp.status_code in (401, 403):
        raise ExtractError(f"{source.name}: login refused ({resp.status_code}): check the login and password of "
                           f"connection '{source.conn_id}'")
    if resp.status_code >= 400:
        raise ExtractError(f"{source.name}: login failed with HTTP {resp.status_code}")
    token = dig(_json_body(resp, source.name, "login"), source.auth.token_field)
    if not token:
        raise ExtractError(f"{source.name}: login answer has no token at '{source.auth.token_field}'")
    return {source.auth.header: source.auth.prefix + str(token)}


def fetch(source: RestSource, endpoint: Endpoint, *, since: str | None = None, session: requests.Session | None = None,
          timeout: float = 30, body_retries: int = 4) -> Iterator[Chunk]:
    """Yield every page of the source (changed after ``since`` when given).

    Fails when the pages do not add up to the total the API reports, or when a page repeats or
    skips records (fewer distinct records than reported): a rerun then starts over.
    """
    session = session or make_session()
    headers = login(session, source, endpoint, timeout)
    p, r = source.pagination, source.response
    extra = {source.incremental.param: since} if since and source.incremental and source.incremental.param else {}
    number, received, total, cursor = 1, 0, None, None
    keys: set[str] = set()
    while True:
        if p.style == "page":
            params = {p.page_param: number, p.size_param: p.page_size}
        elif p.style == "offset":
            params = {p.offset_param: received, p.size_param: p.page_size}
        else:
            params = {p.size_param: p.page_size, **({p.cursor_param: cursor} if cursor else {})}
        what = f"{source.resource} page {number}"
        body = _get_page(session, endpoint.base_url + source.resource, {**params, **extra}, headers, source.name,
                         what, timeout, body_retries)
        records, page_total = dig(body, r.records), dig(body, r.total)
        if not isinstance(records, list) or not isinstance(page_total, int):
            raise ExtractError(f"{source.name}: {what} has no list at '{r.records}' or no integer at '{r.total}'")
        total = page_total if total is None else total
        if page_total != total:
            raise ExtractError(f"{source.name}: the reported total changed during the extract ({total} -> {page_total});"
                               " the source changed under us, run again")
        if not records:
            break
        received += len(records)
        keys.update(str(x.get(source.primary_key)) for x in records if isinstance(x, dict))
        yield Chunk(what, records, total)
        if p.style == "cursor":
            cursor = dig(body, r.next_cursor)
            if not cursor:
                break
        elif received >= total:
            break
        number += 1
    if received != total or len(keys) != total:
        raise ExtractError(f"{source.name}: incomplete extract: {received} records ({len(keys)} distinct) received, "
                           f"but the API reports {total}; pages were skipped or repeated, run again")


def _get_page(session, url, params, headers, source, what, timeout, body_retries) -> dict:
    """One page; a broken body (HTML, truncated JSON) or a dropped connection is asked for again."""
    for attempt in range(body_retries):
        try:
            resp = session.get(url, params=params, headers=headers, timeout=timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if attempt == body_retries - 1:
                raise ExtractError(f"{source}: {what} could not be fetched: {type(exc).__name__}") from exc
        else:
            if resp.status_code >= 400:  # 429 and 5xx were already retried by the session
                raise ExtractError(f"{source}: {what} failed with HTTP {resp.status_code}")
            try:
                return _json_body(resp, source, what)
            except ExtractError:
                if attempt == body_retries - 1:
                    raise
        time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")

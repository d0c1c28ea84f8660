"""REST extractor: token login, page / offset / cursor paging, retries, completeness check.

What a platform looks like (login path, token field, paging style, envelope) comes from its
registry entry; this module has no per-platform code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from connectors.base import Chunk, ExtractError, ExtractState
from connectors.connections import ConnectionConfigError, ConnectionParts
from connectors.registry import RestSource

# the session's own retries are expected; the error after the last one says what went wrong
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


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
        return fetch(source, endpoint(connection), since=state.since, timeout=state.timeout,
                     retry_after_cap=state.retry_after_cap, deadline=state.deadline)


class _CappedRetry(Retry):
    """urllib3's retry, waiting at most ``cap`` seconds for a Retry-After and never past ``until`` (monotonic)."""

    cap: float = 60.0
    until: float | None = None

    def _remaining(self) -> float:
        return float("inf") if self.until is None else max(0.0, self.until - time.monotonic())

    def get_retry_after(self, response):
        wait = super().get_retry_after(response)
        return None if wait is None else min(wait, self.cap, self._remaining())

    def get_backoff_time(self) -> float:
        return min(super().get_backoff_time(), self._remaining())

    def new(self, **kw):
        retry = super().new(**kw)
        retry.cap, retry.until = self.cap, self.until
        return retry


def make_session(retries: int = 6, backoff: float = 0.3, *, retry_after_cap: float = 60.0,
                 until: float | None = None) -> requests.Session:
    """A session that retries 429, 5xx and timeouts, honouring Retry-After up to ``retry_after_cap`` seconds.

    A platform that refuses connections or whose name does not resolve is tried only twice more.
    """
    retry = _CappedRetry(total=retries, connect=2, read=retries, status=retries, backoff_factor=backoff,
                         backoff_max=10, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None,
                         respect_retry_after_header=True, raise_on_status=False)
    retry.cap, retry.until = retry_after_cap, until
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
        # decimals stay the text the platform sent: 3.41522E+17 as a float would become other digits
        body = json.loads(text, parse_float=str)
    except json.JSONDecodeError as exc:
        raise ExtractError(f"{source}: {what} returned invalid or truncated JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(body, dict):
        raise ExtractError(f"{source}: {what} returned JSON that is not an object")
    return body


def _unreachable(source: str, url: str, exc: requests.RequestException, timeout: float) -> ExtractError:
    """A one-line error for a platform that could not be reached at ``url``."""
    text = str(exc)
    if isinstance(exc, requests.Timeout) or "timed out" in text:
        why = f"no answer within {timeout:g} s"
    elif "Connection refused" in text:
        why = "connection refused (is the platform running, is the port right?)"
    elif "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text:
        why = "host name not found"
    else:
        why = type(exc).__name__
    return ExtractError(f"{source}: cannot reach {url}: {why}")


def login(session: requests.Session, source: RestSource, endpoint: Endpoint, timeout: float) -> dict[str, str]:
    """Log in and return the header that carries the token."""
    url = endpoint.base_url + source.auth.path
    try:
        resp = session.post(url, json={"username": endpoint.login, "password": endpoint.password}, timeout=timeout)
    except requests.RequestException as exc:
        raise _unreachable(source.name, url, exc, timeout) from None
    if resp.status_code in (401, 403):
        raise ExtractError(f"{source.name}: login refused ({resp.status_code}): check the login and password of "
                           f"connection '{source.conn_id}'")
    if resp.status_code >= 400:
        raise ExtractError(f"{source.name}: login failed with HTTP {resp.status_code}")
    token = dig(_json_body(resp, source.name, "login"), source.auth.token_field)
    if not token:
        raise ExtractError(f"{source.name}: login answer has no token at '{source.auth.token_field}'")
    return {source.auth.header: source.auth.prefix + str(token)}


class _Tally:
    """What an extract received, to check it against the total the API reports.

    Every record received is accounted for once, except a record repeated exactly on a later page:
    that is a page repeated (or another skipped) in transit. A record whose key came earlier with
    other content (two versions of one key), a record that is not an object and one without a key
    are accounted for: the landing step quarantines them, and the rest of the page lands.
    """

    def __init__(self, source: RestSource):
        self.source, self.received, self.accounted = source, 0, 0
        self.digests: dict[str, str] = {}

    def _digest(self, record: dict) -> str:
        kept = {k: v for k, v in record.items() if k not in self.source.volatile_fields}
        text = json.dumps(kept, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def page(self, records: list) -> None:
        on_page: set[str] = set()
        self.received += len(records)
        for record in records:
            key = record.get(self.source.primary_key) if isinstance(record, dict) else None
            if key is None or (isinstance(key, str) and not key.strip()):
                self.accounted += 1
                continue
            key, digest = str(key), self._digest(record)
            earlier = self.digests.get(key)
            if earlier is None:
                self.digests[key] = digest
                self.accounted += 1
            elif earlier != digest or key in on_page:  # not a record of an earlier page sent again
                self.accounted += 1
            on_page.add(key)

    def check(self, total: int | None) -> None:
        if total is not None and (self.received != total or self.accounted != total):
            raise ExtractError(
                f"{self.source.name}: incomplete extract: {self.received} records ({self.accounted} accounted for) "
                f"received, but the API reports {total}; pages were skipped or repeated, run again")


def fetch(source: RestSource, endpoint: Endpoint, *, since: str | None = None, session: requests.Session | None = None,
          timeout: float = 30, body_retries: int = 4, retry_after_cap: float = 60.0,
          deadline: float = 1800.0) -> Iterator[Chunk]:
    """Yield every page of the source (changed after ``since`` when given).

    Fails when the pages do not add up to the total the API reports, or when a page repeats or
    skips records: a rerun then starts over. A record that is a second, different version of a key
    is received like any other (the landing step quarantines it). A ``Retry-After`` is waited at most
    ``retry_after_cap`` seconds, and the whole extract fails past ``deadline`` seconds.
    """
    until = time.monotonic() + deadline
    session = session or make_session(retry_after_cap=retry_after_cap, until=until)
    headers = login(session, source, endpoint, timeout)
    p, r = source.pagination, source.response
    extra = {source.incremental.param: since} if since and source.incremental and source.incremental.param else {}
    number, total, cursor, tally = 1, None, None, _Tally(source)
    page = _Pager(session, endpoint.base_url + source.resource, headers, source.name, timeout, body_retries,
                  until, deadline)
    while True:
        if p.style == "page":
            params = {p.page_param: number, p.size_param: p.page_size}
        elif p.style == "offset":
            params = {p.offset_param: tally.received, p.size_param: p.page_size}
        else:
            params = {p.size_param: p.page_size, **({p.cursor_param: cursor} if cursor else {})}
        what = f"{source.resource} page {number}"
        body = page.get({**params, **extra}, what)
        records, page_total = dig(body, r.records), dig(body, r.total)
        if not isinstance(records, list) or not isinstance(page_total, int):
            raise ExtractError(f"{source.name}: {what} has no list at '{r.records}' or no integer at '{r.total}'")
        total = page_total if total is None else total
        if page_total != total:
            raise ExtractError(f"{source.name}: the reported total changed during the extract ({total} -> {page_total});"
                               " the source changed under us, run again")
        if not records:
            break
        tally.page(records)
        yield Chunk(what, records, total)
        if p.style == "cursor":
            cursor = dig(body, r.next_cursor)
            if not cursor:
                break
        elif tally.received >= total:
            break
        number += 1
    tally.check(total)


class _Pager:
    """Pages of one extract; a broken body (HTML, truncated JSON) or a dropped connection is asked for again."""

    def __init__(self, session, url, headers, source, timeout, body_retries, until, deadline):
        self.session, self.url, self.headers, self.source = session, url, headers, source
        self.timeout, self.body_retries, self.until, self.deadline = timeout, body_retries, until, deadline

    def _past_deadline(self, what: str) -> None:
        if time.monotonic() >= self.until:
            raise ExtractError(f"{self.source}: the extract did not finish within {self.deadline:g} s "
                               f"(stopped at {what}); run again later or raise HUB_EXTRACT_DEADLINE")

    def get(self, params: dict, what: str) -> dict:
        for attempt in range(self.body_retries):
            self._past_deadline(what)
            try:
                wait = min(self.timeout, max(0.1, self.until - time.monotonic()))  # never far past the deadline
                resp = self.session.get(self.url, params=params, headers=self.headers, timeout=wait)
            except requests.RequestException as exc:
                self._past_deadline(what)
                if attempt == self.body_retries - 1:
                    raise _unreachable(self.source, f"{self.url} ({what})", exc, self.timeout) from None
            else:
                self._past_deadline(what)
                if resp.status_code >= 400:  # 429 and 5xx were already retried by the session
                    asked = resp.headers.get("Retry-After")
                    raise ExtractError(f"{self.source}: {what} failed with HTTP {resp.status_code}"
                                       + (f" (the platform asks to wait {asked} s)" if asked else ""))
                try:
                    return _json_body(resp, self.source, what)
                except ExtractError:
                    if attempt == self.body_retries - 1:
                        raise
            time.sleep(min(0.2 * 2**attempt, max(0.0, self.until - time.monotonic())))
        raise AssertionError("unreachable")

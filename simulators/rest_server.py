"""Departmental REST platforms on loopback, each with its own login, envelope and paging.

- civil affairs (民政): ``POST /api/v1/auth/token`` → ``{"access_token"}``; ``?page=&size=`` →
  ``{"code": 0, "total", "page", "size", "data": [...]}``; ``Authorization: Bearer``.
- health (卫健): ``POST /ws/auth/login`` → ``{"success": true, "result": {"token"}}``;
  ``?offset=&limit=`` → ``{"success": true, "result": {"totalCount", "offset", "limit", "rows"}}``;
  ``X-Auth-Token`` header.
- social security (人社): ``POST /si/oauth/token`` → ``{"access_token"}``; ``?cursor=&limit=`` →
  ``{"status": "ok", "count", "items": [...], "next_cursor"}``; ``Authorization: Bearer``.

Every resource accepts ``updated_since`` (ISO time) for incremental extraction. Records come in a
stable order. A :class:`FaultPlan` makes a server misbehave the way real platforms do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from simulators.subsystems import SUBSYSTEMS, served

MAX_PAGE_SIZE = 1000

PLATFORMS = {
    "civil_affairs": {"login": "/api/v1/auth/token", "token_header": "Authorization", "token_prefix": "Bearer "},
    "health": {"login": "/ws/auth/login", "token_header": "X-Auth-Token", "token_prefix": ""},
    "social_security": {"login": "/si/oauth/token", "token_header": "Authorization", "token_prefix": "Bearer "},
}
HTML_ERROR = ("<!DOCTYPE html><html><head><title>系统维护</title></head><body><h1>系统正在维护，请稍后再试</h1>"
              "</body></html>")


@dataclass
class FaultPlan:
    """Per data request, the chance of each misbehaviour. Deterministic for a seed."""

    rate_limit: float = 0.0      # 429 with Retry-After
    server_error: float = 0.0    # 500
    slow: float = 0.0            # answers after ``slow_seconds``
    timeout: float = 0.0         # answers after ``timeout_seconds`` (beyond a client's patience)
    truncated: float = 0.0       # JSON cut off mid-way
    html: float = 0.0            # an HTML error page with status 200
    duplicate_page: float = 0.0  # the previous page's records again
    skip_page: float = 0.0       # the next page's records instead
    blank_ids: float = 0.0       # share of served records whose ID number field comes back empty (a broken
    #                              export job: deterministic per record, the same on every page and request)
    retry_after: int = 1
    slow_seconds: float = 0.3
    timeout_seconds: float = 3.0
    seed: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        kinds = ("rate_limit", "server_error", "slow", "timeout", "truncated", "html", "duplicate_page", "skip_page")
        with self._lock:
            for kind in kinds:
                if self._rng.random() < getattr(self, kind):
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                    return kind
        return None


@dataclass
class PlatformState:
    """What a platform serves; swap ``county`` to move the platform to another day."""

    platform: str
    county: object  # simulators.county.SimulatedCounty
    faults: FaultPlan | None = None
    cache: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class RunningServer:
    """A platform served on loopback; ``stop()`` shuts it down."""

    state: PlatformState
    url: str
    username: str
    password: str
    resources: dict[str, str]  # subsystem -> path
    _server: ThreadingHTTPServer
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _records(state: PlatformState, name: str, since: str | None) -> list[dict]:
    """The served records of ``name`` (changed after ``since``), computed once per day and filter."""
    county = state.county
    blank = (state.faults.blank_ids, state.faults.seed) if state.faults else None
    key = (id(county), name, since, blank)
    with state.lock:
        if key not in state.cache:
            roll = county.rolls[name]
            if "_deleted" not in SUBSYSTEMS[name].fields:  # no tombstones: deleted records just vanish
                roll = roll[~roll["_deleted"]]
            if since:
                roll = roll[roll["_updated"] > pd.Timestamp(since)]
            if len(state.cache) > 16:
                state.cache.clear()
            rows = served(SUBSYSTEMS[name], roll).to_dict(orient="records")
            if state.faults and state.faults.blank_ids:
                rows = _blank_ids(rows, SUBSYSTEMS[name], state.faults.blank_ids, state.faults.seed)
            state.cache[key] = rows
        return state.cache[key]


def _blank_ids(rows: list[dict], subsystem, share: float, seed: int) -> list[dict]:
    """Empty the ID number field of about ``share`` of the records, chosen by a hash of the record id."""
    id_field, key_field = subsystem.fields["id_number"], subsystem.fields["record_id"]
    out = []
    for row in rows:
        digest = hashlib.blake2b(f"{seed}:{row[key_field]}".encode(), digest_size=8).digest()
        if int.from_bytes(digest, "big") / 2**64 < share:
            row = {**row, id_field: ""}
        out.append(row)
    return out


def _window(platform: str, q: dict) -> tuple[int, int]:
    """Start and size of the page a request asks for, in the platform's own paging."""
    if platform == "civil_affairs":
        page, size = int(q.get("page", 1)), int(q.get("size", 100))
        if page < 1:
            raise ValueError("page must be >= 1")
        start = (page - 1) * size
    elif platform == "health":
        start, size = int(q.get("offset", 0)), int(q.get("limit", 100))
    else:
        size = int(q.get("limit", 100))
        cursor = q.get("cursor")
        start = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
    if not 1 <= size <= MAX_PAGE_SIZE or start < 0:
        raise ValueError(f"page size must be 1..{MAX_PAGE_SIZE}")
    return start, size


def _envelope(platform: str, rows: list[dict], start: int, size: int, q: dict) -> dict:
    """One page of rows in the platform's own envelope."""
    chunk = rows[start: start + size]
    if platform == "civil_affairs":
        return {"code": 0, "total": len(rows), "page": int(q.get("page", 1)), "size": size, "data": chunk}
    if platform == "health":
        return {"success": True, "result": {"totalCount": len(rows), "offset": start, "limit": size, "rows": chunk}}
    end = start + size
    nxt = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(rows) else None
    return {"status": "ok", "count": len(rows), "items": chunk, "next_cursor": nxt}


def _handler(state: PlatformState, username: str, password: str, paths: dict[str, str]):
    tokens: set[str] = set()
    conf = PLATFORMS[state.platform]
    by_path = {v: k for k, v in paths.items()}

    class Handler(BaseHTTPRequestHandler):
        server_version = "DeptPlatform/2.3"
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - keep request lines out of the console
            pass

        def _send_bytes(self, status: int, data: bytes, ctype: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self._send_bytes(status, data, "application/json; charset=utf-8", headers)

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if urlsplit(self.path).path != conf["login"]:
                return self._send(HTTPStatus.NOT_FOUND, {"code": 404, "msg": "not found"})
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                return self._send(HTTPStatus.BAD_REQUEST, {"code": 400, "msg": "bad json"})
            if body.get("username") != username or body.get("password") != password:
                return self._send(HTTPStatus.UNAUTHORIZED, {"code": 401, "msg": "用户名或密码错误"})
            token = secrets.token_hex(16)
            tokens.add(token)
            if state.platform == "health":
                return self._send(HTTPStatus.OK, {"success": True, "result": {"token": token}})
            return self._send(HTTPStatus.OK, {"access_token": token, "token_type": "bearer", "expires_in": 3600})

        def do_GET(self):  # noqa: N802
            parts = urlsplit(self.path)
            auth = self.headers.get(conf["token_header"], "")
            if not auth.startswith(conf["token_prefix"]) or auth[len(conf["token_prefix"]):] not in tokens:
                return self._send(HTTPStatus.UNAUTHORIZED, {"code": 401, "msg": "token invalid"})
            name = by_path.get(parts.path)
            if name is None:
                return self._send(HTTPStatus.NOT_FOUND, {"code": 404, "msg": "no such resource"})
            q = {k: v[0] for k, v in parse_qs(parts.query).items()}
            try:
                start, size = _window(state.platform, q)
                rows = _records(state, name, q.get("updated_since"))
            except ValueError as exc:
                return self._send(HTTPStatus.BAD_REQUEST, {"code": 400, "msg": str(exc)})
            fault = state.faults.draw() if state.faults else None
            if fault == "rate_limit":
                return self._send(HTTPStatus.TOO_MANY_REQUESTS, {"code": 429, "msg": "请求过于频繁"},
                                  {"Retry-After": str(state.faults.retry_after)})
            if fault == "server_error":
                return self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"code": 500, "msg": "内部错误"})
            if fault in ("slow", "timeout"):
                time.sleep(state.faults.slow_seconds if fault == "slow" else state.faults.timeout_seconds)
            if fault == "html":
                return self._send_bytes(HTTPStatus.OK, HTML_ERROR.encode("utf-8"), "text/html; charset=utf-8")
            if fault == "duplicate_page":
                start = max(0, start - size)
            elif fault == "skip_page":
                start = start + size
            body = _envelope(state.platform, rows, start, size, q)
            if fault == "truncated":
                data = json.dumps(body, ensure_ascii=False).encode("utf-8")
                return self._send_bytes(HTTPStatus.OK, data[: max(1, len(data) // 2)], "application/json; charset=utf-8")
            return self._send(HTTPStatus.OK, body)

    return Handler


def serve_platform(platform: str, county, *, host: str = "127.0.0.1", port: int = 0, username: str = "hub",
                   password: str | None = None, faults: FaultPlan | None = None) -> RunningServer:
    """Serve the REST subsystems of ``platform`` in a background thread; port 0 picks a free port."""
    password = password or secrets.token_urlsafe(12)
    paths = {s.name: s.resource for s in SUBSYSTEMS.values() if s.platform == platform and s.protocol == "rest"}
    state = PlatformState(platform, county, faults)
    server = ThreadingHTTPServer((host, port), _handler(state, username, password, paths))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"sim-{platform}", daemon=True)
    thread.start()
    return RunningServer(state, f"http://{host}:{server.server_address[1]}", username, password, paths, server, thread)

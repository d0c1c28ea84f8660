"""Serve a platform's rolls as a REST/JSON API on loopback, the way departmental platforms do.

- ``POST /api/v1/auth/token`` with ``{"username": …, "password": …}`` → ``{"access_token": …}``
- ``GET /api/v1/{resource}?page=1&size=100`` with ``Authorization: Bearer …`` →
  ``{"code": 0, "total": N, "page": p, "size": s, "data": [...]}``; records in a stable order.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from simulators.civil_affairs import Platform

MAX_PAGE_SIZE = 500


@dataclass
class RunningServer:
    """A platform served on loopback; ``stop()`` shuts it down."""

    platform: Platform
    url: str
    username: str
    password: str
    _server: ThreadingHTTPServer
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(platform: Platform, username: str, password: str):
    tokens: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        server_version = "DeptPlatform/2.3"

        def log_message(self, format, *args):  # noqa: A002 - keep request lines out of the console
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802
            if urlsplit(self.path).path != "/api/v1/auth/token":
                return self._send(HTTPStatus.NOT_FOUND, {"code": 404, "msg": "not found"})
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                return self._send(HTTPStatus.BAD_REQUEST, {"code": 400, "msg": "bad json"})
            if body.get("username") != username or body.get("password") != password:
                return self._send(HTTPStatus.UNAUTHORIZED, {"code": 401, "msg": "用户名或密码错误"})
            token = secrets.token_hex(16)
            tokens.add(token)
            return self._send(HTTPStatus.OK, {"access_token": token, "token_type": "bearer", "expires_in": 3600})

        def do_GET(self):  # noqa: N802
            parts = urlsplit(self.path)
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in tokens:
                return self._send(HTTPStatus.UNAUTHORIZED, {"code": 401, "msg": "token invalid"})
            prefix = "/api/v1/"
            resource = parts.path[len(prefix):] if parts.path.startswith(prefix) else ""
            if resource not in platform.resources:
                return self._send(HTTPStatus.NOT_FOUND, {"code": 404, "msg": "no such resource"})
            query = parse_qs(parts.query)
            try:
                page = int(query.get("page", ["1"])[0])
                size = int(query.get("size", ["100"])[0])
            except ValueError:
                return self._send(HTTPStatus.BAD_REQUEST, {"code": 400, "msg": "page and size must be integers"})
            if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
                return self._send(HTTPStatus.BAD_REQUEST, {"code": 400, "msg": f"page >= 1, 1 <= size <= {MAX_PAGE_SIZE}"})
            rows = platform.resources[resource]
            start = (page - 1) * size
            return self._send(HTTPStatus.OK, {"code": 0, "total": len(rows), "page": page, "size": size,
                                              "data": rows[start : start + size]})

    return Handler


def serve(platform: Platform, *, host: str = "127.0.0.1", port: int = 0,
          username: str = "hub", password: str | None = None) -> RunningServer:
    """Start serving ``platform`` in a background thread; port 0 picks a free port."""
    password = password or secrets.token_urlsafe(12)
    server = ThreadingHTTPServer((host, port), _handler(platform, username, password))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"sim-{platform.name}", daemon=True)
    thread.start()
    url = f"http://{host}:{server.server_address[1]}"
    return RunningServer(platform, url, username, password, server, thread)

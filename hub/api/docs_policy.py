"""The read API's documentation pages (``/docs``, ``/redoc``) answer with a Content-Security-Policy that keeps the
browser on the hub.

Swagger UI and ReDoc come from the files in fastapi-offline's wheel, not from a CDN; but ReDoc's bundle still
draws its attribution logo from ``cdn.redoc.ly``. With this policy the browser refuses that image (and anything
else outside the hub) before a request leaves the machine; ReDoc then leaves the logo out.
"""

from __future__ import annotations

from fastapi import Request

#: the pages fastapi-offline serves: Swagger UI, its OAuth2 redirect, ReDoc
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
#: both pages start their bundle with an inline script; ReDoc styles inline and runs its search in a blob: worker
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline';"
            " script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:;"
            " frame-ancestors 'self'; form-action 'self'; base-uri 'none'")


async def docs_policy(request: Request, call_next):
    """Middleware: the documentation pages' answers carry :data:`DOCS_CSP`."""
    response = await call_next(request)
    if request.url.path in DOCS_PATHS and "content-security-policy" not in response.headers:
        response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


__all__ = ["DOCS_CSP", "DOCS_PATHS", "docs_policy"]

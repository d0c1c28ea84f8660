"""Data Docs that render with no network: the CDN assets GX links are vendored and the links rewritten.

Great Expectations 1.24 builds Data Docs whose pages load jQuery, Bootstrap, bootstrap-table, Font
Awesome, Vega and more from public CDNs, and its logo from a public bucket. On a county intranet the
index's table of runs (drawn by bootstrap-table) stays empty and the validation pages lose their status
icons. :func:`make_site_offline` fixes a built site in place:

* the files of ``expectations/vendor/`` (the exact versions the pages name, from the npm registry, each
  package's licence beside it, listed in ``vendor/MANIFEST.json``) are copied to ``static/vendor/``
  of the site;
* in every ``.html`` of the site each CDN address of the manifest becomes a path relative to the page
  (pages sit at different depths), and the ``integrity``/``crossorigin`` attributes of those tags go
  (a page opened from disk has no origin to check them against);
* GX's logo from its bucket becomes the site's own ``static/images/`` copy; any other element that
  would fetch from outside the machine (``script``, ``link``, ``img``, ``iframe``, ``form``, ``object``,
  …) is removed, an external CSS ``url()`` becomes ``none`` and an ``@import`` of one goes;
* links to outside pages (GX's site, its newsletter) lose their address and stay as text;
* the site's own ``.css`` files get the same CSS treatment.

The gate runs it after every Data Docs build (:func:`expectations.gate.run_gate_suites`); it is idempotent,
so it can be re-run on an existing site at any time (:func:`make_docs_offline` for a ``gx_dir``).
:func:`external_references` lists what would still reach outside, for tests and checks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MANIFEST",
    "SITE_VENDOR",
    "VENDOR_DIR",
    "OfflineReport",
    "address_key",
    "external_references",
    "make_docs_offline",
    "make_site_offline",
    "site_dir",
    "vendored_assets",
]

VENDOR_DIR = Path(__file__).with_name("vendor")
MANIFEST = VENDOR_DIR / "MANIFEST.json"
#: Where the vendored files go inside a site (relative to the site's root).
SITE_VENDOR = "static/vendor"
#: GX's public bucket for its logos: a file of that name in the site's ``static/images/`` replaces it.
_GX_ASSETS = re.compile(r"^https?://great-expectations-web-assets\.[^/]+/([^?#]+)", re.IGNORECASE)

_EXTERNAL = r"(?:https?:)?//"
# tags that fetch what their address attributes name; the paired ones lose their content with them
_FETCHING = ("script", "link", "img", "iframe", "frame", "embed", "object", "source", "track", "video", "audio",
             "input", "image", "use", "form", "base", "meta")
_PAIRED = frozenset({"script", "iframe", "object", "video", "audio", "form"})
_LINKING = ("a", "area")
_ADDRESS_ATTRS = ("src", "href", "xlink:href", "action", "formaction", "data", "poster", "srcset", "background")
_TAG = re.compile(r"<(?P<name>" + "|".join(_FETCHING + _LINKING) + r")\b(?P<attrs>(?:[^>\"']|\"[^\"]*\"|'[^']*')*)>",
                  re.IGNORECASE)
_ATTR = re.compile(r"""(?P<lead>\s+)(?P<name>[^\s=/>"']+)(?:\s*=\s*(?P<value>"[^"]*"|'[^']*'|[^\s>"']+))?""")
_CSS_URL = re.compile(r"""url\(\s*(?P<q>["']?)(?P<url>""" + _EXTERNAL + r"""[^"')]*)(?P=q)\s*\)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\()?\s*["']?""" + _EXTERNAL + r"""[^;]*;""", re.IGNORECASE)
_STARTS_EXTERNAL = re.compile(r"^\s*" + _EXTERNAL, re.IGNORECASE)
_SITE_STATIC = re.compile(r"^(?:\.\./)*(static/[^\s\"'<>]*)$")
_META_REFRESH = re.compile(r"\bhttp-equiv\s*=\s*[\"']?refresh", re.IGNORECASE)


@dataclass(frozen=True)
class OfflineReport:
    """What :func:`make_site_offline` did: pages and stylesheets rewritten, vendored files copied."""

    site: Path
    pages_rewritten: int
    stylesheets_rewritten: int
    files_copied: int


@functools.cache
def address_key(url: str) -> str:
    """How ``vendor/MANIFEST.json`` names a CDN address a vendored file stands in for: its SHA-256."""
    return hashlib.sha256(url.strip().encode("utf-8")).hexdigest()


@functools.cache
def vendored_assets() -> dict[str, str]:
    """:func:`address_key` of a CDN address → vendored file (relative to ``vendor/``), from
    ``vendor/MANIFEST.json`` (``stands_for_sha256``: the manifest holds no link to a CDN)."""
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return {key: entry["path"] for package in manifest["packages"] for entry in package["files"]
            for key in entry["stands_for_sha256"]}


def site_dir(gx_dir: Path, site_name: str = "local_site") -> Path:
    """The Data Docs site of a gate's ``gx_dir`` (the gate's file context layout)."""
    return Path(gx_dir) / "gx" / "uncommitted" / "data_docs" / site_name


def make_docs_offline(gx_dir: Path, site_name: str = "local_site") -> OfflineReport:
    """:func:`make_site_offline` for the Data Docs site under a gate's ``gx_dir``."""
    return make_site_offline(site_dir(gx_dir, site_name))


def make_site_offline(site: Path) -> OfflineReport:
    """Copy the vendored assets into ``site`` and rewrite its pages and stylesheets to need no network.

    Idempotent: a page already rewritten is left as it is. A site that does not exist raises
    ``FileNotFoundError``.
    """
    site = Path(site)
    if not site.is_dir():
        raise FileNotFoundError(f"no Data Docs site at {site}")
    copied = _copy_vendor(site / SITE_VENDOR)
    vendor_root = (site / SITE_VENDOR).resolve()
    pages = styles = 0
    for path in sorted(site.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in (".html", ".htm", ".css"):
            continue
        if path.resolve().is_relative_to(vendor_root):
            continue  # the vendored files stay as their authors published them
        prefix = "../" * (len(path.relative_to(site).parts) - 1)
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        if path.suffix.lower() == ".css":
            new = _rewrite_css(text, prefix, site)
        else:
            new = _rewrite_html(text, prefix, site)
        if new != text:
            path.write_text(new, encoding="utf-8", errors="surrogateescape")
            if path.suffix.lower() == ".css":
                styles += 1
            else:
                pages += 1
    return OfflineReport(site=site, pages_rewritten=pages, stylesheets_rewritten=styles, files_copied=copied)


def external_references(site: Path) -> list[tuple[Path, str]]:
    """(file, address) for every reference in the site's pages and stylesheets that would fetch from outside:
    an address attribute of a fetching tag, a CSS ``url()`` or ``@import`` — links (``<a href>``) included,
    since on the intranet they lead nowhere. The vendored files themselves are not searched."""
    site = Path(site)
    vendor_root = (site / SITE_VENDOR).resolve()
    found: list[tuple[Path, str]] = []
    for path in sorted(site.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in (".html", ".htm", ".css"):
            continue
        if path.resolve().is_relative_to(vendor_root):
            continue
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        found += [(path, m.group("url")) for m in _CSS_URL.finditer(text)]
        found += [(path, m.group(0)) for m in _CSS_IMPORT.finditer(text)]
        if path.suffix.lower() == ".css":
            continue
        for tag in _TAG.finditer(text):
            if tag.group("name").lower() == "meta" and not _META_REFRESH.search(tag.group("attrs")):
                continue
            for attr in _ATTR.finditer(tag.group("attrs")):
                value = _unquote(attr.group("value"))
                meta = tag.group("name").lower() == "meta"
                if value and _is_address(attr.group("name"), meta) and _is_external(attr.group("name"), value, meta=meta):
                    found.append((path, value))
    return found


# --------------------------------------------------------------------------- the rewrite


def _copy_vendor(target: Path) -> int:
    """Copy ``vendor/`` to ``target``, skipping files already there with the same size; the count copied."""
    copied = 0
    for source in sorted(VENDOR_DIR.rglob("*")):
        if not source.is_file():
            continue
        dest = target / source.relative_to(VENDOR_DIR)
        if dest.is_file() and dest.stat().st_size == source.stat().st_size:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)  # a page being read meanwhile sees the old file or the new one, never half
        copied += 1
    return copied


def _local_for(url: str, prefix: str, site: Path) -> str | None:
    """The relative path that replaces ``url`` on a page ``prefix`` deep, or None when nothing local does."""
    vendored = vendored_assets().get(address_key(url))
    if vendored is not None:
        return f"{prefix}{SITE_VENDOR}/{vendored}"
    logo = _GX_ASSETS.match(url.strip())
    if logo and "/" not in logo.group(1) and (site / "static" / "images" / logo.group(1)).is_file():
        return f"{prefix}static/images/{logo.group(1)}"
    return None


def _rewrite_css(text: str, prefix: str, site: Path) -> str:
    text = _CSS_IMPORT.sub("", text)

    def url(m: re.Match) -> str:
        local = _local_for(m.group("url"), prefix, site)
        return f"url('{local}')" if local else "none"

    return _CSS_URL.sub(url, text)


def _rewrite_html(text: str, prefix: str, site: Path) -> str:
    text = _rewrite_css(text, prefix, site)  # inline <style> blocks and style="" attributes
    out: list[str] = []
    pos = 0
    for tag in _TAG.finditer(text):
        if tag.start() < pos:
            continue  # inside an element already removed
        out.append(text[pos:tag.start()])
        pos = tag.end()
        name = tag.group("name").lower()
        attrs, remove = _rewrite_attrs(name, tag.group("attrs"), prefix, site)
        if not remove:
            out.append(tag.group(0) if attrs == tag.group("attrs") else f"<{tag.group('name')}{attrs}>")
        elif name in _PAIRED and not tag.group("attrs").rstrip().endswith("/"):
            close = re.compile(rf"</{name}\s*>", re.IGNORECASE).search(text, pos)
            pos = close.end() if close else pos
    out.append(text[pos:])
    return "".join(out)


def _rewrite_attrs(name: str, attrs: str, prefix: str, site: Path) -> tuple[str, bool]:
    """The tag's attributes with external addresses rewritten (the rest untouched), and whether the whole
    element must go."""
    state = {"mapped": False, "remove": False}
    meta = name == "meta"
    if meta and not _META_REFRESH.search(attrs):
        return attrs, False  # only a refresh meta navigates; other metas' content is text

    def one(attr: re.Match) -> str:
        key, value = attr.group("name"), _unquote(attr.group("value"))
        site_static = _SITE_STATIC.match(value) if key.lower() in ("src", "href") and name not in _LINKING else None
        if site_static and value != f"{prefix}{site_static.group(1)}":
            # GX names the site's static/ one level too shallow on validation pages (its favicon): repair
            return f'{attr.group("lead")}{key}="{prefix}{site_static.group(1)}"'
        if not value or not _is_address(key, meta) or not _is_external(key, value, meta=meta):
            return attr.group(0)
        if name in _LINKING:
            return ""  # a link out stays as its text
        local = _local_for(value, prefix, site)
        if local is None:
            state["remove"] = True
            return attr.group(0)
        state["mapped"] = True
        return f'{attr.group("lead")}{key}="{local}"'

    attrs = _ATTR.sub(one, attrs)
    if state["mapped"]:  # the CDN's subresource-integrity pair cannot be checked on a page opened from disk
        attrs = _ATTR.sub(lambda a: "" if a.group("name").lower() in ("integrity", "crossorigin") else a.group(0), attrs)
    return attrs, state["remove"]


def _is_address(attr: str, meta: bool) -> bool:
    return attr.lower() == "content" if meta else attr.lower() in _ADDRESS_ATTRS


def _unquote(value: str | None) -> str:
    if not value:
        return ""
    return value[1:-1] if value[0] in "\"'" and value[-1:] == value[0] else value


def _is_external(attr: str, value: str, *, meta: bool = False) -> bool:
    if attr.lower() == "srcset":
        return any(_STARTS_EXTERNAL.match(part) for part in value.split(","))
    if meta:  # <meta http-equiv="refresh" content="0; url=https://…">
        return bool(re.search(r"url\s*=\s*" + _EXTERNAL, value, re.IGNORECASE))
    return bool(_STARTS_EXTERNAL.match(value))

"""Data Docs with no network: a real gate build leaves no page or stylesheet that fetches from outside the
machine, the vendored files are in the site as the manifest lists them, and every CDN address GX's templates
name has a vendored file.

The gate runs twice on stand-ins of the master-index tables (tests/expectations/test_gate.py's, in a
throwaway database): a passing and a failing run, so the site holds the index, suite pages and validation
pages at two depths. The browser side (the index lists the runs, the icons render) is in
tests/workbench/test_quality_pages.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from expectations import offline_docs
from expectations.offline_docs import (
    MANIFEST,
    SITE_VENDOR,
    VENDOR_DIR,
    external_references,
    make_docs_offline,
    make_site_offline,
    site_dir,
)
from tests.expectations.test_gate import DDL, load_bad, load_good

# what a browser would fetch: an address attribute or a CSS url()/@import naming another host
FETCH_OUT = re.compile(r"""(?:\b(?:src|href|action|srcset|poster|data)\s*=\s*["']?\s*|url\(\s*["']?|@import\s+["']?)"""
                       r"""(?:https?:)?//""", re.IGNORECASE)
LOCAL_REF = re.compile(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)="(?!#|data:|javascript:)([^"]+)\"""", re.IGNORECASE)


@pytest.fixture(scope="module")
def gate_site(server_admin_url, tmp_path_factory) -> Path:
    """The Data Docs site of two real gate runs (one passing, one failing) on a throwaway database."""
    from expectations.gate import validate_master_index

    name = f"hub_gx_offline_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for stmt in DDL:
                conn.execute(sa.text(stmt))
        engine.dispose()
        gx_dir = tmp_path_factory.mktemp("gx_offline")
        load_good(url)
        assert validate_master_index(url, gx_dir).success
        load_bad(url)
        assert not validate_master_index(url, gx_dir).success
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return site_dir(gx_dir)


def _pages(site: Path) -> list[Path]:
    vendor = site / SITE_VENDOR
    return [p for p in sorted(site.rglob("*")) if p.suffix in (".html", ".css") and vendor not in p.parents]


def test_a_gate_build_leaves_nothing_that_fetches_from_outside(gate_site):
    pages = _pages(gate_site)
    html = [p for p in pages if p.suffix == ".html"]
    validation_pages = [p for p in html if "validations" in p.parts]
    assert (gate_site / "index.html") in html and len(validation_pages) == 4, [str(p) for p in html]
    assert external_references(gate_site) == []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not FETCH_OUT.search(text), f"{page.relative_to(gate_site)}: {FETCH_OUT.search(text).group(0)!r}"
        assert "integrity=" not in text and "great-expectations-web-assets" not in text
    # every script, stylesheet and image a page names is a file of the site, at the page's own depth
    for page in html:
        refs = LOCAL_REF.findall(page.read_text(encoding="utf-8"))
        assert len(refs) >= 12, f"{page.name}: {refs}"
        missing = [r for r in refs if not (page.parent / r.split("?")[0]).resolve().is_file()]
        assert not missing, f"{page.relative_to(gate_site)} names files the site lacks: {missing}"
    index = (gate_site / "index.html").read_text(encoding="utf-8")
    assert 'src="static/vendor/jquery-3.7.1/jquery.min.js"' in index
    assert 'href="static/vendor/fontawesome-free-6.6.0/css/all.min.css"' in index
    deep = validation_pages[0].read_text(encoding="utf-8")
    assert 'src="../../../../../static/vendor/bootstrap-table-1.19.1/bootstrap-table.min.js"' in deep
    assert 'src="../../../../../static/images/logo-long.png"' in deep  # GX's logo from the site, not its bucket


def test_the_vendored_files_are_in_the_site_as_the_manifest_lists_them(gate_site):
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    for package in manifest["packages"]:
        assert (gate_site / SITE_VENDOR / package["licence_file"]).is_file(), package["package"]
        for entry in package["files"]:
            copied = gate_site / SITE_VENDOR / entry["path"]
            assert hashlib.sha256(copied.read_bytes()).hexdigest() == entry["sha256"], entry["path"]
    # the Font Awesome faces its stylesheet names are there beside it
    css = (gate_site / SITE_VENDOR / "fontawesome-free-6.6.0/css/all.min.css").read_text(encoding="utf-8")
    faces = set(re.findall(r"url\((\.\./webfonts/[^)]+)\)", css))
    assert len(faces) == 8
    assert all((gate_site / SITE_VENDOR / "fontawesome-free-6.6.0/css" / f).resolve().is_file() for f in faces)


def test_re_running_on_a_site_changes_nothing(gate_site):
    before = {p: p.read_bytes() for p in _pages(gate_site)}
    report = make_docs_offline(gate_site.parents[3])
    assert (report.pages_rewritten, report.stylesheets_rewritten, report.files_copied) == (0, 0, 0)
    assert {p: p.read_bytes() for p in _pages(gate_site)} == before
    with pytest.raises(FileNotFoundError):
        make_site_offline(gate_site / "no-such-site")


def test_the_manifest_covers_every_cdn_address_of_gx_templates():
    """A GX upgrade that links one more CDN file fails here, not on an intranet."""
    import great_expectations

    templates = Path(great_expectations.__file__).parent / "render" / "view" / "templates"
    named = set()
    for template in templates.glob("*.j2"):
        named |= set(re.findall(r"""<(?:script|link)\b[^>]*?(?:src|href)="(https?://[^"]+)\"""", template.read_text()))
    assert len(named) >= 15
    missing = sorted(url for url in named if offline_docs.address_key(url) not in offline_docs.vendored_assets())
    assert missing == [], missing
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    listed = {e["path"] for p in manifest["packages"] for e in p["files"]} | {p["licence_file"] for p in manifest["packages"]}
    on_disk = {str(p.relative_to(VENDOR_DIR)) for p in VENDOR_DIR.rglob("*") if p.is_file()} - {"MANIFEST.json"}
    assert on_disk == listed
    assert all(p["licence"] and p["version"] and p["source"].startswith("npm pack ") for p in manifest["packages"])


def test_unknown_external_elements_go_and_links_out_become_text(tmp_path):
    site = tmp_path / "site"
    page = site / "validations" / "x" / "page.html"
    page.parent.mkdir(parents=True)
    (site / "static" / "images").mkdir(parents=True)
    (site / "static" / "images" / "logo-long.png").write_bytes(b"png")
    page.write_text(
        '<html><head><meta http-equiv="refresh" content="5; url=https://example.com/">'
        '<meta name="description" content="https://example.com/ is a text here">'
        '<link rel="stylesheet" href="//cdn.example.com/x.css"/>'
        '<script src="https://code.jquery.com/jquery-3.7.1.min.js" integrity="sha384-x" crossorigin="anonymous"></script>'
        '<script src="https://tracker.example.com/t.js">var leaked = 1;</script>'
        '<style>@import url("https://fonts.example.com/f.css"); .a { background: url(https://x.example.com/a.png) }'
        ' .b { background: url("img/local.png") }</style></head><body>'
        '<img srcset="https://x.example.com/a.png 2x" src="local.png">'
        '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1&dataContextId=2">'
        '<iframe src="https://example.com/frame">fallback</iframe>'
        '<form action="https://example.com/subscribe"><input name="email"></form>'
        '<a href="https://greatexpectations.io" class="x">Great Expectations</a> <a href="../index.html">Home</a>'
        '<script>for (var i = 0; i<a.length; i++) { if (s > "it\'s") {} }</script>'
        '</body></html>', encoding="utf-8")
    report = make_site_offline(site)
    text = page.read_text(encoding="utf-8")
    assert report.pages_rewritten == 1 and external_references(site) == []
    assert not FETCH_OUT.search(text) and "refresh" not in text and "leaked" not in text and "<form" not in text
    assert "<iframe" not in text and "example.com/f.css" not in text and "srcset" not in text
    assert '<script src="../../static/vendor/jquery-3.7.1/jquery.min.js"></script>' in text
    assert '<img src="../../static/images/logo-long.png">' in text
    assert "background: none" in text and 'url("img/local.png")' in text
    assert '<a class="x">Great Expectations</a> <a href="../index.html">Home</a>' in text
    assert 'content="https://example.com/ is a text here"' in text  # a meta's text is no address
    assert 'for (var i = 0; i<a.length; i++) { if (s > "it\'s") {} }' in text  # scripts untouched
    assert (site / SITE_VENDOR / "jquery-3.7.1" / "jquery.min.js").is_file()
    assert make_site_offline(site).pages_rewritten == 0

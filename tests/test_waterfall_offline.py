"""The waterfall chart of ``hub explain --pair … --html`` is drawn with the network cut off, and every
level of the model has an English and a Chinese label.

The browser runs with every request sent to a proxy on loopback that answers none of them and
records each one: the page must draw its chart without a single request leaving it. A page that
loads a script from a CDN is run through the same harness to show that such a request is caught.
"""

from __future__ import annotations

import json
import os
import re
import socketserver
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from schemas.id_number import check_character
from tests.browser import colour_census, read_png, require_browser

HUB = str(Path(sys.executable).with_name("hub"))
CJK = re.compile(r"[\u4e00-\u9fff]")


def _id(body17: str) -> str:
    return body17 + check_character(body17)


# invented residents; the second and third records are the first person (one without an ID number)
ZHANG = _id("34152219750520013")
RECORDS = [
    ("mz_dibao", "W-1", dict(name="张建国", id_number=ZHANG, sex="男", birth_date="1975-05-20",
                             phone="13912345678", address="城关镇东湖村3组12号")),
    ("rs_yanglao", "W-2", dict(name="张建国", id_number="", sex="男", birth_date="1975-05-20",
                               phone="13912345678", address="城关镇东湖村3组12号")),
    ("wj_chusheng", "W-3", dict(name="张建国", id_number=ZHANG[:10] + "9" + ZHANG[11:], sex="男",
                                birth_date="1975-05-21", phone="", address="城关镇东湖村")),
    ("mz_dibao", "W-4", dict(name="李娜", id_number=_id("34052419800101002"), sex="女", birth_date="1980-01-01",
                             phone="13812345670", address="城关镇东湖村3组14号")),
]


class _Recorder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _Refuse)


class _Refuse(socketserver.StreamRequestHandler):
    """Record the request line (GET http://…, CONNECT host:443) and refuse it."""

    def handle(self):
        line = self.rfile.readline(4096).decode("latin-1").strip()
        if line:
            self.server.requests.append(line)
        self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def _offline(html_file: Path, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run headless Chromium on ``html_file`` with every request routed to a refusing, recording proxy
    (loopback included) and no host name resolving but the proxy's; returns the run and the requests it attempted."""
    browser = require_browser()
    proxy = _Recorder()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        with tempfile.TemporaryDirectory(prefix="hub-chromium-") as profile:
            command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                       "--hide-scrollbars", "--no-first-run", "--disable-extensions", "--mute-audio",
                       "--disable-background-networking", "--disable-component-update", "--disable-sync",
                       f"--proxy-server=http://127.0.0.1:{proxy.server_address[1]}", "--proxy-bypass-list=<-loopback>",
                       "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--user-data-dir={profile}", *args,
                       html_file.resolve().as_uri()]
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                                  env={**os.environ, "HOME": profile})
    finally:
        proxy.shutdown()
        proxy.server_close()
    return done, list(proxy.requests)


def _hub(*args, timeout=300):
    return subprocess.run([HUB, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def _load(engine) -> None:
    """Standardize the records above into the warehouse as a source drop would."""
    from schemas.resident import standardize_frame
    from warehouse.standardized import STD_TABLE_COLUMNS, insert_standardized

    raw = pd.DataFrame([dict(source=s, source_record_id=r, **v) for s, r, v in RECORDS])
    std = standardize_frame(raw)
    with engine.begin() as conn:
        batch = conn.execute(sa.text("INSERT INTO raw.load_batch (source) VALUES ('mz_dibao') RETURNING batch_id")
                             ).scalar_one()
        ids = [conn.execute(sa.text(
            "INSERT INTO raw.record (source, source_record_id, content_hash, payload, batch_id, fetched_at)"
            " VALUES (:s, :r, 'h', '{}', :b, now()) RETURNING record_id"), {"s": s, "r": r, "b": batch}).scalar_one()
            for s, r, _ in RECORDS]
        std = std.assign(raw_record_id=ids, batch_id=batch, program=None)
        insert_standardized(conn, std[list(STD_TABLE_COLUMNS)])


def test_the_waterfall_draws_with_the_network_cut_off(clean_warehouse, tmp_path):
    require_browser()
    _load(clean_warehouse)
    matched = _hub("match")
    assert matched.returncode == 0, matched.stderr
    page = tmp_path / "waterfall.html"
    shown = _hub("explain", "--pair", "mz_dibao/W-1", "--pair", "rs_yanglao/W-2", "--html", str(page), "--json")
    assert shown.returncode == 0, shown.stderr
    [explained] = json.loads(shown.stdout)["pairs"]
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "default-src 'none'" in html
    assert ZHANG not in html and "张建国" not in html, "the chart shows an unmasked name or ID number"

    done, attempted = _offline(page, "--dump-dom")
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]
    assert attempted == [], f"the page tried to reach the network: {attempted}"
    dom = done.stdout
    assert dom.count("<svg") >= 1
    bars = re.findall(r'class="mark-rect role-mark[^"]*"[^>]*>(.*?)</g>', dom, flags=re.S)
    assert bars and len(re.findall(r"<path", bars[0])) >= len(explained["comparisons"]), "no bars drawn"
    labels = set(re.findall(r"<text[^>]*>([^<]+)</text>", dom))
    assert {"id", "name", "dob", "sex", "phone", "address", "tf_name"} <= labels, labels
    for c in explained["comparisons"]:  # the table under the chart names every level in both languages
        assert f"{c['level']} / {c['level_zh']}" in dom
    assert f"{explained['match_weight']:+.2f}" in dom

    png = tmp_path / "waterfall.png"
    done, attempted = _offline(page, f"--screenshot={png}", "--window-size=1280,1400")
    assert png.is_file(), done.stderr[-2000:]
    assert attempted == [], f"the page tried to reach the network: {attempted}"
    census = colour_census(read_png(png))
    greens = sum(n for (r, g, b, *_), n in census.items() if g > 150 and g > r + 40 and g > b + 40)
    assert greens > 500, "no green (positive weight) bars on the screenshot"


def test_the_harness_catches_a_page_that_loads_from_a_cdn(tmp_path):
    """What the Splink HTML export did: a script from a CDN. The harness sees the attempt and blocks it."""
    page = tmp_path / "cdn.html"
    page.write_text("<!doctype html><html><head><script src=\"https://cdn.jsdelivr.net/npm/vega@5\"></script>"
                    "</head><body><img src=\"http://cdn.example.test/x.png\"></body></html>", encoding="utf-8")
    done, attempted = _offline(page, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert any("cdn.jsdelivr.net" in r for r in attempted), attempted
    assert any("cdn.example.test" in r for r in attempted), attempted


def test_every_level_of_the_model_has_an_english_and_a_chinese_label():
    from mpi.labels import COMPARISONS, NULL_LEVEL, level_label, unlabelled_levels
    from mpi.model import DEFAULT_MODEL

    model = json.loads(Path(DEFAULT_MODEL).read_text(encoding="utf-8"))
    assert unlabelled_levels(model) == [], "add the levels' English and Chinese labels to mpi/labels.py"
    for comparison in model["comparisons"]:
        name = comparison["output_column_name"]
        assert name in COMPARISONS and CJK.search(COMPARISONS[name].zh)
        for level in comparison["comparison_levels"]:
            label = level_label(name, level)
            assert label.en and CJK.search(label.zh), (name, level.get("label_for_charts"))
            assert (label == NULL_LEVEL) == bool(level.get("is_null_level"))
    # a level the model gains without labels is found
    extra = dict(model, comparisons=[dict(model["comparisons"][0], comparison_levels=[
        *model["comparisons"][0]["comparison_levels"], {"label_for_charts": "a level nobody labelled"}])])
    assert unlabelled_levels(extra) == [(model["comparisons"][0]["output_column_name"], "a level nobody labelled")]

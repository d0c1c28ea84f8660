"""Render a local HTML file with headless Chromium: a PNG screenshot and the DOM after load.

Tests that need a browser call :func:`screenshot` / :func:`dump_dom`; without one installed they
are skipped with the package to install (Debian: ``chromium-headless-shell`` or ``chromium``).
:func:`read_png` decodes the screenshot with zlib alone (no Pillow needed) so a test can check
that the pixels vary.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

CANDIDATES = (
    "chromium-headless-shell",
    "chromium",
    "/usr/lib/chromium/headless_shell",
    "/usr/lib/chromium/chromium-headless-shell",
)
INSTALL_HINT = "install the Debian package chromium-headless-shell (or chromium): apt-get install chromium-headless-shell"
TIMEOUT = 60.0
WINDOW = (1280, 2000)


def find_browser() -> str | None:
    """The first Chromium found (``HUB_TEST_CHROMIUM`` first, then the usual names and paths)."""
    for candidate in (os.environ.get("HUB_TEST_CHROMIUM"), *CANDIDATES):
        if not candidate:
            continue
        found = shutil.which(candidate)
        if found:
            return found
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_browser() -> str:
    browser = find_browser()
    if browser is None:
        pytest.skip(f"no headless Chromium found ({', '.join(CANDIDATES[:2])}); {INSTALL_HINT}")
    return browser


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    browser = require_browser()
    # a throwaway profile: parallel runs never share one, and nothing is left in $HOME
    with tempfile.TemporaryDirectory(prefix="hub-chromium-") as profile:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--hide-scrollbars", "--no-first-run", "--disable-extensions", "--mute-audio",
                   f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                                  env={**os.environ, "HOME": profile})
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"{Path(browser).name} did not finish within {timeout:.0f} s: {' '.join(args)}") from e


def _url(html_file: Path) -> str:
    return Path(html_file).resolve().as_uri()


def screenshot(html_file: Path, png: Path, *, window: tuple[int, int] = WINDOW, timeout: float = TIMEOUT) -> Path:
    """Screenshot ``html_file`` into ``png`` at ``window`` (width, height); returns the PNG path."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    done = _run([f"--screenshot={png}", f"--window-size={window[0]},{window[1]}", _url(html_file)], timeout)
    if not png.is_file():
        raise AssertionError(f"no screenshot written (exit {done.returncode}): {done.stderr[-2000:]}")
    return png


def dump_dom(html_file: Path, *, timeout: float = TIMEOUT) -> str:
    """The DOM of ``html_file`` as serialized by Chromium after the page loaded."""
    done = _run(["--dump-dom", _url(html_file)], timeout)
    if done.returncode != 0 or not done.stdout.strip():
        raise AssertionError(f"--dump-dom failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int  # 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
    rows: list[bytes]  # unfiltered scanlines, ``width * channels`` bytes each


_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def png_size(png: Path) -> tuple[int, int]:
    data = Path(png).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise AssertionError(f"{png} is not a PNG")
    return struct.unpack(">II", data[16:24])


def read_png(png: Path) -> Image:
    """Decode an 8-bit, non-interlaced grey/RGB/RGBA PNG (what Chromium writes) with zlib."""
    data = Path(png).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"{png} is not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise AssertionError(f"{png} has no IHDR")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or interlace or colour not in _CHANNELS:
        raise AssertionError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    bpp = _CHANNELS[colour]
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    rows: list[bytes] = []
    prior = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prior))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prior[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prior[i]
                c = prior[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        elif kind != 0:
            raise AssertionError(f"bad PNG filter type {kind} in row {y}")
        rows.append(bytes(line))
        prior = line
    return Image(width, height, bpp, rows)


def colour_census(image: Image, step: int = 2) -> dict[tuple[int, ...], int]:
    """How often each colour occurs, sampling every ``step``-th pixel of every ``step``-th row."""
    census: dict[tuple[int, ...], int] = {}
    c = image.channels
    for y in range(0, image.height, step):
        row = image.rows[y]
        for x in range(0, image.width, step):
            px = tuple(row[x * c:x * c + c])
            census[px] = census.get(px, 0) + 1
    return census

"""Statistical report forms carried from one release to the next when what they show did not change.

A form names its release inside (数据版本 第N版 and its date, 统计时点, 统计期, 生成时间, 填报日期, the page
header ``第N版``) and in its file name, so the previous release's file is never linked in as it is. When a
form's content is the same as in the folder of an earlier release — the same kind as declared, the same
place, owner, columns, lines, cells, withheld cells, period and chart, written by the same code — the earlier
file is copied under the new name with those labels replaced by the new release's, and the file's times set
anew. The copy equals what rendering the form again would write, part for part (``docProps/core.xml``'s
times aside: every workbook has its own); writing the workbook is what costs (openpyxl, ≈ 0.1 s a form).

Each release folder keeps ``.forms.json``: per form (kind and place) its content key, the labels written
into it and the file's SHA-256. A form is carried only when the earlier file is still the one recorded
(its SHA-256) and every label is found exactly where it was written; otherwise it is rendered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

MANIFEST = ".forms.json"
_STRINGS = "xl/sharedStrings.xml"
_SHEET = "xl/worksheets/sheet1.xml"
_CORE = "docProps/core.xml"
#: the modules whose code decides what a form looks like: a change to any of them renders every form again
_RENDERERS = ("stat_form.py", "statistics.py", "xlsx.py", "charts.py", "report_spec.py")


def _renderer_digest() -> str:
    import openpyxl

    h = hashlib.sha256(openpyxl.__version__.encode())
    here = Path(__file__).resolve().parent
    for name in _RENDERERS:
        h.update((here / name).read_bytes())
    return h.hexdigest()


_RENDERER: list[str] = []


def renderer_digest() -> str:
    if not _RENDERER:
        _RENDERER.append(_renderer_digest())
    return _RENDERER[0]


def content_key(table, department: str, drawn: bool) -> str:
    """What the form shows apart from its release's labels, as one digest."""
    parts = {
        "renderer": renderer_digest(), "kind": table.kind, "spec": table.spec.model_dump(mode="json"),
        "place": table.place, "level": table.level, "department": department, "drawn": drawn,
        "columns": [dataclasses.astuple(c) for c in table.columns],
        "lines": [[ln.role, ln.town, ln.village, ln.value, list(ln.cells)] for ln in table.lines],
        "since": [table.since[0].isoformat() if table.since[0] else None, table.since[1]],
        "suppressed": sorted(table.suppressed),
    }
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


def labels(table, department: str, generated: dt.datetime) -> dict[str, list[str]]:
    """The strings of the form that name its release or when it was made: ``strings`` (cells: the notes and
    the sign-off line) and ``page_header``."""
    from reports import stat_form

    notes = stat_form._notes(table, department, generated, None)
    return {"strings": [*notes, f"填报日期：{generated:%Y-%m-%d}"],
            "page_header": [f"第{table.data.release.release_no}版"]}


def read_manifest(folder: Path | None) -> dict[str, dict]:
    """``kind/place`` → the form's entry in ``folder``'s manifest (empty when there is none or it is unreadable)."""
    if folder is None:
        return {}
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("forms", {}) if isinstance(data, dict) and data.get("version") == 1 else {}


def write_manifest(folder: Path, release_no: int, forms: dict[str, dict]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".forms-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"version": 1, "release_no": release_no, "forms": forms}, f, ensure_ascii=False, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, folder / MANIFEST)


def entry_key(kind: str, level: str, place: str) -> str:
    return f"{kind}/{level}/{place}"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _core_times(xml: str, when: dt.datetime) -> str:
    stamp = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for tag in ("dcterms:created", "dcterms:modified"):
        xml = re.sub(rf"(<{tag}\b[^>]*>)[^<]*(</{tag}>)", rf"\g<1>{stamp}\g<2>", xml)
    return xml


def carry(old: Path, entry: dict, new: Path, new_labels: dict[str, list[str]], now: dt.datetime) -> bool:
    """Copy the earlier form ``old`` (its manifest ``entry``) to ``new`` with the new release's labels;
    False (nothing written) when the file is not the one recorded or a label is not where it was written."""
    try:
        if sha256_file(old) != entry.get("sha256"):
            return False
        with zipfile.ZipFile(old) as z:
            members = [(info, z.read(info.filename)) for info in z.infolist()]
    except (OSError, zipfile.BadZipFile):
        return False
    old_labels = entry.get("labels") or {}
    if [len(old_labels.get(k, [])) for k in ("strings", "page_header")] != \
            [len(new_labels[k]) for k in ("strings", "page_header")]:
        return False
    texts = {info.filename: data.decode("utf-8") for info, data in members
             if info.filename in (_STRINGS, _SHEET)}
    if _SHEET not in texts:
        return False
    # cell strings (inline in the sheet, or shared): the longest first, so that a label that is part of another
    # is replaced in its own cell only; each must be found exactly once
    for o, n in sorted(zip(old_labels["strings"], new_labels["strings"]), key=lambda p: -len(p[0])):
        old_cell, new_cell = f">{escape(o)}</t>", f">{escape(n)}</t>"
        found = [name for name, text in texts.items() if old_cell in text]
        if len(found) != 1 or texts[found[0]].count(old_cell) != 1:
            return False
        texts[found[0]] = texts[found[0]].replace(old_cell, new_cell)
    head = re.search(r"<oddHeader>([^<]*)</oddHeader>", texts[_SHEET])
    if head is None:
        return False
    inner = head.group(1)
    for o, n in zip(old_labels["page_header"], new_labels["page_header"]):
        if inner.count(escape(o)) != 1:
            return False
        inner = inner.replace(escape(o), escape(n))
    texts[_SHEET] = texts[_SHEET][: head.start(1)] + inner + texts[_SHEET][head.end(1):]
    out = []
    for info, data in members:
        if info.filename in texts:
            data = texts[info.filename].encode("utf-8")
        elif info.filename == _CORE:
            data = _core_times(data.decode("utf-8"), now).encode("utf-8")
        out.append((info, data))
    fd, tmp = tempfile.mkstemp(prefix=f".{new.stem[:40]}-", suffix=".xlsx", dir=new.parent)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w") as z:
            for info, data in out:
                z.writestr(info, data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, new)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def earlier_folder(root: Path, release_no: int) -> Path | None:
    """The folder of the latest other release under ``root`` that has a manifest (forms may be carried from it)."""
    if not root.is_dir():
        return None
    found = [int(p.name) for p in root.iterdir()
             if p.name.isdigit() and int(p.name) != release_no and (p / MANIFEST).is_file()]
    return root / str(max(found)) if found else None

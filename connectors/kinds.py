"""The table of source kinds: which extractor serves each ``kind:`` of a registry file.

Adding a kind of source (a SOAP service, say) takes:

1. a registry model in :mod:`connectors.registry` with ``kind: Literal["soap"]``, added to
   ``AnySource`` (the fields its YAML files declare: data, no code);
2. one module, e.g. ``connectors/soap.py``, with a class that implements
   :class:`connectors.base.Extractor`: ``extract(source, connection, state)`` yielding chunks, and
   the two flags saying whether it reads a cursor and whether it marks its own snapshots. It takes
   from :class:`connectors.connections.ConnectionParts` what it needs;
3. one line in :data:`KINDS` below.

Nothing else changes: the pipeline asks :func:`extractor` for a source's kind and has no per-kind
code. A kind's module (and its libraries) is imported only when a source of that kind is extracted.
"""

from __future__ import annotations

import importlib

from connectors.base import Extractor

#: kind → "module:class" of its extractor
KINDS: dict[str, str] = {
    "rest": "connectors.rest:RestExtractor",
    "file": "connectors.files:FileExtractor",
    "sql": "connectors.sql:SqlExtractor",
}


def extractor(kind: str) -> Extractor:
    """The extractor for sources of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"no extractor for sources of kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    module, _, name = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)()

"""Master person index: matching, clustering and master-id anchors.

Public API (Splink is imported lazily, inside the functions):

* :func:`link_records` — standardized records → :class:`LinkResult` (crosswalk, reviews, stats);
* :func:`explain_pair` — per-comparison level and match weight for two standardized records;
* :func:`waterfall_html` — Splink's waterfall chart of a pair as HTML (needs altair);
* :func:`train_model` — retrain the model and save it as versioned JSON;
* :func:`mpi.anchors.master_anchors` — clusters to master-id anchors, one ID number per master.
"""

from mpi.explain import explain_pair, waterfall_html
from mpi.link import LinkResult, link_records
from mpi.model import DEFAULT_MODEL, train_model

__all__ = ["DEFAULT_MODEL", "LinkResult", "explain_pair", "link_records", "train_model", "waterfall_html"]

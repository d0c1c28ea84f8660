"""Master person index: matching, clustering and master-id anchors.

Public API (Splink is imported lazily, inside the functions):

* :func:`link_records` — standardized records → :class:`LinkResult` (crosswalk, reviews, stats);
* :func:`explain_pair` — per-comparison level and match weight for two standardized records;
* :func:`waterfall_html` — Splink's waterfall chart of a pair as HTML (needs altair);
* :func:`train_model` — retrain the model and save it as versioned JSON;
* :func:`mpi.ids.assign_master_ids` — stable master ids for a new clustering, with events;
* :func:`mpi.anchors.cluster_anchors` — the ID number each cluster may carry (one master per number).
"""

from mpi.explain import explain_pair, waterfall_html
from mpi.link import LinkResult, link_records
from mpi.model import DEFAULT_MODEL, train_model

__all__ = ["DEFAULT_MODEL", "LinkResult", "explain_pair", "link_records", "train_model", "waterfall_html"]

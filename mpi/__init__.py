"""Master person index: matching, clustering and master-id anchors.

Public API (Splink is imported lazily, inside the functions):

* :class:`Matcher` — the model, thresholds and term frequencies, with two entry points:
  :meth:`Matcher.match_all` (every record) and :meth:`Matcher.match_delta` (what changed, against a
  stored index: the warehouse's, or a :class:`MemoryIndex`); both return a :class:`MatchOutcome`
  (clusters, review pairs, the region re-clustered, figures);
* :func:`explain_pair` — per-comparison level and match weight for two standardized records;
* :func:`waterfall_html` — Splink's waterfall chart of a pair as HTML (needs altair);
* :func:`train_model` — retrain the model and save it as versioned JSON;
* :func:`mpi.ids.assign_master_ids` — stable master ids for a new clustering, with events;
* :func:`mpi.anchors.cluster_anchors` — the ID number each cluster may carry (one master per number).
"""

from mpi.delta import Delta, StoredIndex
from mpi.explain import explain_pair, waterfall_html
from mpi.matcher import REVIEW_THRESHOLD, THRESHOLD, Matcher, MatchOutcome
from mpi.memory_index import MemoryIndex
from mpi.model import DEFAULT_MODEL, train_model
from mpi.scoring import Frequencies

__all__ = ["DEFAULT_MODEL", "REVIEW_THRESHOLD", "THRESHOLD", "Delta", "Frequencies", "MatchOutcome", "Matcher",
           "MemoryIndex", "StoredIndex", "explain_pair", "train_model", "waterfall_html"]

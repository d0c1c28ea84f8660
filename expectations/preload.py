"""Great Expectations imported ahead of the gate, by a process that starts task processes.

The LocalExecutor's workers start from a forkserver that imports what the tasks need
(:data:`hub.airflow_processes.TASK_MODULES`), so that no task imports it anew; importing Great Expectations takes
seconds. A forkserver's main module has no file, and with the ``spark`` extra installed Great Expectations imports
pyspark's Spark Connect helpers, which take such a main module for a doctest run of their own and exit the process
when Spark Connect's packages are missing. While this module imports Great Expectations, the process counts as
interactive for that check (``sys.ps1``), and nothing else.
"""

from __future__ import annotations

import sys


def load() -> None:
    """Import Great Expectations (once; later calls cost nothing)."""
    main = sys.modules.get("__main__")
    bare = main is not None and getattr(main, "__spec__", None) is None and not hasattr(main, "__file__")
    marked = bare and not hasattr(sys, "ps1")
    if marked:
        sys.ps1 = ""
    try:
        import great_expectations  # noqa: F401
    finally:
        if marked:
            del sys.ps1


load()

"""Advisory locks that keep the steps of a master-index run from interleaving.

* The **index lock** guards ``std`` and ``mpi``: standardizing and matching change them under it
  (exclusive, until their transaction ends), the gate and publishing read them under it (shared), so a
  gate validates, and a release holds, one state of the index — never half of a matching run.
* **Step locks** let one run of a step at a time (the gate, the reports); a second one waits for the first.

All are PostgreSQL advisory locks: they end with the transaction or the connection, so a process that
is killed leaves none behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

#: The key standardizing and matching change std and mpi under.
INDEX_LOCK = "hub:matching"


def lock_index(conn: sa.Connection, *, shared: bool = False) -> None:
    """Hold the index lock until the caller's transaction ends (``shared``: with other readers)."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(sa.text(f"SELECT {function}(hashtext(:k))"), {"k": INDEX_LOCK})


@contextlib.contextmanager
def held(engine: sa.Engine, *names: str, shared: tuple[str, ...] = ()) -> Iterator[sa.Connection]:
    """Hold the advisory locks ``names`` (exclusive) then ``shared`` while the block runs, on a connection of
    their own; waits for them in that order. They end with the block or with the process."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as guard:
        taken: list[tuple[str, bool]] = []
        try:
            for name, is_shared in [(n, False) for n in names] + [(n, True) for n in shared]:
                function = "pg_advisory_lock_shared" if is_shared else "pg_advisory_lock"
                guard.execute(sa.text(f"SELECT {function}(hashtext(:k))"), {"k": name})
                taken.append((name, is_shared))
            yield guard
        finally:
            try:
                for name, is_shared in reversed(taken):
                    function = "pg_advisory_unlock_shared" if is_shared else "pg_advisory_unlock"
                    guard.execute(sa.text(f"SELECT {function}(hashtext(:k))"), {"k": name})
            except sa.exc.DBAPIError:  # the connection is gone, and its locks with it
                guard.invalidate()

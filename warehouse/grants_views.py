"""The definitions of a department's views and the columns their owner role reads (see :mod:`warehouse.grants`).

``dept_<department>.master_person`` reads ``publish.master_person_current``. With ``enrolments: own``
the fields derived from every department's records are cut to the department's own, as the read API
answers them:

* ``sources``: only the department's own sources (those the release's enrolments file under it);
* ``record_count``: the number of the master's records from the department's own sources in the
  release (its rows in ``publish.enrolment``);
* ``conflicts``: NULL. It counts disagreements with other departments' records, which the department
  may not learn of; the column stays (always NULL) so that a reader asking for it gets no error.

The owner role then reads ``master_id`` of ``publish.master_person_current`` and of
``publish.enrolment`` (to count the master's records) even when the department may not see
``master_id``, and no longer reads ``conflicts``: :func:`owner_columns` is exactly what the views read.

``dept_<department>.master_id_redirect`` (``retired_id`` → ``survivor_id``, ``release_no``): the redirects
of the current release (kept in ``publish.release.ran_with``, see :func:`warehouse.releases.redirects`),
each a master id an earlier release published — one the department can have seen in its
``master_person`` view or through the read API — retired by a merge, and the id in the current release
it now is. A chain of merges resolves to the last survivor. It is empty for a department that may not
see ``master_id``. Its owner reads ``release_no`` and ``ran_with`` of ``publish.release`` (versions,
checksums, batch ids and master ids: no personal data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: publish.enrolment columns a department view shows (master_id only when master_id is visible)
ENROLMENT_COLUMNS = ("release_no", "master_id", "source", "source_record_id", "department", "program", "status_raw")
#: fields of publish.master_person computed over every department's records
CROSS_DEPARTMENT_FIELDS = ("sources", "record_count", "conflicts")

#: the columns of a department's master_id_redirect view
REDIRECT_COLUMNS = ("retired_id", "survivor_id", "release_no")

Quote = Callable[[str], str]


class GrantsError(RuntimeError):
    """The grants cannot be applied as configured; the message says why."""


@dataclass(frozen=True)
class DepartmentAccess:
    """What one department is given in the database."""

    department: str
    title: str
    role: str    # group role for the department's users
    owner: str   # owns the department's schema and views; the RLS policy is written for it
    schema: str
    policy: str  # its row-level security policy on publish.enrolment
    fields: tuple[str, ...]        # published fields in its master_person view
    conditional: tuple[str, ...]   # of those, the 有条件 ones
    own_enrolments_only: bool

    @property
    def enrolment_columns(self) -> tuple[str, ...]:
        return tuple(c for c in ENROLMENT_COLUMNS if c != "master_id" or "master_id" in self.fields)


def sql_literal(value: str) -> str:
    if "\x00" in value:
        raise GrantsError(f"cannot use {value!r} in a SQL literal")
    quoted = value.replace("'", "''")
    if "\\" in value:  # E'' reads backslashes the same whatever standard_conforming_strings says
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"


def master_person_sql(q: Quote, d: DepartmentAccess) -> str:
    """``release_no`` and the department's fields of the current release, the derived ones cut to its own
    records when it sees only its own enrolments."""
    cols = ", ".join(_own_field(d, c) if d.own_enrolments_only and c in CROSS_DEPARTMENT_FIELDS else f"p.{q(c)}"
                     for c in ("release_no", *d.fields))
    return f"SELECT {cols} FROM publish.master_person_current p"


def _own_field(d: DepartmentAccess, column: str) -> str:
    own = f"e.release_no = p.release_no AND e.department = {sql_literal(d.department)}"
    if column == "sources":  # a source is the department's when the person's enrolments of it say so
        # (the person's own rows: found by the (release_no, master_id) index, a few per person, so a
        # whole view reads in one pass instead of scanning a source's every enrolment for each person)
        return ("ARRAY(SELECT u.s FROM unnest(p.sources) WITH ORDINALITY u(s, i) WHERE EXISTS (SELECT FROM"
                f" publish.enrolment e WHERE {own} AND e.master_id = p.master_id AND e.source = u.s)"
                " ORDER BY u.i) AS sources")
    if column == "record_count":
        return (f"(SELECT count(*) FROM publish.enrolment e WHERE {own} AND e.master_id = p.master_id)::integer"
                " AS record_count")
    return "NULL::integer AS conflicts"


def enrolment_sql(q: Quote, d: DepartmentAccess) -> str:
    cols = ", ".join(f"e.{q(c)}" for c in d.enrolment_columns)
    return (f"SELECT {cols} FROM publish.enrolment e"
            f" JOIN publish.current_release c ON c.release_no = e.release_no")


def master_id_redirect_sql(q: Quote, d: DepartmentAccess) -> str:
    """The current release's redirects (retired id → survivor); none for a department not seeing master ids."""
    sql = ("SELECT r.key AS retired_id, r.value AS survivor_id, c.release_no FROM publish.current_release c"
           " JOIN publish.release rel ON rel.release_no = c.release_no"
           " CROSS JOIN LATERAL jsonb_each_text(coalesce(rel.ran_with -> 'redirects', '{}'::jsonb)) AS r")
    return sql if "master_id" in d.fields else sql + " WHERE false"


def policy_qual(d: DepartmentAccess) -> str:
    return f"department = {sql_literal(d.department)}" if d.own_enrolments_only else "true"


def owner_columns(d: DepartmentAccess) -> dict[str, tuple[str, ...]]:
    """publish relation → the columns the department's views read of it (its owner's column privileges)."""
    person = ["release_no", *d.fields]
    enrolment = list(d.enrolment_columns)
    if d.own_enrolments_only:
        person = [c for c in person if c != "conflicts"]
        if "record_count" in d.fields:
            person += [] if "master_id" in person else ["master_id"]
            enrolment += [] if "master_id" in enrolment else ["master_id"]
    return {"master_person_current": tuple(person), "enrolment": tuple(enrolment), "current_release": ("release_no",),
            "release": ("release_no", "ran_with")}


def master_person_notes(d: DepartmentAccess, class_notes: dict[str, str]) -> dict[str, str]:
    """Column comments of the master_person view: each field's class, and how a derived one is cut."""
    notes = {"release_no": "the release these rows belong to (always the current release)", **class_notes}
    if d.own_enrolments_only:
        for column, how in (("sources", "only the department's own sources"),
                            ("record_count", "counts only the master's records from the department's own sources")):
            if column in notes:
                notes[column] += f"; {how}"
        if "conflicts" in notes:
            notes["conflicts"] = ("always NULL for this department: it counts disagreements with other"
                                  " departments' records, which a department seeing only its own programmes"
                                  " is not told")
    return notes

"""The source gate: one GX suite per standardized source, and the gate's declared thresholds.

Each source's standardized records (``std.resident WHERE source = '<name>'``) are validated by
the suite ``source.<name>`` through a GX table asset on the source's view ``gate.source_<name>``
(GX 1.x batch definitions on SQL tables only partition by dates, so a view is how one source
becomes one batch; a query asset would do too, but GX runs its query and fetches every row to
learn its columns). The thresholds come from ``expectations/gate_rules.yaml``: a ``defaults:``
block, per-source overrides under ``sources:`` and the master-index bounds under
``master_index:`` (see :func:`load_gate_rules`; the YAML records the measured rates behind the
defaults).

What a source suite expects (``mostly`` shares and bounds from the source's rules):

* usable ID numbers: ``id_number_status`` in (valid, upgraded_from_15) for at least
  ``min_id_valid_share`` of the records;
* completeness: ``name``, ``id_number_raw``, ``sex`` and ``birth_date`` not null for at least
  ``min_name_share``, ``min_id_number_raw_share``, ``min_sex_share`` and ``min_birth_date_share``;
* code sets: ``sex`` in GB/T 2261.1 {0, 1, 2, 9}; ``id_number_status``, ``name_status``,
  ``sex_status`` and ``birth_date_status`` in the status codes their standardizers write
  (``schemas.id_number`` / ``names`` / ``sex`` / ``dates``);
* dates: ``birth_date`` and ``id_birth_date`` between ``earliest_birth_date`` and today;
* row count within ``max_row_count_change`` of the last load's, when a previous count is given.

Shares on few rows are noisy (a birth registry of 40 newborns moves by 2.5 points with every birth),
so a share check fails only when the source's share is below its minimum with ``share_confidence``:
the GX ``mostly`` is the minimum less the score-test margin ``z·√(m(1−m)/n)`` for the source's ``n``
rows (:func:`tolerated_share`, the Wilson bound). On a few hundred rows the margin is a few points;
a source with a third of its ID numbers blanked still fails.

Deletions are a change the gate holds too (:func:`deletion_outcome`): the records a source deleted
(tombstones, not lifted since) after the last gate run that passed, as a share of the records the
source had, at most ``max_deletion_share`` — unless fewer than ``min_deletions_to_hold`` records
were deleted, so that a few deletions on a small source pass.

This module does not import Great Expectations or pandas at import time.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from expectations.outcomes import ExpectationOutcome
from schemas.policy import read_policy
from warehouse import validation

if TYPE_CHECKING:  # pragma: no cover - typing only
    from great_expectations.core import ExpectationSuite

__all__ = [
    "DEFAULT_RULES_PATH",
    "SOURCE_SUITE_PREFIX",
    "GateRules",
    "GateRulesError",
    "MasterIndexRules",
    "SourceRules",
    "check_source_name",
    "count_bounds",
    "deletion_outcome",
    "row_count_expectation",
    "load_gate_rules",
    "parse_gate_rules",
    "source_query",
    "source_suite",
    "source_suite_name",
    "source_table_label",
    "tolerated_share",
]

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "gate_rules.yaml"
SOURCE_SUITE_PREFIX = "source."
#: How the deletion check is named among a source suite's outcomes.
DELETIONS_EXPECTATION = "expect_deletions_to_be_within_share"
STD_TABLE = validation.STANDARDIZED.fullname

#: A source name as the registry writes them; anything else is refused before it reaches SQL.
_SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

#: The std.resident columns a source suite reads (only these are selected into the batch).
SOURCE_COLUMNS: tuple[str, ...] = (
    "source",
    "source_record_id",
    "name",
    "name_status",
    "id_number_raw",
    "id_number_status",
    "id_birth_date",
    "sex",
    "sex_status",
    "birth_date",
    "birth_date_status",
)


class GateRulesError(ValueError):
    """The gate rules file is unreadable or declares something invalid (the message says where)."""


@dataclass(frozen=True)
class SourceRules:
    """Thresholds of one source's suite (shares are fractions of the source's std rows)."""

    min_id_valid_share: float
    min_id_number_raw_share: float
    min_name_share: float
    min_sex_share: float
    min_birth_date_share: float
    earliest_birth_date: dt.date
    max_row_count_change: float
    share_confidence: float = 0.99
    max_deletion_share: float = 0.02
    min_deletions_to_hold: int = 20


@dataclass(frozen=True)
class MasterIndexRules:
    """Bounds of the master-index suites."""

    max_cluster_size: int
    max_master_count_change: float


@dataclass(frozen=True)
class GateRules:
    """The gate's declared thresholds: defaults, per-source overrides, master-index bounds."""

    defaults: SourceRules
    master_index: MasterIndexRules
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    path: str = "<memory>"

    def for_source(self, name: str) -> SourceRules:
        """The rules of source ``name``: the defaults with its overrides applied."""
        return replace(self.defaults, **dict(self.overrides.get(name, {})))

    def scorecard_thresholds(self) -> dict[str, dict[str, float]]:
        """Per-source overrides for the scorecard's traffic lights (``reports.scorecard``):
        a source whose ``min_id_valid_share`` differs from the default gets it as its
        ``id_valid_red`` line, so that the scorecard turns red where the gate fails."""
        return {
            name: {"id_valid_red": self.for_source(name).min_id_valid_share}
            for name in sorted(self.overrides)
            if self.for_source(name).min_id_valid_share != self.defaults.min_id_valid_share
        }


_SHARE_KEYS = (
    "min_id_valid_share",
    "min_id_number_raw_share",
    "min_name_share",
    "min_sex_share",
    "min_birth_date_share",
)
_FRACTION_KEYS = (*_SHARE_KEYS, "max_row_count_change", "share_confidence", "max_deletion_share")
_COUNT_KEYS = ("min_deletions_to_hold",)
_SOURCE_KEYS = tuple(f.name for f in fields(SourceRules))
#: keys the defaults must declare (the others have a default of their own)
_REQUIRED_KEYS = tuple(f.name for f in fields(SourceRules) if f.default is MISSING)
_MASTER_KEYS = tuple(f.name for f in fields(MasterIndexRules))


def load_gate_rules(path: str | Path | None = None) -> GateRules:
    """Load and check the gate rules (default: ``expectations/gate_rules.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_RULES_PATH
    return parse_gate_rules(read_policy(path, GateRulesError, "gate rules"), str(path))


def parse_gate_rules(data: object, path: str = "<memory>") -> GateRules:
    """Check already-parsed YAML content; ``path`` names it in errors."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise GateRulesError(f"{path}: expected a mapping with defaults:, sources: and master_index:")
    for key in data:
        if key not in ("defaults", "sources", "master_index"):
            problems.append(f"{key}: unknown key (expected defaults, sources, master_index)")

    defaults_raw = data.get("defaults")
    defaults_values: dict[str, Any] = {}
    if not isinstance(defaults_raw, dict):
        problems.append("defaults: missing or not a mapping")
    else:
        defaults_values = _source_values(defaults_raw, "defaults", problems)
        for key in _REQUIRED_KEYS:
            if key not in defaults_raw:
                problems.append(f"defaults.{key}: missing")

    overrides: dict[str, dict[str, Any]] = {}
    sources_raw = data.get("sources") or {}
    if not isinstance(sources_raw, dict):
        problems.append("sources: not a mapping of source name to overrides")
    else:
        for name, raw in sources_raw.items():
            if not isinstance(name, str) or not _SOURCE_NAME.match(name):
                problems.append(f"sources.{name}: not a source name (lower-case letters, digits, _)")
                continue
            if not isinstance(raw, dict):
                problems.append(f"sources.{name}: not a mapping")
                continue
            overrides[name] = _source_values(raw, f"sources.{name}", problems)

    master_raw = data.get("master_index")
    master = None
    if not isinstance(master_raw, dict):
        problems.append("master_index: missing or not a mapping")
    else:
        for key in master_raw:
            if key not in _MASTER_KEYS:
                problems.append(f"master_index.{key}: unknown key (expected one of {', '.join(_MASTER_KEYS)})")
        size = master_raw.get("max_cluster_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            problems.append("master_index.max_cluster_size: expected an integer >= 1")
        change = _fraction(master_raw.get("max_master_count_change"))
        if change is None:
            problems.append("master_index.max_master_count_change: expected a number between 0 and 1")
        if not problems:
            master = MasterIndexRules(max_cluster_size=size, max_master_count_change=change)

    if problems:
        raise GateRulesError(f"invalid gate rules {path}:\n  " + "\n  ".join(problems))
    assert master is not None
    return GateRules(
        defaults=SourceRules(**defaults_values), overrides=overrides, master_index=master, path=path
    )


def _source_values(raw: dict, where: str, problems: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _SOURCE_KEYS:
            problems.append(f"{where}.{key}: unknown key (expected one of {', '.join(_SOURCE_KEYS)})")
        elif key in _FRACTION_KEYS:
            share = _fraction(value)
            if share is None or (key == "share_confidence" and not 0.5 <= share < 1.0):
                problems.append(f"{where}.{key}: expected a number between "
                                + ("0.5 and 1 (e.g. 0.99)" if key == "share_confidence" else "0 and 1"))
            else:
                values[key] = share
        elif key in _COUNT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{where}.{key}: expected a whole number >= 0")
            else:
                values[key] = value
        elif key == "earliest_birth_date":
            if isinstance(value, str):
                try:
                    value = dt.date.fromisoformat(value)
                except ValueError:
                    pass
            if type(value) is not dt.date:  # noqa: E721 - a datetime is not a date here
                problems.append(f"{where}.{key}: expected a date (YYYY-MM-DD)")
            else:
                values[key] = value
    return values


def _fraction(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


# --------------------------------------------------------------------------- names and bounds


def check_source_name(name: str) -> str:
    """``name`` if it is a plain source name; ValueError otherwise (it is put into SQL)."""
    if not isinstance(name, str) or not _SOURCE_NAME.match(name):
        raise ValueError(f"not a source name: {name!r} (expected lower-case letters, digits and _)")
    return name


def source_suite_name(name: str) -> str:
    return SOURCE_SUITE_PREFIX + check_source_name(name)


def source_table_label(name: str) -> str:
    """How outcomes name the batch: ``std.resident[<name>]``."""
    return f"{STD_TABLE}[{check_source_name(name)}]"


def source_query(name: str) -> str:
    """The SQL of the source's view: the source's std rows, the columns the suite reads."""
    return validation.source_batch_query(check_source_name(name), SOURCE_COLUMNS)


def count_bounds(previous: int, max_change: float) -> tuple[int, int]:
    """Inclusive row-count bounds ``previous × (1 ∓ max_change)``, widened to whole rows."""
    if isinstance(previous, bool) or not isinstance(previous, int) or previous < 0:
        raise ValueError(f"a previous count must be a non-negative integer, not {previous!r}")
    if not 0.0 <= max_change <= 1.0:
        raise ValueError(f"a count change tolerance must be between 0 and 1, not {max_change!r}")
    # rounded first: 100 * 1.1 is 110.00000000000001 in binary floating point
    low = round(previous * (1.0 - max_change), 6)
    high = round(previous * (1.0 + max_change), 6)
    return math.floor(low), math.ceil(high)


def tolerated_share(minimum: float, rows: int | None, confidence: float) -> float:
    """The lowest share of ``rows`` that passes a check of ``minimum`` at ``confidence``.

    A share ``p`` on ``n`` rows is held to be below ``minimum`` only when the one-sided score test
    says so: ``p < minimum − z·√(minimum(1−minimum)/n)``, i.e. when the upper Wilson bound of ``p``
    is below ``minimum``. Without a row count (or with none) the minimum applies as declared.
    """
    if not rows or minimum <= 0.0 or minimum >= 1.0:
        return minimum
    z = NormalDist().inv_cdf(confidence)
    return max(0.0, round(minimum - z * math.sqrt(minimum * (1.0 - minimum) / rows), 4))


def deletion_outcome(name: str, deleted: int, before: int, rules: SourceRules, *, most_before: int | None = None,
                     since: str = "the last gate run that passed") -> ExpectationOutcome:
    """Whether source ``name`` deleted too many records: ``deleted`` of the ``before`` records it had.

    Held when at least ``min_deletions_to_hold`` records were deleted and they are more than
    ``max_deletion_share`` of ``before``. The observed text names the count, the share and the limit,
    and ``most_before`` (the most records one earlier load of the source deleted), when given."""
    check_source_name(name)
    limit = math.floor(round(rules.max_deletion_share * before, 6))
    share = deleted / before if before else 0.0
    held = deleted >= rules.min_deletions_to_hold and deleted > limit
    observed = (f"{deleted:,} of {before:,} records deleted since {since} ({share:.1%});"
                f" limit {rules.max_deletion_share:.0%} ({limit:,} records)"
                + (f", fewer than {rules.min_deletions_to_hold} always pass" if rules.min_deletions_to_hold else "")
                + (f"; one earlier load deleted at most {most_before:,}" if most_before is not None else ""))
    return ExpectationOutcome(expectation=DELETIONS_EXPECTATION, column=None, success=not held, observed=observed,
                              unexpected_count=deleted, unexpected_percent=round(share * 100, 4),
                              table=f"{validation.TOMBSTONES.fullname}[{name}]")


def row_count_expectation(previous: int, max_change: float, *, noun: str, reference: str) -> Any:
    """A GX row-count expectation within ``max_change`` of ``previous``, described as
    "<noun> within 5% of <reference> 1234"."""
    import great_expectations as gx

    low, high = count_bounds(previous, max_change)
    return gx.expectations.ExpectTableRowCountToBeBetween(
        min_value=low, max_value=high, description=f"{noun} within {max_change:.0%} of {reference} {previous}")


# --------------------------------------------------------------------------- the suite


def source_suite(
    gx: Any,
    name: str,
    rules: SourceRules,
    *,
    previous_row_count: int | None = None,
    row_count: int | None = None,
    today: dt.date | None = None,
) -> ExpectationSuite:
    """The GX suite ``source.<name>`` (not yet added to a context).

    The row-count expectation is present only when ``previous_row_count`` is given. ``row_count``
    (the source's rows now) sets each share's ``mostly`` by :func:`tolerated_share`.
    """
    from expectations.custom import ExpectIdNumbersToBeMostlyValid
    from schemas import dates, id_number, names, sex

    today = today or dt.date.today()
    gxe = gx.expectations
    def share(minimum: float, what: str) -> dict:
        mostly = tolerated_share(minimum, row_count, rules.share_confidence)
        bound = (f" ({mostly:.1%} on {row_count:,} rows passes: below {minimum:.0%} with"
                 f" {rules.share_confidence:.0%} confidence fails)") if mostly != minimum else ""
        return {"mostly": mostly, "description": f"{what}: at least {minimum:.0%}{bound}"}

    expectations = [
        ExpectIdNumbersToBeMostlyValid(column="id_number_status", **share(
            rules.min_id_valid_share, "share of records whose ID number is valid (or upgraded from 15 digits)")),
        gxe.ExpectColumnValuesToNotBeNull(column="name", **share(rules.min_name_share, "names given")),
        gxe.ExpectColumnValuesToNotBeNull(column="id_number_raw", **share(rules.min_id_number_raw_share,
                                                                          "ID numbers given")),
        gxe.ExpectColumnValuesToNotBeNull(column="sex", **share(rules.min_sex_share, "sexes given")),
        gxe.ExpectColumnValuesToNotBeNull(column="birth_date", **share(rules.min_birth_date_share,
                                                                       "birth dates given")),
        gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=list(sex.GB_CODES)),
        gxe.ExpectColumnValuesToBeInSet(column="id_number_status", value_set=list(id_number.STATUSES)),
        gxe.ExpectColumnValuesToBeInSet(column="name_status", value_set=list(names.STATUSES)),
        gxe.ExpectColumnValuesToBeInSet(column="sex_status", value_set=list(sex.STATUSES)),
        gxe.ExpectColumnValuesToBeInSet(column="birth_date_status", value_set=list(dates.STATUSES)),
        gxe.ExpectColumnValuesToBeBetween(
            column="birth_date", min_value=rules.earliest_birth_date, max_value=today
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="id_birth_date", min_value=rules.earliest_birth_date, max_value=today
        ),
    ]
    if previous_row_count is not None:
        expectations.append(row_count_expectation(previous_row_count, rules.max_row_count_change,
                                                  noun="rows", reference="the last load's"))
    return gx.ExpectationSuite(
        name=source_suite_name(name),
        meta={"notes": f"{STD_TABLE} rows of source {name}: ID validity, completeness, code sets, dates"},
        expectations=expectations,
    )

"""Layer mpi: master ids, the crosswalk, golden records with provenance, events, review pairs and the
state incremental matching keeps."""

from __future__ import annotations

import sqlalchemy as sa

from warehouse.tables.base import DOUBLE, JSONB, TEXT, TEXT_ARRAY, TIMESTAMP, golden_columns, metadata

SCHEMA = "mpi"

#: Where new master ids come from (``'M' || lpad(nextval(...), 9, '0')``).
mpi_master_id_seq = sa.Sequence("master_id_seq", schema=SCHEMA, metadata=metadata)

#: Every master id ever issued; a merged-away id is ``retired`` with a redirect (``retired_into``).
mpi_master = sa.Table(
    "master", metadata,
    sa.Column("master_id", TEXT, primary_key=True),
    sa.Column("anchor", TEXT),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("status", TEXT, nullable=False),
    sa.Column("retired_into", TEXT, sa.ForeignKey("mpi.master.master_id")),
    sa.Column("retired_at", TIMESTAMP),
    sa.CheckConstraint("status IN ('active', 'retired')", name="master_status_check"),
    sa.Index("master_anchor_idx", "anchor"),
    schema=SCHEMA,
)

#: Source record → master id.
mpi_crosswalk = sa.Table(
    "crosswalk", metadata,
    sa.Column("source", TEXT, primary_key=True),
    sa.Column("source_record_id", TEXT, primary_key=True),
    sa.Column("master_id", TEXT, sa.ForeignKey("mpi.master.master_id"), nullable=False),
    sa.Column("match_rule", TEXT, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.Index("crosswalk_master_id_idx", "master_id"),
    schema=SCHEMA,
)

#: One golden record per master id: the surviving value of every field.
mpi_golden = sa.Table(
    "golden", metadata,
    sa.Column("master_id", TEXT, sa.ForeignKey("mpi.master.master_id"), primary_key=True),
    *golden_columns(),
    schema=SCHEMA,
)

#: Pairs of records for a steward: the grey zone and links a hard constraint refused; decided pairs are
#: the must-link and cannot-link rules every run honours.
mpi_review_pair = sa.Table(
    "review_pair", metadata,
    sa.Column("review_id", sa.BigInteger, primary_key=True),
    sa.Column("record_key_l", TEXT, nullable=False),
    sa.Column("record_key_r", TEXT, nullable=False),
    sa.Column("match_probability", DOUBLE),
    sa.Column("match_weight", DOUBLE),
    sa.Column("review_reason", TEXT, nullable=False),
    sa.Column("evidence", JSONB, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("decided_at", TIMESTAMP),
    sa.Column("decision", TEXT),
    sa.Column("reviewer", TEXT),
    sa.Column("comment", TEXT),
    sa.CheckConstraint("decision IN ('match', 'not_a_match')", name="review_pair_decision_check"),
    sa.Index("review_pair_record_key_l_idx", "record_key_l"),
    sa.Index("review_pair_record_key_r_idx", "record_key_r"),
    schema=SCHEMA,
)

#: Every steward decision, append-only (a trigger refuses UPDATE and DELETE): a pair decided ``match`` or
#: ``not_a_match``, a ``split`` of a master or a ``move_out`` of one record (``record_keys`` kept apart from
#: ``other_keys``, the rest of ``master_id`` when decided), a ``detach_id`` (the record's ID number belongs to
#: someone else). A later decision on the same ``subject`` supersedes the earlier one (``supersedes``).
mpi_decision = sa.Table(
    "decision", metadata,
    sa.Column("decision_id", sa.BigInteger, primary_key=True),
    sa.Column("kind", TEXT, nullable=False),
    sa.Column("subject", TEXT, nullable=False),
    sa.Column("record_keys", TEXT_ARRAY, nullable=False),
    sa.Column("other_keys", TEXT_ARRAY, nullable=False),
    sa.Column("master_id", TEXT),
    sa.Column("review_id", sa.BigInteger),
    sa.Column("reviewer", TEXT, nullable=False),
    sa.Column("comment", TEXT),
    sa.Column("decided_at", TIMESTAMP, nullable=False),
    sa.Column("supersedes", sa.BigInteger, sa.ForeignKey("mpi.decision.decision_id")),
    sa.CheckConstraint("kind IN ('match', 'not_a_match', 'split', 'move_out', 'detach_id')",
                       name="decision_kind_check"),
    sa.Index("decision_subject_idx", "subject"),
    sa.Index("decision_master_id_idx", "master_id"),
    sa.Index("decision_decided_at_idx", "decided_at"),
    schema=SCHEMA,
)

#: Every matching run, full or incremental, with its figures.
mpi_link_run = sa.Table(
    "link_run", metadata,
    sa.Column("run_id", sa.BigInteger, primary_key=True),
    sa.Column("mode", TEXT, nullable=False),
    sa.Column("started_at", TIMESTAMP, nullable=False),
    sa.Column("finished_at", TIMESTAMP),
    sa.Column("model_version", TEXT, nullable=False),
    sa.Column("records", sa.Integer),
    sa.Column("affected", sa.Integer),
    sa.Column("counts", JSONB, nullable=False),
    sa.Column("ran_with", JSONB),  # model, rules and code version, Airflow run (hub.provenance)
    sa.CheckConstraint("mode IN ('full', 'incremental')", name="link_run_mode_check"),
    schema=SCHEMA,
)

#: Every change of a master id, with its cause and the run that made it.
mpi_master_event = sa.Table(
    "master_event", metadata,
    sa.Column("event_id", sa.BigInteger, primary_key=True),
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("mpi.link_run.run_id")),
    sa.Column("master_id", TEXT, nullable=False),
    sa.Column("event", TEXT, nullable=False),
    sa.Column("cause", TEXT, nullable=False),
    sa.Column("other_master_id", TEXT),
    sa.Column("source", TEXT),
    sa.Column("source_record_id", TEXT),
    sa.Column("detail", JSONB, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.CheckConstraint("event IN ('created', 'merged', 'split', 'record_added', 'record_moved', 'record_removed',"
                       " 'retired')", name="master_event_event_check"),
    sa.CheckConstraint("cause IN ('new_data', 'source_correction', 'source_deletion', 'model_change',"
                       " 'steward_decision', 'rule_change')", name="master_event_cause_check"),
    sa.Index("master_event_master_id_idx", "master_id"),
    schema=SCHEMA,
)
sa.Index("master_event_other_master_id_idx", mpi_master_event.c.other_master_id,
         postgresql_where=mpi_master_event.c.other_master_id.isnot(None))

#: The matching features of every record (what an incremental run compares new records with).
mpi_match_feature = sa.Table(
    "match_feature", metadata,
    sa.Column("record_key", TEXT, primary_key=True),
    sa.Column("source", TEXT, nullable=False),
    sa.Column("source_record_id", TEXT, nullable=False),
    *(sa.Column(name, TEXT) for name in ("name_key", "name_pinyin", "surname", "given_key", "given_pinyin",
                                         "id_valid", "id_body", "id_claimed", "dob", "birth_year")),
    sa.Column("sex", sa.SmallInteger),
    sa.Column("phone", TEXT),
    sa.Column("address_key", TEXT),
    sa.Column("village", TEXT),
    sa.Column("anchor_key", TEXT, nullable=False),
    sa.Column("standardized_at", TIMESTAMP, nullable=False),
    sa.Index("match_feature_source_source_record_id_idx", "source", "source_record_id", unique=True),
    sa.Index("match_feature_anchor_key_idx", "anchor_key"),
    sa.Index("match_feature_dob_surname_idx", "dob", "surname"),
    sa.Index("match_feature_id_body_idx", "id_body"),
    sa.Index("match_feature_name_pinyin_birth_year_idx", "name_pinyin", "birth_year"),
    sa.Index("match_feature_phone_name_key_idx", "phone", "name_key"),
    sa.Index("match_feature_address_key_birth_year_idx", "address_key", "birth_year"),
    schema=SCHEMA,
)
_feature = mpi_match_feature.c
sa.Index("match_feature_id_valid_idx", _feature.id_valid, postgresql_where=_feature.id_valid.isnot(None))
# the blocking keys on parts of the ID number body (date of birth; region, sequence)
sa.Index("match_feature_substr_idx", sa.func.substr(_feature.id_body, 7, 11))
sa.Index("match_feature_substr_substr1_birth_year_surname_idx", sa.func.substr(_feature.id_body, 1, 6),
         sa.func.substr(_feature.id_body, 15, 3), _feature.birth_year, _feature.surname)

#: The scored links between records.
mpi_match_edge = sa.Table(
    "match_edge", metadata,
    sa.Column("record_key_l", TEXT, primary_key=True),
    sa.Column("record_key_r", TEXT, primary_key=True),
    sa.Column("match_probability", DOUBLE, nullable=False),
    sa.Column("match_weight", DOUBLE, nullable=False),
    sa.Column("evidence", JSONB, nullable=False),
    sa.Index("match_edge_record_key_r_idx", "record_key_r"),
    schema=SCHEMA,
)

#: The term-frequency snapshot scores are computed with.
mpi_term_frequency = sa.Table(
    "term_frequency", metadata,
    sa.Column("column_name", TEXT, primary_key=True),
    sa.Column("value", TEXT, primary_key=True),
    sa.Column("tf", DOUBLE, nullable=False),
    schema=SCHEMA,
)

#: The model and frequencies the stored scores were computed with (one row).
mpi_model_state = sa.Table(
    "model_state", metadata,
    sa.Column("singleton", sa.Boolean, primary_key=True),
    sa.Column("model_version", TEXT, nullable=False),
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("frequencies_at", TIMESTAMP, nullable=False),
    sa.CheckConstraint("singleton", name="model_state_singleton_check"),
    schema=SCHEMA,
)

#: The provenance of every golden value: which source record it came from, by which rule.
mpi_golden_value = sa.Table(
    "golden_value", metadata,
    sa.Column("master_id", TEXT, primary_key=True),
    sa.Column("field", TEXT, primary_key=True),
    sa.Column("value", TEXT),
    sa.Column("source", TEXT),
    sa.Column("source_record_id", TEXT),
    sa.Column("loaded_at", TIMESTAMP),
    sa.Column("rule", TEXT, nullable=False),
    schema=SCHEMA,
)

#: The values sources disagree on, per master id and field.
mpi_golden_conflict = sa.Table(
    "golden_conflict", metadata,
    sa.Column("master_id", TEXT, primary_key=True),
    sa.Column("field", TEXT, primary_key=True),
    sa.Column("value", TEXT, primary_key=True),
    sa.Column("sources", TEXT_ARRAY, nullable=False),
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("chosen", sa.Boolean, nullable=False),
    schema=SCHEMA,
)

#: What the golden records were last built with: a fingerprint of the survivorship rules and the registry.
mpi_golden_basis = sa.Table(
    "golden_basis", metadata,
    sa.Column("singleton", sa.Boolean, primary_key=True),
    sa.Column("fingerprint", TEXT, nullable=False),
    sa.Column("built_at", TIMESTAMP, nullable=False),
    sa.CheckConstraint("singleton", name="golden_basis_singleton_check"),
    schema=SCHEMA,
)

TABLES = (mpi_master, mpi_crosswalk, mpi_golden, mpi_review_pair, mpi_decision, mpi_link_run, mpi_master_event,
          mpi_match_feature, mpi_match_edge, mpi_term_frequency, mpi_model_state, mpi_golden_value,
          mpi_golden_conflict, mpi_golden_basis)

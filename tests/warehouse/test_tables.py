"""warehouse.tables describes the migrated warehouse exactly: tables, columns, types, nullability, keys,
indexes, check constraints and the views' columns.

Alembic's autogenerate comparison (``compare_metadata``) runs between the Table definitions and the
database the session migrated; the views, which the comparison does not see, are reflected and compared
column by column. A second test shows the comparison notices a change (a dropped column, a changed type, a
dropped index), so that the first one can fail.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from warehouse import tables


def _include_name(name, type_, parent_names) -> bool:
    if type_ == "schema":
        return name in tables.SCHEMAS  # not public (alembic_version) nor the department schemas
    return True


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    # views are compared below: autogenerate reflects tables only and would report them as missing
    return not (type_ == "table" and isinstance(obj, sa.Table) and tables.is_view(obj))


def _differences(conn: sa.Connection, metadata: sa.MetaData = tables.metadata) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={
        "include_schemas": True, "include_name": _include_name, "include_object": _include_object,
        "compare_type": True})
    return compare_metadata(context, metadata)


def _type_sql(type_: sa.types.TypeEngine) -> str:
    return type_.compile(dialect=postgresql.dialect())


def test_tables_match_the_migrated_warehouse(engine):
    with engine.connect() as conn:
        differences = _differences(conn)
    assert differences == [], "warehouse.tables and the migrations disagree:\n" + "\n".join(map(str, differences))


def test_every_layer_table_and_view_is_described(engine):
    inspector = sa.inspect(engine)
    in_database = {f"{schema}.{name}" for schema in tables.SCHEMAS
                   for name in inspector.get_table_names(schema) + inspector.get_view_names(schema)}
    assert set(tables.metadata.tables) == in_database
    assert len(in_database) == 46
    for table in tables.metadata.tables.values():
        listed = inspector.get_view_names(table.schema) if tables.is_view(table) else inspector.get_table_names(
            table.schema)
        assert table.name in listed, f"{table.fullname}: {'a view' if tables.is_view(table) else 'a table'} here"


def test_views_show_the_described_columns(engine):
    inspector = sa.inspect(engine)
    for view in tables.views():
        reflected = [(c["name"], _type_sql(c["type"])) for c in inspector.get_columns(view.name, view.schema)]
        described = [(c.name, _type_sql(c.type)) for c in view.columns]
        assert reflected == described, view.fullname


def test_check_constraints_and_sequences_are_named_as_migrated(engine):
    inspector = sa.inspect(engine)
    for table in tables.metadata.tables.values():
        if tables.is_view(table):
            continue
        migrated = {c["name"] for c in inspector.get_check_constraints(table.name, table.schema)}
        described = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
        assert described == migrated, table.fullname
    assert tables.mpi_master_id_seq.name in inspector.get_sequence_names(tables.mpi_master_id_seq.schema)


def test_partial_indexes_have_the_migrated_predicate(engine):
    """The autogenerate comparison ignores an index's WHERE clause: compare it here."""
    inspector = sa.inspect(engine)
    for table in tables.metadata.tables.values():
        if tables.is_view(table):
            continue
        migrated = {i["name"]: i["dialect_options"].get("postgresql_where")
                    for i in inspector.get_indexes(table.name, table.schema)}
        for index in table.indexes:
            where = index.dialect_options["postgresql"]["where"]
            described = None if where is None else "(" + str(where.compile(
                dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})).replace(
                f"{table.fullname}.", "") + ")"
            assert migrated[index.name] == described, index.name


@pytest.mark.parametrize("change, expected", [
    ("ALTER TABLE std.resident DROP COLUMN phone_type", ("add_column", "phone_type")),
    ("ALTER TABLE mpi.golden ALTER COLUMN sex TYPE integer", ("modify_type", "sex")),
    ("ALTER TABLE raw.quarantine ALTER COLUMN detail DROP NOT NULL", ("modify_nullable", "detail")),
    ("DROP INDEX mpi.crosswalk_master_id_idx", ("add_index", "crosswalk_master_id_idx")),
    ("ALTER TABLE audit.access_log ADD COLUMN note text", ("remove_column", "note")),
], ids=["dropped_column", "changed_type", "nullable", "dropped_index", "extra_column"])
def test_the_comparison_notices_a_change(engine, change, expected):
    """The comparison can fail: a change to the migrated schema (rolled back afterwards) is reported."""
    with engine.connect() as conn, conn.begin() as transaction:
        conn.execute(sa.text("SET LOCAL lock_timeout = '20s'"))
        conn.execute(sa.text(change))
        differences = _differences(conn)
        transaction.rollback()
    flat = [d for group in differences for d in (group if isinstance(group, list) else [group])]
    kinds = {(d[0], _subject(d)) for d in flat}
    assert expected in kinds, differences


def _subject(difference: tuple) -> str | None:
    """The column or index a difference is about (``modify_*``: kind, schema, table, column, …)."""
    if difference[0].startswith("modify_"):
        return difference[3]
    return next((part.name for part in difference[1:] if isinstance(part, sa.Column | sa.Index)), None)

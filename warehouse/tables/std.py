"""Layer std: canonical resident records, the raw value beside the clean one, a status code per field."""

from __future__ import annotations

import sqlalchemy as sa

from warehouse.tables.base import TEXT, TIMESTAMP, metadata

SCHEMA = "std"

#: One standardized record per (source, source_record_id), with its provenance (raw record, load batch).
std_resident = sa.Table(
    "resident", metadata,
    sa.Column("source", TEXT, primary_key=True),
    sa.Column("source_record_id", TEXT, primary_key=True),
    sa.Column("raw_record_id", sa.BigInteger, sa.ForeignKey("raw.record.record_id"), nullable=False),
    sa.Column("batch_id", sa.BigInteger, nullable=False),
    sa.Column("program", TEXT),
    sa.Column("name_raw", TEXT),
    sa.Column("name", TEXT),
    sa.Column("name_key", TEXT),
    sa.Column("name_status", TEXT, nullable=False),
    sa.Column("id_number_raw", TEXT),
    sa.Column("id_number", TEXT),
    sa.Column("id_number_status", TEXT, nullable=False),
    sa.Column("id_birth_date", sa.Date),
    sa.Column("id_sex", sa.SmallInteger),
    sa.Column("id_region", TEXT),
    sa.Column("sex_raw", TEXT),
    sa.Column("birth_date_raw", TEXT),
    sa.Column("address_raw", TEXT),
    sa.Column("phone_raw", TEXT),
    sa.Column("status_raw", TEXT),
    sa.Column("standardized_at", TIMESTAMP, nullable=False),
    sa.Column("name_pinyin", TEXT),
    sa.Column("name_surname", TEXT),
    sa.Column("sex", sa.SmallInteger),
    sa.Column("sex_status", TEXT),
    sa.Column("birth_date", sa.Date),
    sa.Column("birth_date_status", TEXT),
    sa.Column("phone", TEXT),
    sa.Column("phone_type", TEXT),
    sa.Column("phone_status", TEXT),
    sa.Column("address_province", TEXT),
    sa.Column("address_city", TEXT),
    sa.Column("address_county", TEXT),
    sa.Column("address_town", TEXT),
    sa.Column("address_village", TEXT),
    sa.Column("address_group", TEXT),
    sa.Column("address_house_no", TEXT),
    sa.Column("address_county_code", TEXT),
    sa.Column("address_key", TEXT),
    sa.Column("address_status", TEXT),
    sa.Column("status_date_raw", TEXT),
    sa.Column("status_date", sa.Date),
    sa.Column("status_date_status", TEXT),
    schema=SCHEMA,
)
sa.Index("resident_id_number_idx", std_resident.c.id_number, postgresql_where=std_resident.c.id_number.isnot(None))

TABLES = (std_resident,)

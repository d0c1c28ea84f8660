"""Standardized sex, dates, phones, addresses and name pinyin in std.resident.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = {
    "name_pinyin": "text", "name_surname": "text",
    "sex": "smallint", "sex_status": "text",
    "birth_date": "date", "birth_date_status": "text",
    "phone": "text", "phone_type": "text", "phone_status": "text",
    "address_province": "text", "address_city": "text", "address_county": "text", "address_town": "text",
    "address_village": "text", "address_group": "text", "address_house_no": "text",
    "address_county_code": "text", "address_key": "text", "address_status": "text",
    "status_date_raw": "text", "status_date": "date", "status_date_status": "text",
}


def upgrade() -> None:
    op.execute("ALTER TABLE std.resident " + ", ".join(f"ADD COLUMN {c} {t}" for c, t in COLUMNS.items()))


def downgrade() -> None:
    op.execute("ALTER TABLE std.resident " + ", ".join(f"DROP COLUMN {c}" for c in COLUMNS))

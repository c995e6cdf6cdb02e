"""Checkout: a merchant's name and city in Latin characters, for its QR codes.

- `merchants.name_latin`, `merchants.city_latin`: the Latin form of `display_name` and
  `city` that an EMV QR code's merchant name and city (tags 59 and 60, printable ASCII
  only) carry; null when the shown name or city is printable ASCII already, as every
  merchant onboarded before this revision has (onboarding did not check it then).
- `merchants.name_language`: the ISO 639-1 code (lower case) of the language
  `display_name` and `city` are written in, for the code's language template (tag 64);
  null when neither needs a Latin form.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("merchants", sa.Column("name_latin", sa.String(25), nullable=True))
    op.add_column("merchants", sa.Column("city_latin", sa.String(15), nullable=True))
    op.add_column("merchants", sa.Column("name_language", sa.String(2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("name_language")
        batch.drop_column("city_latin")
        batch.drop_column("name_latin")

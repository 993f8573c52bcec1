"""managed signing: signing roots and profiles, signing configurations, image signing statuses

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_roots",
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "region"),
    )
    op.create_table(
        "signing_profiles",
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("profile_version", sa.String(length=10), nullable=False),
        sa.Column("platform_id", sa.String(length=64), nullable=False),
        sa.Column("validity_value", sa.Integer(), nullable=False),
        sa.Column("validity_type", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("signing_parameters", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("canceled_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("account_id", "region", "name"),
    )
    op.create_table(
        "signing_configurations",
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "region"),
    )
    op.create_table(
        "image_signing_statuses",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("profile_arn", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", sa.Float(), nullable=True),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.Column("signature_digest", sa.String(length=160), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "profile_arn"),
    )
    op.create_index(
        "ix_image_signing_statuses_status", "image_signing_statuses", ["status", "requested_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_image_signing_statuses_status", table_name="image_signing_statuses")
    op.drop_table("image_signing_statuses")
    op.drop_table("signing_configurations")
    op.drop_table("signing_profiles")
    op.drop_table("signing_roots")

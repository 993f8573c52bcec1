"""account settings and pull-time update exclusions

PutAccountSetting's values per registry, and the principals whose pulls leave
lastRecordedPullTime alone. Registries that already had a registry policy keep the policy scope
they were running under, V1 (as ECR left accounts created before V2 on V1); every other registry
reads the default, V2.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_settings",
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "region", "name"),
    )
    op.create_table(
        "pull_time_exclusions",
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("principal_arn", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "region", "principal_arn"),
    )
    op.create_index("ix_pull_time_exclusions_principal", "pull_time_exclusions", ["principal_arn"])
    op.execute(
        "INSERT INTO account_settings (account_id, region, name, value, updated_at) "
        "SELECT account_id, region, 'REGISTRY_POLICY_SCOPE', 'V1', updated_at FROM registry_policies"
    )


def downgrade() -> None:
    op.drop_index("ix_pull_time_exclusions_principal", table_name="pull_time_exclusions")
    op.drop_table("pull_time_exclusions")
    op.drop_table("account_settings")

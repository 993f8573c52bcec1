"""pull through cache: rules and upstream secrets

Pull through cache rules per registry, and the Secrets Manager secrets that hold upstream
credentials (values sealed with a key kept outside the database).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pull_through_cache_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("ecr_repository_prefix", sa.String(length=30), nullable=False),
        sa.Column("upstream_registry_url", sa.String(length=512), nullable=False),
        sa.Column("upstream_registry", sa.String(length=32), nullable=False),
        sa.Column("upstream_repository_prefix", sa.String(length=30), nullable=True),
        sa.Column("credential_arn", sa.String(length=612), nullable=True),
        sa.Column("custom_role_arn", sa.String(length=2048), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "region", "ecr_repository_prefix", name="uq_pull_through_cache_rules_prefix"),
    )
    op.create_table(
        "secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("arn", sa.String(length=700), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("kms_key_id", sa.String(length=2048), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_changed_at", sa.Float(), nullable=False),
        sa.Column("last_accessed_at", sa.Float(), nullable=True),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("arn"),
        sa.UniqueConstraint("account_id", "region", "name", name="uq_secrets_name"),
    )
    op.create_table(
        "secret_versions",
        sa.Column("secret_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.String(length=64), nullable=False),
        sa.Column("stages", sa.Text(), nullable=False),
        sa.Column("is_binary", sa.Boolean(), nullable=False),
        sa.Column("sealed_value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_accessed_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["secret_id"], ["secrets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("secret_id", "version_id"),
    )


def downgrade() -> None:
    op.drop_table("secret_versions")
    op.drop_table("secrets")
    op.drop_table("pull_through_cache_rules")

"""pull through cache: what was fetched from upstream registries, and when

Manifests fetched from an upstream that are not stored as images yet (their blobs arrive as
clients ask for them), when each cached tag was last checked against its upstream, and which
blob fetches are under way (one per digest across every process and node).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pull_through_manifests",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("fetched_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repository_id", "digest"),
    )
    op.create_table(
        "pull_through_tags",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("checked_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repository_id", "tag"),
    )
    op.create_table(
        "pull_through_fetches",
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("pull_through_fetches")
    op.drop_table("pull_through_tags")
    op.drop_table("pull_through_manifests")

"""archive storage class: where archived images and their layers stand

Each image's ECR imageStatus (ACTIVE, ARCHIVED, ACTIVATING) with when it was last archived and
restored, and each blob's location: "hot" in the blob store, or "archive" in the archive tier.
Every existing image is ACTIVE and every existing blob hot.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="ACTIVE"))
        batch.add_column(sa.Column("archived_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("activated_at", sa.Float(), nullable=True))
    # Partial: only the few images that are not ACTIVE (see store/schema.py).
    not_active = sa.text("status != 'ACTIVE'")
    op.create_index("ix_images_not_active", "images", ["status"], sqlite_where=not_active, postgresql_where=not_active)
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("location", sa.String(length=16), nullable=False, server_default="hot"))
    not_hot = sa.text("location != 'hot'")
    op.create_index("ix_blobs_not_hot", "blobs", ["location"], sqlite_where=not_hot, postgresql_where=not_hot)


def downgrade() -> None:
    op.drop_index("ix_blobs_not_hot", table_name="blobs")
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("location")
    op.drop_index("ix_images_not_active", table_name="images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("activated_at")
        batch.drop_column("archived_at")
        batch.drop_column("status")

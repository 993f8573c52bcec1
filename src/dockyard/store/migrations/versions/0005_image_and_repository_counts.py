"""counters for the image and repository limits

Every push checked the images-per-repository limit with a count of the repository's images, and
every CreateRepository the repositories-per-registry limit with a count of the registry's
repositories, both inside the write lock: the cost grew with the data (2-3 ms at 70,000 images)
and every other write waited for it. The counts are now kept in the same transactions that add
and remove images and repositories, and read by primary key.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("image_count", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE repositories SET image_count = "
        "(SELECT count(*) FROM images WHERE images.repository_id = repositories.id)"
    )
    op.create_table(
        "registry_counts",
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("repository_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "region"),
    )
    op.execute(
        "INSERT INTO registry_counts (account_id, region, repository_count) "
        "SELECT account_id, region, count(*) FROM repositories GROUP BY account_id, region"
    )


def downgrade() -> None:
    op.drop_table("registry_counts")
    with op.batch_alter_table("repositories") as batch:
        batch.drop_column("image_count")

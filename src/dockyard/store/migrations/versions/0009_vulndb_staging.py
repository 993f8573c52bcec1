"""staging tables for swapping in an ecosystem's vulnerability data

An update wrote a whole ecosystem's advisories inside one write transaction, holding the write lock
(and every push behind it) for as long as a large archive took to store. Its rows are now written
to these tables in small transactions first, and one short transaction moves them into place.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vulndb_staged_vulnerabilities",
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("staged_at", sa.Float(), nullable=False),
        sa.Column("modified", sa.Float(), nullable=False),
        sa.Column("published", sa.Float(), nullable=True),
        sa.Column("withdrawn", sa.Float(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("aliases", sa.Text(), nullable=True),
        sa.Column("upstream", sa.Text(), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("cvss2_vector", sa.String(length=255), nullable=True),
        sa.Column("cvss2_score", sa.String(length=8), nullable=True),
        sa.Column("cvss3_vector", sa.String(length=255), nullable=True),
        sa.Column("cvss3_score", sa.String(length=8), nullable=True),
        sa.Column("uri", sa.String(length=2048), nullable=True),
        sa.Column("imported_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("stage", "id"),
    )
    op.create_table(
        "vulndb_staged_packages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("vulnerability_id", sa.String(length=255), nullable=False),
        sa.Column("ecosystem", sa.String(length=128), nullable=False),
        sa.Column("ecosystem_base", sa.String(length=64), nullable=False),
        sa.Column("ecosystem_release", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("ranges", sa.Text(), nullable=False),
        sa.Column("versions", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_vulndb_staged_packages_stage", "vulndb_staged_packages", ["stage"])


def downgrade() -> None:
    op.drop_index("ix_vulndb_staged_packages_stage", table_name="vulndb_staged_packages")
    op.drop_table("vulndb_staged_packages")
    op.drop_table("vulndb_staged_vulnerabilities")

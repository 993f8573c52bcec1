"""where each vulnerability ecosystem's data came from, and when

`dockyard vulndb update` downloads OSV's per-ecosystem archives conditionally (ETag, Last-Modified)
and reports how old each ecosystem's data is. Ecosystems imported before this revision are
recorded as imported when their newest advisory was.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vulndb_sources",
        sa.Column("ecosystem", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(length=255), nullable=True),
        sa.Column("last_modified", sa.String(length=64), nullable=True),
        sa.Column("fetched_at", sa.Float(), nullable=False),
        sa.Column("changed_at", sa.Float(), nullable=False),
        sa.Column("advisories", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("ecosystem"),
    )
    op.execute(
        "INSERT INTO vulndb_sources (ecosystem, source, fetched_at, changed_at, advisories) "
        "SELECT p.ecosystem_base, 'import', max(v.imported_at), max(v.imported_at), "
        "count(DISTINCT p.vulnerability_id) "
        "FROM vulnerability_packages p JOIN vulnerabilities v ON v.id = p.vulnerability_id "
        "GROUP BY p.ecosystem_base"
    )


def downgrade() -> None:
    op.drop_table("vulndb_sources")

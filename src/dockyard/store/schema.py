"""The metadata schema, as SQLAlchemy Core tables. Migrations in store/migrations create it.

Timestamps are epoch seconds (float): portable across SQLite and PostgreSQL, and what the AWS
JSON protocol sends anyway."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Server-wide values every node must share (the token signing secret, for one).
server_values = Table(
    "server_values",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("alias", String(63)),
    Column("created_at", Float, nullable=False),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(128), primary_key=True),
    # SigV4 needs the secret itself to recompute signatures, as AWS does.
    Column("secret_access_key", String(128), nullable=False),
    Column("account_id", String(12), ForeignKey("accounts.account_id"), nullable=False),
    # NULL for the account's root user.
    Column("user_name", String(64)),
    Column("status", String(16), nullable=False, default="Active"),
    Column("created_at", Float, nullable=False),
)

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("image_tag_mutability", String(32), nullable=False, default="MUTABLE"),
    Column("tag_mutability_exclusions", Text),
    Column("scan_on_push", Boolean, nullable=False, default=False),
    Column("encryption_type", String(16), nullable=False, default="AES256"),
    Column("kms_key", String(2048)),
    Column("policy_text", Text),
    Column("lifecycle_policy_text", Text),
    UniqueConstraint("account_id", "region", "name", name="uq_repositories_name"),
)

repository_tags = Table(
    "repository_tags",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

# Content-addressed bytes, stored once however many repositories use them.
blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(160), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)

# A repository may serve a blob only once it was pushed or mounted into it.
repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id"), primary_key=True),
    Column("digest", String(160), ForeignKey("blobs.digest"), primary_key=True),
    Column("linked_at", Float, nullable=False),
    Index("ix_repository_blobs_digest", "digest"),
)

images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository_id", Integer, ForeignKey("repositories.id"), nullable=False),
    Column("digest", String(160), nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255)),
    Column("subject_digest", String(160)),
    Column("size", BigInteger, nullable=False),
    Column("manifest", LargeBinary, nullable=False),
    Column("pushed_at", Float, nullable=False),
    Column("last_pull_at", Float),
    UniqueConstraint("repository_id", "digest", name="uq_images_digest"),
    Index("ix_images_subject", "repository_id", "subject_digest"),
    Index("ix_images_pushed", "repository_id", "pushed_at"),
)

# What an image's manifest refers to: blobs (config, layers) and child manifests (index entries).
image_references = Table(
    "image_references",
    metadata,
    Column("image_id", Integer, ForeignKey("images.id"), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("kind", String(8), nullable=False),  # "blob" or "manifest"
    Index("ix_image_references_digest", "digest"),
)

tags = Table(
    "tags",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id"), nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_tags_image", "image_id"),
)

# Upload sessions are rows so that any node can continue an upload.
uploads = Table(
    "uploads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id"), nullable=False),
    Column("size", BigInteger, nullable=False, default=0),
    Column("parts", Integer, nullable=False, default=0),
    Column("last_part_size", BigInteger),
    Column("started_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

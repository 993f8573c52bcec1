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
    text,
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

# IAM identities. Names are unique per account whatever their case, as in IAM: name_key is the
# lower-cased name. unique_id is IAM's AIDA.../AGPA.../AROA.../ANPA... identifier.
iam_users = Table(
    "iam_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), ForeignKey("accounts.account_id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("name_key", String(64), nullable=False),
    Column("path", String(512), nullable=False),
    Column("unique_id", String(32), nullable=False, unique=True),
    Column("tags", Text),  # JSON list of {"Key", "Value"}
    Column("created_at", Float, nullable=False),
    UniqueConstraint("account_id", "name_key", name="uq_iam_users_name"),
)

iam_groups = Table(
    "iam_groups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), ForeignKey("accounts.account_id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("name_key", String(128), nullable=False),
    Column("path", String(512), nullable=False),
    Column("unique_id", String(32), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("account_id", "name_key", name="uq_iam_groups_name"),
)

iam_group_members = Table(
    "iam_group_members",
    metadata,
    Column("group_id", Integer, ForeignKey("iam_groups.id"), primary_key=True),
    Column("user_id", Integer, ForeignKey("iam_users.id"), primary_key=True),
    Index("ix_iam_group_members_user", "user_id"),
)

iam_roles = Table(
    "iam_roles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), ForeignKey("accounts.account_id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("name_key", String(64), nullable=False),
    Column("path", String(512), nullable=False),
    Column("unique_id", String(32), nullable=False, unique=True),
    Column("trust_policy", Text, nullable=False),
    Column("description", String(1000)),
    Column("max_session_duration", Integer, nullable=False, default=3600),
    Column("tags", Text),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("account_id", "name_key", name="uq_iam_roles_name"),
)

# Customer managed policies; AWS managed ones live in code (dockyard.policy.managed).
iam_policies = Table(
    "iam_policies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), ForeignKey("accounts.account_id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("name_key", String(128), nullable=False),
    Column("path", String(512), nullable=False),
    Column("arn", String(2048), nullable=False, unique=True),
    Column("unique_id", String(32), nullable=False, unique=True),
    Column("description", String(1000)),
    Column("default_version", String(16), nullable=False),
    Column("next_version", Integer, nullable=False),
    Column("tags", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("account_id", "name_key", name="uq_iam_policies_name"),
)

iam_policy_versions = Table(
    "iam_policy_versions",
    metadata,
    Column("policy_id", Integer, ForeignKey("iam_policies.id"), primary_key=True),
    Column("version_id", String(16), primary_key=True),
    Column("document", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Managed policies (AWS or customer, by ARN) attached to a user, group or role.
iam_attachments = Table(
    "iam_attachments",
    metadata,
    Column("principal_kind", String(8), primary_key=True),  # user, group, role
    Column("principal_id", Integer, primary_key=True),
    Column("policy_arn", String(2048), primary_key=True),
    # The principal's account: AttachmentCount of an AWS managed policy is counted per account.
    Column("account_id", String(12), nullable=False),
    Column("attached_at", Float, nullable=False),
    Index("ix_iam_attachments_policy", "policy_arn", "account_id"),
)

iam_inline_policies = Table(
    "iam_inline_policies",
    metadata,
    Column("principal_kind", String(8), primary_key=True),
    Column("principal_id", Integer, primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("document", Text, nullable=False),
)

# Temporary credentials from STS (AssumeRole, GetSessionToken). Only a hash of the session token
# is kept: the token is a bearer secret, and comparing hashes is all verification needs.
sts_sessions = Table(
    "sts_sessions",
    metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column("secret_access_key", String(128), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("account_id", String(12), ForeignKey("accounts.account_id"), nullable=False),
    Column("kind", String(16), nullable=False),  # assumed-role, session-token
    # session-token: the user (NULL for the root user); assumed-role: the role and session name.
    Column("user_name", String(64)),
    Column("role_id", Integer),
    Column("session_name", String(64)),
    Column("session_policy", Text),
    Column("source_arn", String(2048), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_sts_sessions_expires", "expires_at"),
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
    # How many images the repository holds, kept by core.images in the transaction that adds or
    # removes one: the per-repository limit is checked on every push, and counting rows costs
    # time that grows with the repository, inside the write lock.
    Column("image_count", Integer, nullable=False, server_default="0"),
    UniqueConstraint("account_id", "region", "name", name="uq_repositories_name"),
)

# How many repositories each registry (account and region) holds, kept by core.repositories in
# the transaction that creates or deletes one, for the same reason as repositories.image_count.
registry_counts = Table(
    "registry_counts",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("repository_count", Integer, nullable=False),
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
    # When an upload last claimed this digest, before moving its bytes into place: garbage
    # collection spares blobs claimed within its grace period (NULL: never since created_at).
    Column("touched_at", Float),
    # Where the bytes are authoritative (core/registry/archive.py): "hot" (the blob store), or
    # "archive" (an archive directory, or a colder S3 storage class). The mover copies before it
    # flips a location and deletes the old copy only after: a blob is never missing from both.
    Column("location", String(16), nullable=False, server_default="hot"),
)
# Only the few blobs on the archive tier.
NOT_HOT = text("location != 'hot'")
Index("ix_blobs_not_hot", blobs.c.location, sqlite_where=NOT_HOT, postgresql_where=NOT_HOT)

# Lifecycle policy state per repository (the policy text itself is repositories.lifecycle_policy_text):
# when the policy was last applied, and the latest StartLifecyclePolicyPreview's result.
repository_lifecycle = Table(
    "repository_lifecycle",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id"), primary_key=True),
    Column("evaluated_at", Float),
    Column("preview_policy_text", Text),
    Column("preview_status", String(16)),
    Column("preview_results", Text),  # JSON list of LifecyclePolicyPreviewResult
    Column("preview_started_at", Float),
)

# Console sessions signed out before they expire: the cookie alone would still pass its signature
# check, so a copy of it must be refused on any node. Rows outlive their session by nothing.
console_sign_outs = Table(
    "console_sign_outs",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False),
)

# Background jobs that must run on one node at a time (garbage collection, lifecycle) hold a lease.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
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
    # ECR's imageStatus (core/registry/archive.py): ACTIVE, ARCHIVED, or ACTIVATING while a
    # restore brings the layers back.
    Column("status", String(16), nullable=False, server_default="ACTIVE"),
    Column("archived_at", Float),
    Column("activated_at", Float),
    UniqueConstraint("repository_id", "digest", name="uq_images_digest"),
    Index("ix_images_subject", "repository_id", "subject_digest"),
    Index("ix_images_pushed", "repository_id", "pushed_at"),
    Index("ix_images_repository_order", "repository_id", "id"),
)
# Only the few images that are not ACTIVE: the archive mover finds its work by it, and no listing
# of a repository's images (which filters on status = ?) is tempted away from its own index.
NOT_ACTIVE = text("status != 'ACTIVE'")
Index("ix_images_not_active", images.c.status, sqlite_where=NOT_ACTIVE, postgresql_where=NOT_ACTIVE)

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
    Column("name", String(300), primary_key=True),  # ECR tags are up to 300 characters
    Column("image_id", Integer, ForeignKey("images.id"), nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_tags_image", "image_id"),
)

# Upload sessions are rows so that any node can continue an upload. `size` and `writer` are
# where the last acknowledged append left it (see dockyard.core.registry.uploads).
uploads = Table(
    "uploads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id"), nullable=False),
    Column("size", BigInteger, nullable=False, default=0),
    Column("parts", Integer, nullable=False, default=0),
    Column("last_part_size", BigInteger),
    Column("writer", String(32)),
    Column("started_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One registry policy per registry (account and region), as PutRegistryPolicy stores it.
registry_policies = Table(
    "registry_policies",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("policy_text", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Repository creation templates: settings for repositories Dockyard creates on the caller's behalf
# (create on push). List-valued settings are JSON text.
creation_templates = Table(
    "creation_templates",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("prefix", String(256), primary_key=True),
    Column("description", String(256)),
    Column("encryption_type", String(16), nullable=False, default="AES256"),
    Column("kms_key", String(2048)),
    Column("resource_tags", Text, nullable=False, default="[]"),
    Column("image_tag_mutability", String(32), nullable=False, default="MUTABLE"),
    Column("tag_mutability_exclusions", Text),
    Column("repository_policy", Text),
    Column("lifecycle_policy", Text),
    Column("applied_for", Text, nullable=False),
    Column("custom_role_arn", String(2048)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Image scanning (core/scans.py, workers/scans.py). One scan per image: the latest, whatever started
# it; rows go with their image (ON DELETE CASCADE), so deleting images needs no knowledge of scans.
image_scans = Table(
    "image_scans",
    metadata,
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("repository_id", Integer, nullable=False),
    Column("status", String(32), nullable=False),  # IN_PROGRESS, COMPLETE, FAILED
    Column("description", Text),
    Column("trigger", String(16), nullable=False),  # MANUAL, SCAN_ON_PUSH, CONTINUOUS_SCAN
    # When this scan was asked for: the once-per-24-hours quota counts from here.
    Column("requested_at", Float, nullable=False),
    # The node working on it, and when it last said so (a stale claim is taken over).
    Column("claimed_by", String(64)),
    Column("claimed_at", Float),
    Column("completed_at", Float),
    Column("source_updated_at", Float),
    Column("severity_counts", Text),  # JSON {severity: count}
    Column("inventory", Text),  # JSON: the OS and packages found, for re-matching and SBOMs
    Index("ix_image_scans_status", "status"),
    Index("ix_image_scans_repository", "repository_id"),
)

image_scan_findings = Table(
    "image_scan_findings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("image_id", Integer, ForeignKey("image_scans.image_id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", String(255), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("description", Text),
    Column("uri", String(2048)),
    Column("package_name", String(512)),
    Column("package_version", String(255)),
    Column("attributes", Text),  # JSON [[key, value], ...]
    Index("ix_image_scan_findings_image", "image_id", "position"),
)

# PutRegistryScanningConfiguration, per registry (account and region); rules are JSON.
registry_scanning_configurations = Table(
    "registry_scanning_configurations",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("scan_type", String(16), nullable=False),
    Column("rules", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# The pull gate of a registry: refuse images whose latest scan found `severity` or worse.
scan_gates = Table(
    "scan_gates",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("severity", String(16), nullable=False),
    Column("updated_at", Float, nullable=False),
)

scan_gate_exemptions = Table(
    "scan_gate_exemptions",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("reason", Text),
    Column("created_at", Float, nullable=False),
)

# The local vulnerability database, imported from OSV data (dockyard vulndb import).
vulnerabilities = Table(
    "vulnerabilities",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("modified", Float, nullable=False),
    Column("published", Float),
    Column("withdrawn", Float),
    Column("summary", Text),
    Column("details", Text),
    Column("aliases", Text),  # JSON list
    Column("upstream", Text),  # JSON list
    Column("severity", String(16)),  # from the record's own ratings or CVSS
    Column("cvss2_vector", String(255)),
    Column("cvss2_score", String(8)),
    Column("cvss3_vector", String(255)),
    Column("cvss3_score", String(8)),
    Column("uri", String(2048)),
    Column("imported_at", Float, nullable=False),
)

vulnerability_packages = Table(
    "vulnerability_packages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("vulnerability_id", String(255), ForeignKey("vulnerabilities.id", ondelete="CASCADE"), nullable=False),
    Column("ecosystem", String(128), nullable=False),
    Column("ecosystem_base", String(64), nullable=False),
    Column("ecosystem_release", String(128), nullable=False),
    Column("name", String(512), nullable=False),
    Column("ranges", Text, nullable=False),  # JSON list of {"type", "events"}
    Column("versions", Text, nullable=False),  # JSON list
    Column("severity", String(16)),  # the distribution's rating for this package
    Index("ix_vulnerability_packages_name", "ecosystem_base", "name"),
    Index("ix_vulnerability_packages_vulnerability", "vulnerability_id"),
)

vulndb_imports = Table(
    "vulndb_imports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("imported_at", Float, nullable=False),
    Column("records", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
)

# Where each OSV ecosystem's advisories came from and when (dockyard vulndb update / import): the
# validators that make the next download conditional, and how old the data is.
vulndb_sources = Table(
    "vulndb_sources",
    metadata,
    Column("ecosystem", String(64), primary_key=True),  # OSV's name, without a release: "Debian", "Red Hat"
    Column("source", Text, nullable=False),  # the archive's URL, or the imported path
    Column("etag", String(255)),
    Column("last_modified", String(64)),
    Column("fetched_at", Float, nullable=False),  # the last successful update (downloaded or unchanged)
    Column("changed_at", Float, nullable=False),  # when these advisories were swapped in
    Column("advisories", Integer, nullable=False),
    Column("error", Text),  # why the last attempt failed (the data kept is the previous one)
    Column("error_at", Float),
)

# An ecosystem's next advisories, written in batches before one short transaction swaps them in
# (dockyard.vulndb.store.replace_ecosystem); `stage` names one update's rows. Never read by scans.
vulndb_staged_vulnerabilities = Table(
    "vulndb_staged_vulnerabilities",
    metadata,
    Column("stage", String(64), primary_key=True),
    Column("id", String(255), primary_key=True),
    Column("staged_at", Float, nullable=False),
    Column("modified", Float, nullable=False),
    Column("published", Float),
    Column("withdrawn", Float),
    Column("summary", Text),
    Column("details", Text),
    Column("aliases", Text),
    Column("upstream", Text),
    Column("severity", String(16)),
    Column("cvss2_vector", String(255)),
    Column("cvss2_score", String(8)),
    Column("cvss3_vector", String(255)),
    Column("cvss3_score", String(8)),
    Column("uri", String(2048)),
    Column("imported_at", Float, nullable=False),
)

vulndb_staged_packages = Table(
    "vulndb_staged_packages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stage", String(64), nullable=False),
    Column("vulnerability_id", String(255), nullable=False),
    Column("ecosystem", String(128), nullable=False),
    Column("ecosystem_base", String(64), nullable=False),
    Column("ecosystem_release", String(128), nullable=False),
    Column("name", String(512), nullable=False),
    Column("ranges", Text, nullable=False),
    Column("versions", Text, nullable=False),
    Column("severity", String(16)),
    Index("ix_vulndb_staged_packages_stage", "stage"),
)

# Managed signing (core/signing/). The self-issued root CA of a registry (account and region) and
# AWS Signer signing profiles, each with its own key and certificate. Private keys are stored only
# encrypted (AES-GCM under a key kept in the data directory, never in the database).
signing_roots = Table(
    "signing_roots",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("certificate", Text, nullable=False),  # PEM
    Column("private_key", LargeBinary, nullable=False),  # nonce + AES-GCM ciphertext of PKCS#8 DER
    Column("created_at", Float, nullable=False),
)

signing_profiles = Table(
    "signing_profiles",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("profile_version", String(10), nullable=False),
    Column("platform_id", String(64), nullable=False),
    Column("validity_value", Integer, nullable=False),
    Column("validity_type", String(8), nullable=False),  # DAYS, MONTHS, YEARS
    Column("status", String(16), nullable=False),  # Active, Canceled
    Column("signing_parameters", Text, nullable=False),  # JSON object
    Column("tags", Text, nullable=False),  # JSON object
    Column("certificate", Text, nullable=False),  # PEM, issued by the registry's root
    Column("private_key", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("canceled_at", Float),
)

# PutSigningConfiguration, per registry; rules are JSON as the API takes them.
signing_configurations = Table(
    "signing_configurations",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("rules", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One row per (image, signing profile) a push matched: the job while IN_PROGRESS (claimed by a
# worker under a lease), then its outcome. Rows go with their image.
image_signing_statuses = Table(
    "image_signing_statuses",
    metadata,
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("profile_arn", String(200), primary_key=True),
    Column("status", String(16), nullable=False),  # IN_PROGRESS, COMPLETE, FAILED
    Column("failure_code", String(64)),
    Column("failure_reason", Text),
    Column("requested_at", Float, nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_at", Float),
    Column("completed_at", Float),
    Column("signature_digest", String(160)),
    Index("ix_image_signing_statuses_status", "status", "requested_at"),
)

# PutAccountSetting, per registry (account and region): a row only for a setting someone set;
# a missing row reads as the setting's default (core/operations/account_settings.py).
account_settings = Table(
    "account_settings",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", String(64), nullable=False),
    Column("updated_at", Float, nullable=False),
)

# RegisterPullTimeUpdateExclusion: principals (IAM user or role ARNs) whose pulls from a registry
# leave lastRecordedPullTime alone. Looked up by principal when a caller is resolved.
pull_time_exclusions = Table(
    "pull_time_exclusions",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("principal_arn", String(200), primary_key=True),
    Column("created_at", Float, nullable=False),
    Index("ix_pull_time_exclusions_principal", "principal_arn"),
)

# Pull through cache rules (core/registry/pull_through_rules.py), per registry. A ROOT rule is
# stored with the prefix "ROOT"; upstream_repository_prefix is None when the rule has none (ROOT).
pull_through_cache_rules = Table(
    "pull_through_cache_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("ecr_repository_prefix", String(30), nullable=False),
    Column("upstream_registry_url", String(512), nullable=False),
    Column("upstream_registry", String(32), nullable=False),
    Column("upstream_repository_prefix", String(30)),
    Column("credential_arn", String(612)),
    Column("custom_role_arn", String(2048)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("account_id", "region", "ecr_repository_prefix", name="uq_pull_through_cache_rules_prefix"),
)

# Secrets Manager (core/secrets/): a secret per row, its versions below. Values are sealed with
# AES-GCM under a key file in the data directory (store/sealed.py), never stored in the clear.
# deleted_at is the scheduled deletion date while a secret waits out its recovery window.
secrets = Table(
    "secrets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(512), nullable=False),
    Column("arn", String(700), nullable=False, unique=True),
    Column("description", Text),
    Column("kms_key_id", String(2048)),
    Column("tags", Text, nullable=False),  # JSON list of {"Key", "Value"}
    Column("created_at", Float, nullable=False),
    Column("last_changed_at", Float, nullable=False),
    Column("last_accessed_at", Float),
    Column("deleted_at", Float),
    UniqueConstraint("account_id", "region", "name", name="uq_secrets_name"),
)

secret_versions = Table(
    "secret_versions",
    metadata,
    Column("secret_id", Integer, ForeignKey("secrets.id", ondelete="CASCADE"), primary_key=True),
    Column("version_id", String(64), primary_key=True),
    Column("stages", Text, nullable=False),  # JSON list of staging labels
    Column("is_binary", Boolean, nullable=False),
    Column("sealed_value", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_accessed_at", Float),
)


# Replication (core/replication/). PutReplicationConfiguration, per registry; rules are JSON as
# the API takes them.
replication_configurations = Table(
    "replication_configurations",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("rules", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One row per (pushed image, destination registry) its registry's rules named: the job while
# IN_PROGRESS (claimed by a worker under a lease, retried with backoff after a failure worth
# retrying), then its outcome. `pending` is set again when a push re-tags the image while a job
# runs, so the tags are carried once more. Rows go with their image.
image_replication_statuses = Table(
    "image_replication_statuses",
    metadata,
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("destination_region", String(32), primary_key=True),
    Column("destination_registry", String(12), primary_key=True),
    Column("status", String(16), nullable=False),  # IN_PROGRESS, COMPLETE, FAILED
    Column("failure_code", String(64)),
    Column("failure_reason", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("requested_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("pending", Boolean, nullable=False, server_default="0"),
    Column("claimed_by", String(64)),
    Column("claimed_at", Float),
    Column("completed_at", Float),
    Index("ix_image_replication_statuses_status", "status", "next_attempt_at"),
)

# Pull through cache (core/registry/pull_through.py). Manifests fetched from an upstream and not
# yet stored as images: an image is stored once every blob it names is (clients fetch them on
# demand), and an index stays here, its children fetched only when a client asks for them.
pull_through_manifests = Table(
    "pull_through_manifests",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("media_type", String(255), nullable=False),
    Column("manifest", LargeBinary, nullable=False),
    Column("fetched_at", Float, nullable=False),
)

# Each cached tag: the digest the upstream last gave for it, and when it was last asked (a tag is
# re-checked at most once per interval). A manifest GET by tag reads checked_at in its fastread
# statement, so repositories that are not caches pay one index probe that finds nothing.
pull_through_tags = Table(
    "pull_through_tags",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(128), primary_key=True),
    Column("digest", String(160), nullable=False),
    Column("checked_at", Float, nullable=False),
)

# Blob fetches from upstreams under way: a lease per digest, so that concurrent pulls on any
# process or node share one upstream fetch (the others follow the fetch's upload).
pull_through_fetches = Table(
    "pull_through_fetches",
    metadata,
    Column("digest", String(160), primary_key=True),
    Column("upload_id", String(64), nullable=False),
    # The blob's size, once the upstream said it: followers answer with it.
    Column("size", BigInteger),
    Column("expires_at", Float, nullable=False),
)

"""Settings for one Dockyard process: flags, environment and defaults in one place."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
# OSV's public bucket of per-ecosystem archives (<URL>/<ECOSYSTEM>/all.zip).
DEFAULT_VULNDB_URL = "https://osv-vulnerabilities.storage.googleapis.com"
# DOCKYARD_LIMIT_<NAME> overrides a service limit, e.g. DOCKYARD_LIMIT_IMAGES_PER_REPOSITORY=10000.
LIMIT_ENV_PREFIX = "DOCKYARD_LIMIT_"


@dataclass
class Limits:
    """ECR's service limits (the seed's values); today's ECR allows more, see README."""

    repositories_per_account: int = 1000
    images_per_repository: int = 1000
    layers_per_image: int = 127

    @classmethod
    def from_environment(cls) -> Limits:
        """The seed's limits, each overridden by its DOCKYARD_LIMIT_<NAME> variable when set."""
        values = {}
        for limit in fields(cls):
            raw = os.environ.get(LIMIT_ENV_PREFIX + limit.name.upper())
            if raw is not None:
                values[limit.name] = int(raw)
        return cls(**values)


def _default_rate_limits() -> dict[str, tuple[float, float]]:
    from dockyard.doors.throttle import DEFAULT_RATE_LIMITS

    return dict(DEFAULT_RATE_LIMITS)


@dataclass
class Operations:
    """How the server runs day to day: throttling, the audit trail, garbage collection, lifecycle."""

    # operation -> (requests per second, burst) per account; "*" is every other operation.
    rate_limits: dict[str, tuple[float, float]] = field(default_factory=_default_rate_limits)
    # The audit trail rotates to a new file past this size and drops files older than the retention.
    audit_file_bytes: int = 64 * 1024 * 1024
    audit_retention_days: float = 90.0
    # Read-only events reach the disk within this many seconds; mutating ones before their response ends.
    audit_flush_seconds: float = 1.0
    # Garbage collection spares blobs and layer links younger than the grace period, and removes
    # uploads untouched for longer than the upload expiry. 0 disables the background runs.
    gc_interval_seconds: float = 3600.0
    gc_grace_seconds: float = 3600.0
    upload_expiry_seconds: float = 24 * 3600.0
    lifecycle_interval_seconds: float = 3600.0
    # How often the archive mover looks for layers to move to or from the archive tier (0: never).
    archive_interval_seconds: float = 30.0
    log_level: str = "info"


@dataclass
class Settings:
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 5000
    account_id: str = DEFAULT_ACCOUNT_ID
    region: str = DEFAULT_REGION
    # The host:port clients use to reach the registry; repositoryUri and proxyEndpoint are built from it.
    registry_host: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    database_url: str | None = None
    # Where blobs live: None for <data_dir>/storage, a directory, or s3://bucket/prefix.
    blob_store: str | None = None
    # An S3-compatible endpoint (MinIO, Ceph RGW, R2...); None is AWS S3. Credentials come from the
    # usual AWS sources (AWS_ACCESS_KEY_ID..., a profile, an instance role).
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # Answer blob GETs with a redirect to a presigned object URL instead of streaming through the node.
    s3_redirect: bool = False
    # The archive tier (archive storage class): a directory (another disk) for the filesystem
    # store, None for <data_dir>/archive; on S3 the storage class archived layers move to (one
    # that reads at once, so a restore is a copy).
    archive_dir: str | None = None
    s3_archive_storage_class: str = "GLACIER_IR"
    # Shared state between nodes (throttling buckets); None keeps it in each process.
    redis_url: str | None = None
    # Durable commits (fsync) on SQLite; off only for throwaway benchmarks.
    sync_writes: bool = True
    token_lifetime_seconds: int = 12 * 3600
    # How long a GetDownloadUrlForLayer URL works (ECR's pre-signed layer URLs last an hour).
    layer_url_lifetime_seconds: int = 3600
    # Vulnerability data older than this shows as stale in scan results and the console.
    vulndb_max_age_days: float = 7.0
    # The pull gate on an image that could not be scanned for want of vulnerability data: refuse or allow.
    scan_gate_missing_data: str = "refuse"
    limits: Limits = field(default_factory=Limits.from_environment)
    operations: Operations = field(default_factory=Operations)
    # Where the scheduled vulnerability data refresh downloads from, which ecosystems (empty: every
    # one the scanner reads), and how often (0: never, for air-gapped sites that import archives).
    vulndb_url: str = DEFAULT_VULNDB_URL
    vulndb_ecosystems: list[str] = field(default_factory=list)
    vulndb_update_interval_seconds: float = 86400.0
    # Regions another Dockyard deployment serves (region -> its URL), and the access key
    # ("KEY_ID:SECRET") replication signs in to each with: replication to such a region pushes
    # over the network (core/replication/sites.py) instead of writing this deployment's metadata.
    replication_sites: dict[str, str] = field(default_factory=dict)
    replication_site_credentials: dict[str, str] = field(default_factory=dict)
    # Upstream registries a pull through cache rule may name beyond the public ones ECR supports
    # ("host" or "host:port"; a mirror, a registry inside the network). Tenants choose rules'
    # URLs, so without this list none may make the server reach into the operator's network.
    pull_through_upstreams: list[str] = field(default_factory=list)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def public_host(self) -> str:
        if self.registry_host:
            return self.registry_host
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        return f"{host}:{self.port}"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'metadata.db').resolve()}"

    @property
    def blob_root(self) -> Path:
        return self.data_dir / "storage"

    @property
    def archive_root(self) -> Path:
        return Path(self.archive_dir) if self.archive_dir else self.data_dir / "archive"

    @property
    def audit_dir(self) -> Path:
        return self.data_dir / "audit"


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML config file's settings as {option name: value}: keys are the long option names,
    with dashes or underscores (`database-url = "postgresql+asyncpg://..."`)."""
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    return {key.replace("-", "_"): value for key, value in data.items()}


def env_root_key() -> tuple[str, str] | None:
    key_id = os.environ.get("DOCKYARD_ROOT_ACCESS_KEY_ID")
    secret = os.environ.get("DOCKYARD_ROOT_SECRET_ACCESS_KEY")
    if key_id and secret:
        return key_id, secret
    return None


def settings_to_json(settings: Settings) -> str:
    """Settings for worker processes, which import the app afresh."""
    import json
    from dataclasses import asdict

    data = asdict(settings)
    return json.dumps(data, default=str)


def settings_from_json(text: str) -> Settings:
    import json

    data = json.loads(text)
    data["data_dir"] = Path(data["data_dir"])
    for name in ("tls_cert", "tls_key"):
        data[name] = Path(data[name]) if data[name] else None
    data["limits"] = Limits(**data["limits"])
    operations = data.get("operations") or {}
    operations["rate_limits"] = {k: tuple(v) for k, v in operations.get("rate_limits", _default_rate_limits()).items()}
    data["operations"] = Operations(**operations)
    return Settings(**data)


def parse_region_map(values: list[str] | tuple[str, ...], what: str) -> dict[str, str]:
    """REGION=VALUE pairs (--replication-site, --replication-site-credentials) as a mapping;
    ValueError naming the pair that is not one."""
    found: dict[str, str] = {}
    for value in values:
        region, sep, rest = value.partition("=")
        if not sep or not region.strip() or not rest.strip():
            raise ValueError(f"{what} must be REGION=VALUE, not {value!r}")
        found[region.strip()] = rest.strip()
    return found

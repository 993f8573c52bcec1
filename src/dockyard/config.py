"""Settings for one Dockyard process: flags, environment and defaults in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"


@dataclass
class Limits:
    """ECR's service limits (the seed's values); today's ECR allows more, see README."""

    repositories_per_account: int = 1000
    images_per_repository: int = 1000
    layers_per_image: int = 127


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
    # Durable commits (fsync) on SQLite; off only for throwaway benchmarks.
    sync_writes: bool = True
    token_lifetime_seconds: int = 12 * 3600
    limits: Limits = field(default_factory=Limits)

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
    return Settings(**data)

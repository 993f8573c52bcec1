"""`dockyard serve` settings: flags win over DOCKYARD_* variables, which win over --config's file,
which wins over the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dockyard.commands import main as cli
from dockyard.config import Settings


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Runs serve up to the point where it would start serving, and keeps the settings it built."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli, "prepare_runtime", lambda settings, workers, log_level: None)
    monkeypatch.setattr(cli, "prepare", lambda settings: seen.__setitem__("settings", settings))
    monkeypatch.setattr(cli.server_module, "run", lambda server, **kw: seen.__setitem__("run", kw))
    # serve hands its settings to the workers through the environment; restore it afterwards.
    monkeypatch.setenv("DOCKYARD_SETTINGS", "")
    for name in ("DOCKYARD_DATABASE_URL", "DOCKYARD_PORT", "DOCKYARD_REDIS_URL", "DOCKYARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return seen


def serve(args: list[str], env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(cli.main, ["serve", "--workers", "1", *args], env=env, catch_exceptions=False)
    return result


def settings_of(captured: dict[str, Any]) -> Settings:
    settings = captured["settings"]
    assert isinstance(settings, Settings)
    return settings


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dockyard.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment(captured: dict[str, Any], tmp_path: Path) -> None:
    result = serve(["--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    settings = settings_of(captured)
    assert settings.port == 5000
    assert settings.database_url is None
    assert settings.blob_store is None
    assert settings.redis_url is None
    assert settings.s3_redirect is False


def test_file_then_environment_then_flags(captured: dict[str, Any], tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        'port = 6001\ndatabase-url = "postgresql+asyncpg://file/db"\nredis_url = "redis://file:6379/0"\n'
        'blob-store = "s3://bucket/prefix"\ns3-endpoint-url = "http://s3.file:9000"\ns3-redirect = true\n'
        'rate-limit = ["BatchGetImage=10:20"]\ngc-interval = 60\n',
    )
    result = serve(
        ["--config", str(config), "--data-dir", str(tmp_path), "--port", "6003"],
        env={"DOCKYARD_PORT": "6002", "DOCKYARD_DATABASE_URL": "postgresql+asyncpg://env/db"},
    )
    assert result.exit_code == 0, result.output
    settings = settings_of(captured)
    assert settings.port == 6003  # flag over environment over file
    assert settings.database_url == "postgresql+asyncpg://env/db"  # environment over file
    assert settings.redis_url == "redis://file:6379/0"  # the file over the default
    assert settings.blob_store == "s3://bucket/prefix"
    assert settings.s3_endpoint_url == "http://s3.file:9000"
    assert settings.s3_redirect is True
    assert settings.operations.rate_limits["BatchGetImage"] == (10.0, 20.0)
    assert settings.operations.gc_interval_seconds == 60.0
    assert captured["run"]["port"] == 6003


def test_config_file_named_by_the_environment(captured: dict[str, Any], tmp_path: Path) -> None:
    config = write_config(tmp_path, 'redis-url = "redis://cfg:1/0"\n')
    result = serve(["--data-dir", str(tmp_path)], env={"DOCKYARD_CONFIG": str(config), "DOCKYARD_S3_REDIRECT": "1"})
    assert result.exit_code == 0, result.output
    assert settings_of(captured).redis_url == "redis://cfg:1/0"
    assert settings_of(captured).s3_redirect is True


def test_unknown_setting_in_the_file_is_refused(captured: dict[str, Any], tmp_path: Path) -> None:
    config = write_config(tmp_path, 'databse-url = "postgresql+asyncpg://typo/db"\n')
    result = serve(["--config", str(config), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown settings databse_url" in result.output
    assert "settings" not in captured


def test_bad_blob_store_url_is_refused(captured: dict[str, Any], tmp_path: Path) -> None:
    result = serve(["--data-dir", str(tmp_path), "--blob-store", "s3://"])
    assert result.exit_code == 2
    assert "s3://BUCKET[/PREFIX]" in result.output

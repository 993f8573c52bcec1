"""The `dockyard` command."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click
from sqlalchemy.exc import IntegrityError

from dockyard import server as server_module
from dockyard.commands.admin import admin, write_credentials
from dockyard.commands.offline import secure_data_dir
from dockyard.commands.operations import gc, lifecycle, operations_options, prepare_runtime, storage
from dockyard.commands.scanning import gate, sbom, vulndb
from dockyard.config import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    DEFAULT_VULNDB_URL,
    Operations,
    Settings,
    env_root_key,
    parse_region_map,
    read_config_file,
    settings_to_json,
)
from dockyard.core.errors import StorageUnavailable
from dockyard.core.identity import accounts
from dockyard.core.services import Services
from dockyard.observe import listener
from dockyard.store.database import upgrade
from dockyard.vulndb.update import parse_ecosystems


@click.group()
def main() -> None:
    """Dockyard: a self-hosted container registry that behaves like Amazon ECR."""


main.add_command(admin)
main.add_command(gc)
main.add_command(lifecycle)
main.add_command(storage)
main.add_command(vulndb)
main.add_command(gate)
main.add_command(sbom)


async def bootstrap(settings: Settings) -> accounts.AccessKey | None:
    """Create the default account and its root key on first start; returns a key created now."""
    svc = Services.from_settings(settings)
    try:
        await accounts.ensure_account(svc, settings.account_id)
        wanted = env_root_key()
        existing = await accounts.root_keys(svc, settings.account_id)
        if wanted is not None:
            if any(k.access_key_id == wanted[0] for k in existing):
                return None
            try:
                return await accounts.add_access_key(svc, settings.account_id, None, *wanted)
            except IntegrityError:
                # Another node of a cluster, started at the same moment, added the same key first.
                return None
        if existing:
            return None
        return await accounts.add_access_key(svc, settings.account_id)
    finally:
        await svc.close()


def prepare(settings: Settings) -> None:
    secure_data_dir(settings.data_dir)
    try:
        upgrade(settings.sqlalchemy_url)
        key = asyncio.run(bootstrap(settings))
    except StorageUnavailable as exc:
        # A locked database or a full disk: the operator needs the one line saying which.
        raise click.ClickException(exc.message) from None
    if key is not None:
        credentials = settings.data_dir / "credentials"
        write_credentials(credentials, key, settings.region)
        if env_root_key() is not None:
            click.echo(f"Root access key {key.access_key_id} (from the environment) saved to {credentials}.")
            return
        click.echo(
            f"Created account {settings.account_id} with root access key:\n"
            f"  aws_access_key_id     = {key.access_key_id}\n"
            f"  aws_secret_access_key = {key.secret_access_key}\n"
            f"Saved to {credentials} (AWS shared-credentials format)."
        )


def _metrics_address(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int] | None:
    try:
        return listener.parse_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _load_config_file(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    """--config: the file's values become the options' defaults, below flags and environment."""
    if path is None:
        return
    names: dict[str, str] = {}
    for option in ctx.command.params:
        if option.name is None or option.name == "config":
            continue
        names[option.name] = option.name
        for flag in option.opts:
            if flag.startswith("--"):
                names[flag[2:].replace("-", "_")] = option.name
    try:
        values = read_config_file(path)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: {exc}", ctx, param) from None
    unknown = sorted(key for key in values if key not in names)
    if unknown:
        raise click.BadParameter(f"{path}: unknown settings {', '.join(unknown)}", ctx, param)
    ctx.default_map = {**(ctx.default_map or {}), **{names[key]: value for key, value in values.items()}}


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--data-dir", default="data", show_default=True, type=click.Path(path_type=Path))
@click.option("--account-id", default=DEFAULT_ACCOUNT_ID, show_default=True)
@click.option("--region", default=DEFAULT_REGION, show_default=True)
@click.option("--registry-host", default=None, help="host[:port] clients use to reach this registry")
@click.option("--tls-cert", type=click.Path(path_type=Path, exists=True), default=None)
@click.option("--tls-key", type=click.Path(path_type=Path, exists=True), default=None)
@click.option(
    "--database-url",
    default=None,
    help="SQLAlchemy URL, e.g. postgresql+asyncpg://user:pass@host/db (default: SQLite in the data dir)",
)
@click.option("--blob-store", default=None, help="s3://BUCKET[/PREFIX] or a directory  [default: DATA_DIR/storage]")
@click.option("--s3-endpoint-url", default=None, help="S3-compatible endpoint (MinIO, Ceph RGW...)  [default: AWS S3]")
@click.option("--s3-region", default=None, help="the bucket's region  [default: from the AWS configuration]")
@click.option("--s3-redirect", is_flag=True, default=False, help="redirect blob GETs to presigned object URLs")
@click.option(
    "--archive-dir",
    default=None,
    help="where layers only archived images need are moved (another disk)  [default: DATA_DIR/archive]",
)
@click.option(
    "--s3-archive-storage-class",
    type=click.Choice(["GLACIER_IR", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING"]),
    default="GLACIER_IR",
    show_default=True,
    help="the S3 storage class layers only archived images need are moved to (one that reads at once)",
)
@click.option("--redis-url", default=None, help="redis://host:port/db for throttling shared by every node")
@click.option("--workers", default=0, type=int, help="worker processes  [default: one per core]")
@click.option(
    "--server",
    type=click.Choice(server_module.SERVERS),
    default="auto",
    show_default=True,
    help="HTTP server: granian when installed (auto), or uvicorn",
)
@click.option("--log-level", default="info", show_default=True, help="critical, error, warning, info, debug or trace")
@click.option(
    "--metrics-address",
    default=listener.DEFAULT_METRICS_ADDRESS,
    show_default=True,
    callback=_metrics_address,
    help="HOST:PORT of the Prometheus /metrics listener, apart from the public port ('off' to disable); "
    "it names every repository, so keep it private",
)
@click.option(
    "--vulndb-max-age",
    "vulndb_max_age_days",
    envvar="DOCKYARD_VULNDB_MAX_AGE",
    type=click.FloatRange(min=0),
    default=7.0,
    show_default=True,
    help="Days after which vulnerability data counts as stale (shown in scan results and the console)",
)
@click.option(
    "--scan-gate-missing-data",
    type=click.Choice(["refuse", "allow"]),
    default="refuse",
    show_default=True,
    help="What the pull gate does with an image that could not be scanned for want of vulnerability data",
)
@operations_options
@click.option(
    "--vulndb-url",
    default=DEFAULT_VULNDB_URL,
    show_default=True,
    help="where the scheduled refresh downloads OSV's archives (<URL>/<ECOSYSTEM>/all.zip); "
    "a mirror's URL for air-gapped sites",
)
@click.option(
    "--vulndb-ecosystems",
    default="",
    help="comma-separated OSV ecosystems to keep up to date  [default: every one the scanner reads]",
)
@click.option(
    "--vulndb-update-interval",
    type=float,
    default=86400.0,
    show_default=True,
    help="seconds between refreshes of the vulnerability data, one node at a time (0: never; "
    "`dockyard vulndb update` or `import` only)",
)
@click.option(
    "--replication-site",
    "replication_sites",
    multiple=True,
    help="REGION=URL: another Dockyard deployment serves REGION; replication there pushes to URL (repeatable)",
)
@click.option(
    "--replication-site-credentials",
    multiple=True,
    help="REGION=ACCESS_KEY_ID:SECRET: the access key replication signs in to REGION's site with (repeatable)",
)
@click.option(
    "--pull-through-upstream",
    "pull_through_upstreams",
    multiple=True,
    help="HOST or HOST:PORT: a registry pull through cache rules may name besides the public ones ECR "
    "supports (a mirror, a registry on the internal network; http:// allowed) (repeatable)",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar="DOCKYARD_CONFIG",
    is_eager=True,
    expose_value=False,
    callback=_load_config_file,
    help="TOML file of settings named as these options (database-url = ...); flags and DOCKYARD_* win",
)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    account_id: str,
    region: str,
    registry_host: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    database_url: str | None,
    blob_store: str | None,
    s3_endpoint_url: str | None,
    s3_region: str | None,
    s3_redirect: bool,
    archive_dir: str | None,
    s3_archive_storage_class: str,
    redis_url: str | None,
    workers: int,
    server: server_module.ServerName,
    log_level: str,
    metrics_address: tuple[str, int] | None,
    vulndb_max_age_days: float,
    scan_gate_missing_data: str,
    operations: Operations,
    vulndb_url: str,
    vulndb_ecosystems: str,
    vulndb_update_interval: float,
    replication_sites: tuple[str, ...],
    replication_site_credentials: tuple[str, ...],
    pull_through_upstreams: tuple[str, ...],
) -> None:
    """Start the registry, the ECR API and the console on one port (Prometheus metrics on another).

    Every option may also come from the environment (DOCKYARD_<OPTION>, e.g. DOCKYARD_DATABASE_URL)
    or a --config file; flags win over the environment, the environment over the file."""
    workers = workers or server_module.default_workers()
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if blob_store and blob_store.startswith("s3://"):
        from dockyard.store.blobs.s3 import parse_s3_url  # imports aiobotocore: only when asked for

        try:
            parse_s3_url(blob_store)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        sites = parse_region_map(replication_sites, "--replication-site")
        site_credentials = parse_region_map(replication_site_credentials, "--replication-site-credentials")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    settings = Settings(
        data_dir=data_dir.resolve(),
        host=host,
        port=port,
        account_id=account_id,
        region=region,
        registry_host=registry_host,
        tls_cert=tls_cert,
        tls_key=tls_key,
        database_url=database_url,
        blob_store=blob_store,
        s3_endpoint_url=s3_endpoint_url,
        s3_region=s3_region,
        s3_redirect=s3_redirect,
        archive_dir=str(Path(archive_dir).resolve()) if archive_dir else None,
        s3_archive_storage_class=s3_archive_storage_class,
        redis_url=redis_url,
        vulndb_max_age_days=vulndb_max_age_days,
        scan_gate_missing_data=scan_gate_missing_data,
        operations=operations,
        vulndb_url=vulndb_url,
        vulndb_ecosystems=parse_ecosystems([vulndb_ecosystems]),
        vulndb_update_interval_seconds=max(0.0, vulndb_update_interval),
        replication_sites=sites,
        replication_site_credentials=site_credentials,
        pull_through_upstreams=[host.strip().lower() for host in pull_through_upstreams if host.strip()],
    )
    log_config = prepare_runtime(settings, workers, log_level)
    prepare(settings)
    os.environ["DOCKYARD_SETTINGS"] = settings_to_json(settings)
    try:
        server_module.run(
            server,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            log_config=log_config,
            tls_cert=tls_cert,
            tls_key=tls_key,
            settings=settings,
            metrics_address=metrics_address,
        )
    except listener.AddressInUse as exc:
        raise click.ClickException(f"cannot listen on {exc.strerror}") from None


# Every serve option can come from the environment as DOCKYARD_<OPTION> (flags win over it).
for _option in serve.params:
    if isinstance(_option, click.Option) and _option.envvar is None and _option.name:
        _option.envvar = f"DOCKYARD_{_option.name.upper()}"

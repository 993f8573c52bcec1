"""Operator commands and `dockyard serve`'s operations options.

dockyard gc [--dry-run]              garbage collection, online (the server may keep running)
dockyard lifecycle run [--dry-run]   apply every repository's lifecycle policy now
dockyard storage                     bytes stored, in total and per repository
dockyard storage verify [--repair-from STORE]   re-hash stored blobs, report (and repair) damage"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dockyard.config import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Operations, Settings
from dockyard.doors.throttle import limits_as_settings, parse_rate_limits
from dockyard.observe import logs

# `--rate-limit ecr`: the per-account request quotas today's ECR user guide publishes for the push
# and pull operations (GetAuthorizationToken keeps the seed's 1 per second, burst 50).
ECR_QUOTAS_PRESET = "ecr"
ECR_QUOTAS = (
    "BatchCheckLayerAvailability=1000,BatchGetImage=2000,GetDownloadUrlForLayer=3000,"
    "InitiateLayerUpload=100,UploadLayerPart=500,CompleteLayerUpload=100,PutImage=10"
)


def expand_rate_limit_presets(specs: tuple[str, ...] | list[str]) -> list[str]:
    """`--rate-limit` values with the `ecr` preset spelled out; later items override earlier ones."""
    expanded = []
    for spec in specs:
        for item in spec.split(","):
            expanded.append(ECR_QUOTAS if item.strip().lower() == ECR_QUOTAS_PRESET else item)
    return expanded


def operations_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`dockyard serve`'s options for throttling, the audit trail, GC and lifecycle, handed to the
    command as one `operations` argument."""
    defaults = Operations()
    options = [
        click.option(
            "--rate-limit",
            "rate_limits",
            multiple=True,
            envvar="DOCKYARD_RATE_LIMITS",
            help="OPERATION=RATE[:BURST] per account (e.g. BatchGetImage=2000:4000; '*' for every other "
            "operation; OPERATION=off). Repeatable, or comma-separated in DOCKYARD_RATE_LIMITS. "
            "'ecr' applies ECR's published quotas (PutImage=10, BatchGetImage=2000, ...). "
            "Default: GetAuthorizationToken=1:50, nothing else limited.",
        ),
        click.option(
            "--gc-interval",
            type=float,
            default=defaults.gc_interval_seconds,
            envvar="DOCKYARD_GC_INTERVAL",
            show_default=True,
            help="Seconds between background garbage collections (0: only `dockyard gc`).",
        ),
        click.option(
            "--gc-grace",
            type=float,
            default=defaults.gc_grace_seconds,
            envvar="DOCKYARD_GC_GRACE",
            show_default=True,
            help="Seconds a new or re-used layer is safe from garbage collection.",
        ),
        click.option(
            "--upload-expiry",
            type=float,
            default=defaults.upload_expiry_seconds,
            envvar="DOCKYARD_UPLOAD_EXPIRY",
            show_default=True,
            help="Seconds an upload may sit idle before garbage collection removes it.",
        ),
        click.option(
            "--lifecycle-interval",
            type=float,
            default=defaults.lifecycle_interval_seconds,
            envvar="DOCKYARD_LIFECYCLE_INTERVAL",
            show_default=True,
            help="Seconds between applications of lifecycle policies (0: only `dockyard lifecycle run`).",
        ),
        click.option(
            "--archive-interval",
            type=float,
            default=defaults.archive_interval_seconds,
            envvar="DOCKYARD_ARCHIVE_INTERVAL",
            show_default=True,
            help="Seconds between runs of the archive mover, which moves layers of archived images to the "
            "archive tier and back on restore (0: never).",
        ),
        click.option(
            "--audit-retention-days",
            type=float,
            default=defaults.audit_retention_days,
            envvar="DOCKYARD_AUDIT_RETENTION_DAYS",
            show_default=True,
            help="Days the audit trail keeps events (LookupEvents searches them).",
        ),
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        try:
            limits = parse_rate_limits(expand_rate_limit_presets(kwargs.pop("rate_limits")))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--rate-limit") from None
        kwargs["operations"] = Operations(
            rate_limits=limits_as_settings(limits),
            gc_interval_seconds=kwargs.pop("gc_interval"),
            gc_grace_seconds=kwargs.pop("gc_grace"),
            upload_expiry_seconds=kwargs.pop("upload_expiry"),
            lifecycle_interval_seconds=kwargs.pop("lifecycle_interval"),
            archive_interval_seconds=kwargs.pop("archive_interval"),
            audit_retention_days=kwargs.pop("audit_retention_days"),
            log_level=kwargs.get("log_level", defaults.log_level),
        )
        return command(**kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def prepare_runtime(settings: Settings, workers: int, log_level: str) -> dict[str, Any]:
    """Before the server starts: JSON logging. Returns the server's log config. (The workers' shared
    metrics directory is dockyard.server's: private, and off the data directory's file system.)"""
    try:
        config = logs.logging_config(log_level)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--log-level") from None
    logs.configure(log_level)
    return config


def _settings(data_dir: Path, database_url: str | None, store: dict[str, Any], **operations: Any) -> Settings:
    from dockyard.commands.offline import prepared

    settings = Settings(
        data_dir=data_dir.resolve(),
        database_url=database_url,
        **store,
        account_id=DEFAULT_ACCOUNT_ID,
        region=DEFAULT_REGION,
        operations=Operations(**operations),
    )
    return prepared(settings)


def _data_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Where the data is, as `dockyard serve` is told (same flags and DOCKYARD_* variables)."""
    command = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")(command)
    command = click.option("--s3-region", default=None, envvar="DOCKYARD_S3_REGION", help="the bucket's region")(
        command
    )
    command = click.option(
        "--s3-endpoint-url", default=None, envvar="DOCKYARD_S3_ENDPOINT_URL", help="S3-compatible endpoint"
    )(command)
    command = click.option(
        "--blob-store", default=None, envvar="DOCKYARD_BLOB_STORE", help="s3://BUCKET[/PREFIX] or a directory"
    )(command)
    command = click.option(
        "--archive-dir",
        default=None,
        envvar="DOCKYARD_ARCHIVE_DIR",
        help="the archive directory layers of archived images move to  [default: DATA_DIR/archive]",
    )(command)
    command = click.option(
        "--database-url",
        default=None,
        envvar="DOCKYARD_DATABASE_URL",
        help="SQLAlchemy URL (default: SQLite in the data dir)",
    )(command)
    return click.option(
        "--data-dir", default="data", show_default=True, envvar="DOCKYARD_DATA_DIR", type=click.Path(path_type=Path)
    )(command)


def _size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


@click.command()
@_data_options
@click.option("--dry-run", is_flag=True, help="Report what would be freed; change nothing.")
@click.option(
    "--grace", type=float, default=Operations().gc_grace_seconds, show_default=True, envvar="DOCKYARD_GC_GRACE"
)
@click.option(
    "--upload-expiry",
    type=float,
    default=Operations().upload_expiry_seconds,
    show_default=True,
    envvar="DOCKYARD_UPLOAD_EXPIRY",
)
def gc(
    data_dir: Path,
    database_url: str | None,
    as_json: bool,
    dry_run: bool,
    grace: float,
    upload_expiry: float,
    **store: str | None,
) -> None:
    """Remove blobs no image needs, stale layer links and abandoned uploads; safe while the server runs."""
    from dockyard.commands.offline import run_with_services
    from dockyard.core.registry.gc import storage_report
    from dockyard.workers.housekeeping import run_gc

    settings = _settings(data_dir, database_url, store, gc_grace_seconds=grace, upload_expiry_seconds=upload_expiry)

    async def run(svc: Any) -> tuple[Any, Any]:
        result = await run_gc(svc, dry_run=dry_run)
        return result, await storage_report(svc)

    result, storage = run_with_services(settings, run)
    if as_json:
        click.echo(json.dumps(_gc_json(result, storage), indent=2))
        return
    verb = "Would free" if dry_run else "Freed"
    click.echo(f"{verb} {_size(result.freed_bytes)} ({result.freed_bytes} bytes):")
    click.echo(f"  blobs no image refers to:  {len(result.blobs)} ({_size(sum(s for _, s in result.blobs))})")
    click.echo(f"  unused layer links:        {result.links}")
    click.echo(f"  abandoned uploads:         {len(result.uploads)} ({_size(sum(s for _, s in result.uploads))})")
    orphans = result.orphan_blob_files + result.orphan_upload_files
    click.echo(f"  files without metadata:    {len(orphans)} ({_size(sum(s for _, s in orphans))})")
    _echo_storage(storage)


def _gc_json(result: Any, storage: Any) -> dict[str, Any]:
    return {
        "dryRun": result.dry_run,
        "freedBytes": result.freed_bytes,
        "blobs": [{"digest": d, "size": s} for d, s in result.blobs],
        "layerLinks": result.links,
        "uploads": [{"uploadId": u, "size": s} for u, s in result.uploads],
        "orphanBlobFiles": [{"digest": d, "size": s} for d, s in result.orphan_blob_files],
        "orphanUploadFiles": [{"name": n, "size": s} for n, s in result.orphan_upload_files],
        "storage": _storage_json(storage),
    }


def _storage_json(storage: Any) -> dict[str, Any]:
    return {
        "totalBytes": storage.total_bytes,
        "blobs": storage.blobs,
        "uploadSessions": storage.upload_sessions,
        "uploadBytes": storage.upload_bytes,
        "repositories": [
            {
                "registryId": r.account_id,
                "region": r.region,
                "repositoryName": r.name,
                "bytes": r.bytes,
                "layers": r.layers,
                "images": r.images,
            }
            for r in storage.repositories
        ],
    }


def _echo_storage(storage: Any) -> None:
    click.echo(
        f"Storage used: {_size(storage.total_bytes)} in {storage.blobs} blobs; "
        f"{storage.upload_sessions} uploads in progress ({_size(storage.upload_bytes)})"
    )
    if storage.repositories:
        click.echo(f"  {'REGISTRY':<12}  {'REGION':<14}  {'REPOSITORY':<40}  {'IMAGES':>6}  {'LAYERS':>6}  BYTES")
        for r in storage.repositories:
            click.echo(f"  {r.account_id:<12}  {r.region:<14}  {r.name:<40}  {r.images:>6}  {r.layers:>6}  {r.bytes}")


@click.group(invoke_without_command=True)
@_data_options
@click.pass_context
def storage(ctx: click.Context, data_dir: Path, database_url: str | None, as_json: bool, **store: str | None) -> None:
    """Bytes stored, in total (each blob once) and per repository; `storage verify` checks the blobs."""
    if ctx.invoked_subcommand is not None:
        return
    from dockyard.commands.offline import run_with_services
    from dockyard.core.registry.gc import storage_report

    report = run_with_services(_settings(data_dir, database_url, store), storage_report)
    if as_json:
        click.echo(json.dumps(_storage_json(report), indent=2))
    else:
        _echo_storage(report)


@storage.command("verify")
@_data_options
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Read at most this many MiB per second (default: as fast as the store allows).",
)
@click.option(
    "--repair-from",
    default=None,
    metavar="STORE",
    help="Another copy of the blobs (a blob store or data directory, or s3://BUCKET[/PREFIX]): damaged "
    "or missing blobs are copied from it, once the copy hashes to the digest.",
)
@click.option("--restart", is_flag=True, help="Begin a new pass instead of going on from the checkpoint.")
@click.option(
    "--max-blobs",
    type=click.IntRange(min=1),
    default=None,
    help="Check at most this many blobs in this run; the next run goes on from there.",
)
def storage_verify(
    data_dir: Path,
    database_url: str | None,
    as_json: bool,
    rate: float | None,
    repair_from: str | None,
    restart: bool,
    max_blobs: int | None,
    **store: str | None,
) -> None:
    """Re-hash the stored blobs and report missing, wrong-size and corrupted ones (exit status 1
    while any damage is unrepaired). Resumable: a run goes on from where the last one stopped."""
    from dockyard.commands.offline import run_with_services
    from dockyard.core.registry import storage_verify as verify

    settings = _settings(data_dir, database_url, store)
    checkpoint = verify.Checkpoint(
        settings.data_dir / verify.CHECKPOINT_NAME, settings.blob_store or str(settings.blob_root)
    )

    async def run(svc: Any) -> Any:
        source = None
        if repair_from is not None:
            try:
                source = verify.open_repair_source(
                    repair_from, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region
                )
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--repair-from") from None
        try:
            return await verify.verify_store(
                svc,
                checkpoint,
                rate=None if rate is None else rate * 1024 * 1024,
                repair_from=source,
                restart=restart,
                max_blobs=max_blobs,
            )
        finally:
            if source is not None:
                await verify.close_quietly(source)

    report = run_with_services(settings, run)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _echo_verify(report)
    if report.unrepaired:
        ctx = click.get_current_context()
        ctx.exit(1)


def _echo_verify(report: Any) -> None:
    where = f" (resumed after {report.resumed_after})" if report.resumed_after else ""
    click.echo(
        f"Verified {report.checked} blobs ({_size(report.checked_bytes)}){where}: "
        f"{len(report.damaged)} damaged, {len(report.damaged) - len(report.unrepaired)} repaired."
    )
    for damaged in report.damaged:
        if damaged.repaired:
            outcome = "repaired"
        elif damaged.repair_error:
            outcome = f"not repaired: {damaged.repair_error}"
        else:
            outcome = "not repaired"
        click.echo(f"  {damaged.damage.upper():<8} {damaged.digest}  {damaged.describe()}; {outcome}")
    if not report.complete:
        click.echo("The pass is not finished: run `dockyard storage verify` again to go on from here.")


@click.group()
def lifecycle() -> None:
    """Lifecycle policies."""


@lifecycle.command("run")
@_data_options
@click.option("--dry-run", is_flag=True, help="Report what would expire; change nothing.")
def lifecycle_run(data_dir: Path, database_url: str | None, as_json: bool, dry_run: bool, **store: str | None) -> None:
    """Apply every repository's lifecycle policy now; expiries go to the audit trail."""
    from dockyard.commands.offline import run_with_services
    from dockyard.observe.ops import audit_trail
    from dockyard.workers.housekeeping import run_lifecycle

    async def run(svc: Any) -> list[Any]:
        trail = None if dry_run else audit_trail(svc).start()
        try:
            return await run_lifecycle(svc, trail, dry_run=dry_run)
        finally:
            if trail is not None:
                await asyncio.to_thread(trail.close)

    runs = run_with_services(_settings(data_dir, database_url, store), run)
    if as_json:
        report = [
            {
                "registryId": r.account_id,
                "region": r.region,
                "repositoryName": r.repository,
                "expired": [
                    {
                        "imageDigest": e.image.digest,
                        "imageTags": list(e.image.tags),
                        "imagePushedAt": e.image.pushed_at,
                        "appliedRulePriority": e.rule.priority,
                    }
                    for e in r.expired
                ],
            }
            for r in runs
        ]
        click.echo(json.dumps({"dryRun": dry_run, "repositories": report}, indent=2))
        return
    verb = "would expire" if dry_run else "expired"
    total = sum(len(r.expired) for r in runs)
    click.echo(f"{len(runs)} repositories with a lifecycle policy; {total} images {verb}.")
    for run_ in runs:
        for expiry in run_.expired:
            tags = ",".join(expiry.image.tags) or "<untagged>"
            click.echo(f"  {run_.repository}  {expiry.image.digest}  {tags}  (rule {expiry.rule.priority})")

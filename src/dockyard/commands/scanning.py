"""`dockyard vulndb …`, `dockyard gate …` and `dockyard sbom …`: the vulnerability database, the
registry's pull gate and software bills of materials, against the data directory (or database)
directly; the server may be running meanwhile, and picks the changes up at once."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from dockyard.commands.offline import prepared, run_with_services
from dockyard.config import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Settings
from dockyard.core.identity.caller import root_caller
from dockyard.core.registry.manifests import is_digest
from dockyard.core.scanning import scans
from dockyard.core.scanning.scan_hooks import EXEMPT_TAG_PREFIX, GATE_OFF, GATE_SEVERITIES
from dockyard.vulndb import osv
from dockyard.vulndb import store as vulndb_store
from dockyard.vulndb import update as vulndb_update

_ACCOUNT_ID = re.compile(r"\d{12}")
# The skipped documents an import lists before summing up the rest.
SHOWN_SKIPPED = 20


def _settings(
    data_dir: Path, database_url: str | None, account_id: str = DEFAULT_ACCOUNT_ID, region: str = DEFAULT_REGION
) -> Settings:
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise click.BadParameter("an account ID is 12 digits", param_hint="--account-id")
    return prepared(
        Settings(data_dir=data_dir.resolve(), database_url=database_url, account_id=account_id, region=region)
    )


def _when(moment: float | None) -> str:
    if moment is None:
        return "never"
    return datetime.fromtimestamp(moment, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _age(moment: float | None, current: float) -> float | None:
    return None if moment is None else round(max(0.0, current - moment), 1)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h {rest // 60}m" if days else f"{hours}h {rest // 60}m {rest % 60}s"


_store_options = [
    click.option("--data-dir", default="data", show_default=True, type=click.Path(path_type=Path)),
    click.option("--database-url", default=None, help="SQLAlchemy URL (default: SQLite in the data dir)"),
]
_registry_options = [
    click.option("--account-id", default=DEFAULT_ACCOUNT_ID, show_default=True, help="the registry's account"),
    click.option("--region", default=DEFAULT_REGION, show_default=True, help="the registry's region"),
]


def _with(options: list[Callable[[Any], Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


# --- vulndb -------------------------------------------------------------------------------------


@click.group()
def vulndb() -> None:
    """The local vulnerability database scans match against (OSV data, kept locally: scans need
    no network)."""


class _TerminalProgress:
    """A download bar per ecosystem on a terminal; one plain line per step otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._bar: Any = None

    def downloading(self, ecosystem: str, total: int | None) -> None:
        # A bar needs a length: a source that sends none gets the plain line.
        if self.tty and total is not None:
            self._bar = click.progressbar(length=total, label=f"Downloading {ecosystem}", file=sys.stderr)
            self._bar.__enter__()
        else:
            size = f" ({total} bytes)" if total is not None else ""
            click.echo(f"{ecosystem}: downloading{size}", err=True)

    def advance(self, size: int) -> None:
        if self._bar is not None:
            self._bar.update(size)

    def done(self, outcome: vulndb_update.Outcome) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        click.echo(outcome.describe(), err=outcome.state == "failed")


@vulndb.command("update")
@click.option(
    "--url",
    default=vulndb_update.DEFAULT_URL,
    show_default=True,
    envvar="DOCKYARD_VULNDB_URL",
    help="where OSV's archives are, as <URL>/<ECOSYSTEM>/all.zip (a mirror, for air-gapped sites)",
)
@click.option(
    "--ecosystems",
    default="",
    envvar="DOCKYARD_VULNDB_ECOSYSTEMS",
    help="comma-separated OSV ecosystems to fetch  [default: every one the scanner reads: "
    + ", ".join(vulndb_update.DEFAULT_ECOSYSTEMS)
    + "]",
)
@_with(_store_options)
def update_command(url: str, ecosystems: str, data_dir: Path, database_url: str | None) -> None:
    """Download OSV's advisories, only the ecosystems whose archive changed since the last update
    (HTTP proxies from HTTPS_PROXY/HTTP_PROXY/NO_PROXY). Each archive is verified, then replaces
    its ecosystem's advisories at once while scans go on; a bad one is refused and the old data kept."""
    names = vulndb_update.parse_ecosystems([ecosystems]) or list(vulndb_update.DEFAULT_ECOSYSTEMS)
    settings = _settings(data_dir, database_url)
    progress = _TerminalProgress()
    outcomes = run_with_services(settings, lambda svc: vulndb_update.update(svc.db, url, names, progress))
    failed = [o for o in outcomes if o.state == "failed"]
    if failed:
        kept = [o.ecosystem for o in failed if o.kept]
        empty = [o.ecosystem for o in failed if not o.kept]
        parts = [f"{', '.join(kept)} (the previous data is kept)"] if kept else []
        parts += [f"{', '.join(empty)} (no data for them yet)"] if empty else []
        raise click.ClickException(f"not updated: {'; '.join(parts)}")


@vulndb.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_with(_store_options)
def import_command(paths: tuple[Path, ...], data_dir: Path, database_url: str | None) -> None:
    """Import OSV advisories from PATHS: osv.dev's per-ecosystem zip archives (all.zip), directories
    of OSV JSON files, or single files. Newer versions of a record replace older ones."""
    settings = _settings(data_dir, database_url)
    for path in paths:
        total = osv.count_records(path)
        with click.progressbar(length=total, label=f"Importing {path.name}", file=sys.stderr) as bar:
            result = run_with_services(
                settings,
                lambda svc, path=path, bar=bar: vulndb_store.import_records(
                    svc.db, str(path.resolve()), osv.iter_records(path), bar.update
                ),
            )
        click.echo(
            f"{path}: {result.records} advisories imported, {result.unchanged} unchanged, {len(result.skipped)} skipped"
        )
        for reason in result.skipped[:SHOWN_SKIPPED]:
            click.echo(f"  skipped {reason}", err=True)
        if len(result.skipped) > SHOWN_SKIPPED:
            click.echo(f"  ... and {len(result.skipped) - SHOWN_SKIPPED} more", err=True)


@vulndb.command("status")
@_with(_store_options)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def status_command(data_dir: Path, database_url: str | None, as_json: bool) -> None:
    """What the vulnerability database holds, and when it was last updated."""
    status = run_with_services(_settings(data_dir, database_url), lambda svc: vulndb_store.status(svc.db))
    moment = time.time()
    oldest = status.oldest_fetch
    if as_json:
        click.echo(
            json.dumps(
                {
                    "advisories": status.advisories,
                    "ecosystems": status.by_ecosystem,
                    "updatedAt": _when(status.updated_at),
                    "ageSeconds": _age(oldest, moment),
                    "sources": [
                        {
                            "ecosystem": s.ecosystem,
                            "source": s.source,
                            "advisories": s.advisories,
                            "fetchedAt": _when(s.fetched_at),
                            "changedAt": _when(s.changed_at),
                            "ageSeconds": _age(s.fetched_at, moment),
                            "error": s.error,
                            "errorAt": _when(s.error_at) if s.error_at else None,
                        }
                        for s in status.sources
                    ],
                    "imports": [
                        {"source": i["source"], "importedAt": _when(i["imported_at"]), "records": i["records"]}
                        for i in status.imports
                    ],
                },
                indent=2,
            )
        )
        return
    click.echo(f"{status.advisories} advisories, last updated {_when(status.updated_at)}")
    if oldest is not None:
        click.echo(f"Age: {_duration(_age(oldest, moment))} (since the least recently updated ecosystem)")
    listed = {s.ecosystem for s in status.sources}
    for source in status.sources:
        line = (
            f"  {source.ecosystem:<20} {source.advisories:>8} advisories  updated {_when(source.fetched_at)}"
            f"  ({_duration(_age(source.fetched_at, moment))} ago)"
        )
        click.echo(line + (f"  last attempt failed: {source.error}" if source.error else ""))
    for ecosystem, count in status.by_ecosystem.items():
        if ecosystem not in listed:
            click.echo(f"  {ecosystem:<20} {count:>8} advisories")
    if status.imports:
        click.echo("Recent imports:")
        for done in status.imports:
            click.echo(
                f"  {_when(done['imported_at'])}  {done['source']}  "
                f"({done['records']} imported, {done['skipped']} skipped)"
            )


# --- gate ---------------------------------------------------------------------------------------


@click.group()
def gate() -> None:
    """The registry's pull gate: refuse images whose latest scan found vulnerabilities at or above a
    severity. A repository overrides it with its tag 'dockyard:scan-gate' (a severity, or OFF)."""


@gate.command("set")
@click.argument("severity", type=click.Choice([*GATE_SEVERITIES, GATE_OFF], case_sensitive=False))
@_with(_store_options + _registry_options)
def gate_set(severity: str, data_dir: Path, database_url: str | None, account_id: str, region: str) -> None:
    """Refuse pulls of images with findings of SEVERITY or worse (OFF: serve everything)."""
    settings = _settings(data_dir, database_url, account_id, region)
    wanted = None if severity.upper() == GATE_OFF else severity.upper()
    run_with_services(settings, lambda svc: scans.set_gate(svc, account_id, region, wanted))
    click.echo(f"Pull gate of registry {account_id} ({region}): {wanted or GATE_OFF}")


@gate.command("exempt")
@click.argument("digest")
@click.option("--reason", default=None, help="why, for the record")
@click.option("--remove", is_flag=True, help="withdraw the exemption")
@_with(_store_options + _registry_options)
def gate_exempt(
    digest: str,
    reason: str | None,
    remove: bool,
    data_dir: Path,
    database_url: str | None,
    account_id: str,
    region: str,
) -> None:
    """Let the image DIGEST through the gate in every repository of the registry."""
    if not is_digest(digest):
        raise click.BadParameter("expected a digest such as sha256:…", param_hint="DIGEST")
    settings = _settings(data_dir, database_url, account_id, region)
    run_with_services(settings, lambda svc: scans.exempt(svc, account_id, region, digest, reason, not remove))
    click.echo(f"{digest}: {'no longer exempt' if remove else 'exempt'} from the pull gate")


@gate.command("status")
@_with(_store_options + _registry_options)
def gate_status(data_dir: Path, database_url: str | None, account_id: str, region: str) -> None:
    """The registry's gate severity and exempt digests."""
    settings = _settings(data_dir, database_url, account_id, region)
    status = run_with_services(settings, lambda svc: scans.gate_status(svc, account_id, region))
    click.echo(f"Pull gate: {status['severity'] or GATE_OFF}")
    for exemption in status["exemptions"]:
        click.echo(f"  exempt {exemption['digest']}" + (f"  ({exemption['reason']})" if exemption["reason"] else ""))
    click.echo(f"Repositories override it with the tags 'dockyard:scan-gate' and '{EXEMPT_TAG_PREFIX}<digest>'.")


# --- sbom ---------------------------------------------------------------------------------------


@click.group()
def sbom() -> None:
    """Software bills of materials (CycloneDX JSON) of scanned images."""


@sbom.command("export")
@click.argument("repository")
@click.argument("reference")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="write here instead of standard output")
@_with(_store_options + _registry_options)
def sbom_export(
    repository: str,
    reference: str,
    output: Path | None,
    data_dir: Path,
    database_url: str | None,
    account_id: str,
    region: str,
) -> None:
    """The SBOM of image REFERENCE (a tag or digest) of REPOSITORY, from its latest scan."""
    settings = _settings(data_dir, database_url, account_id, region)
    caller = root_caller(account_id, region)
    _, document = run_with_services(
        settings, lambda svc: scans.image_sbom(svc, caller, account_id, repository, reference)
    )
    if output is None:
        click.echo(document.decode())
    else:
        output.write_bytes(document)


@sbom.command("attach")
@click.argument("repository")
@click.argument("reference")
@_with(_store_options + _registry_options)
def sbom_attach(
    repository: str, reference: str, data_dir: Path, database_url: str | None, account_id: str, region: str
) -> None:
    """Push the SBOM of image REFERENCE into REPOSITORY as an OCI artifact referring to the image
    (listed by the referrers API, as `oras discover` shows); prints the artifact's digest."""
    settings = _settings(data_dir, database_url, account_id, region)
    caller = root_caller(account_id, region)
    click.echo(
        run_with_services(settings, lambda svc: scans.attach_sbom(svc, caller, account_id, repository, reference))
    )

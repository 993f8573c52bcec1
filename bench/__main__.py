"""python -m bench: run the scenarios against Dockyard and the reference registry, write the report.

By default both registries are started here (loopback, data under one work directory, so the
same disk) and stopped at the end; --dockyard-url / --reference-url aim at running ones instead."""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import machine, scenarios
from bench.report import RunInfo, render
from bench.results import DOCKYARD, REFERENCE, Results
from bench.targets import (
    REGION,
    Target,
    dockyard_target,
    reference_target,
    reference_version,
    start_dockyard,
    start_reference,
)

MIB = scenarios.MIB
GIB = scenarios.GIB
# Text below this line in an existing report is kept: the hand-written analysis.
KEEP_MARKER = "<!-- Everything below this line is kept when python -m bench rewrites this file. -->"
ALL_SCENARIOS = ["machine", *scenarios.SCENARIOS]
# Growth seeds tens of thousands of images and repositories: asked for by name only.
OPT_IN_SCENARIOS = {"growth"}
DEFAULT_SCENARIOS = [name for name in ALL_SCENARIOS if name not in OPT_IN_SCENARIOS]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 3, 1 with --quick)")
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help="comma-separated subset of " + ", ".join(ALL_SCENARIOS) + " (default: all but growth)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and short loads: a smoke run")
    parser.add_argument("--targets", default=f"{DOCKYARD},{REFERENCE}", help="dockyard, reference or both")
    parser.add_argument("--dockyard-url", help="a running Dockyard (default: start one)")
    parser.add_argument("--dockyard-access-key-id")
    parser.add_argument("--dockyard-secret-access-key")
    parser.add_argument("--dockyard-region", default=REGION)
    parser.add_argument("--dockyard-arg", action="append", default=[], help="extra `dockyard serve` argument")
    parser.add_argument(
        "--dockyard-gc-arg",
        action="append",
        help="where a running Dockyard keeps its data, for `dockyard gc` (e.g. --dockyard-gc-arg=--data-dir "
        "--dockyard-gc-arg=DIR); without it the growth scenario does not time gc on a Dockyard not started here",
    )
    parser.add_argument("--reference-url", help="a running reference registry (default: start one)")
    parser.add_argument("--reference-user")
    parser.add_argument("--reference-password")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Dockyard workers (default: cores)")
    parser.add_argument("--duration", type=float, help="seconds per manifest load (default 10, 1 with --quick)")
    parser.add_argument("--connections", type=int, help="manifest load connections (default 64, 8 with --quick)")
    parser.add_argument("--images", type=int, help="images in the ECR repository (default 10000, 30 with --quick)")
    parser.add_argument(
        "--growth-images",
        type=_sizes,
        help="repository sizes (images) for the growth scenario (default 1000,10000; 10,30 with --quick)",
    )
    parser.add_argument("--growth-100k", action="store_true", help="growth also at 100,000 images (long seeding)")
    parser.add_argument(
        "--growth-repositories",
        type=_sizes,
        help="account sizes (repositories) for the growth scenario (default 100,10000; 10,30 with --quick)",
    )
    parser.add_argument("--growth-samples", type=int, help="calls per operation and size (default 50, 3 with --quick)")
    parser.add_argument(
        "--push-images", type=int, help="images each client pushes in the pushes scenario (default 25, 2 with --quick)"
    )
    parser.add_argument(
        "--put-manifests",
        type=int,
        help="manifests each client PUTs in the manifest-puts scenario (default 100, 5 with --quick)",
    )
    parser.add_argument("--work-dir", type=Path, help="where data goes (default: a new directory in the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
    return parser.parse_args(argv)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive")
    return sizes


def build_settings(args: argparse.Namespace, work: Path, rounds: int) -> scenarios.Settings:
    quick = args.quick
    growth_images = args.growth_images or ([10, 30] if quick else [1000, 10_000])
    if args.growth_100k:
        growth_images = [*growth_images, 100_000]
    return scenarios.Settings(
        sizes=[256 * 1024, MIB] if quick else [MIB, 64 * MIB, GIB],
        chunk=128 * 1024 if quick else 10 * MIB,
        concurrent_clients=4 if quick else 16,
        concurrent_size=MIB if quick else 64 * MIB,
        connections=args.connections or (8 if quick else 64),
        duration=args.duration or (1.0 if quick else 10.0),
        load_threads=os.cpu_count() or 1,
        skopeo_layers=3 if quick else 50,
        skopeo_layer_size=64 * 1024 if quick else 2 * MIB,
        images=args.images or (30 if quick else 10_000),
        ecr_page=10 if quick else 100,
        ecr_batch=10 if quick else 100,
        seed_clients=2 if quick else 8,
        memory_size=4 * MIB if quick else GIB,
        work=work,
        run_id=uuid.uuid4().hex[:8],
        rounds=rounds,
        push_images=args.push_images or (2 if quick else 25),
        put_manifests=args.put_manifests or (5 if quick else 100),
        growth_images=growth_images,
        growth_repositories=args.growth_repositories or ([10, 30] if quick else [100, 10_000]),
        growth_samples=args.growth_samples or (3 if quick else 50),
        growth_deletes=2 if quick else 5,
        growth_seed_clients=4 if quick else 16,
    )


def open_targets(args: argparse.Namespace, work: Path, wanted: list[str]) -> list[Target]:
    targets = []
    try:
        if DOCKYARD in wanted:
            if args.dockyard_url:
                if not (args.dockyard_access_key_id and args.dockyard_secret_access_key):
                    raise SystemExit("--dockyard-url needs --dockyard-access-key-id and --dockyard-secret-access-key")
                target = dockyard_target(
                    args.dockyard_url,
                    args.dockyard_access_key_id,
                    args.dockyard_secret_access_key,
                    args.dockyard_region,
                )
                target.gc_args = args.dockyard_gc_arg
                targets.append(target)
            else:
                targets.append(start_dockyard(work, args.workers, args.dockyard_arg))
        if REFERENCE in wanted:
            if args.reference_url:
                targets.append(reference_target(args.reference_url, args.reference_user, args.reference_password))
            else:
                targets.append(start_reference(work))
    except BaseException:
        for target in targets:
            target.stop()
        raise
    return targets


def server_notes(args: argparse.Namespace, targets: list[Target]) -> dict[str, str]:
    notes = {}
    for target in targets:
        if target.name == DOCKYARD:
            how = "started here" if target.process else f"at {target.url}"
            extra = " ".join(args.dockyard_arg)
            notes["Dockyard"] = (
                f"`dockyard serve --workers {args.workers}{' ' + extra if extra else ''}` ({how}); every request "
                "carries a real ECR token (HTTP Basic AWS:<GetAuthorizationToken password>), checked on every request"
            )
        else:
            how = "started here" if target.process else f"at {target.url}"
            auth = "no authentication" if not target.authorization else "HTTP Basic"
            notes["Reference"] = (
                f"{reference_version()} ({how}), filesystem storage, in-memory blob descriptor cache, "
                f"access log off, {auth}"
            )
    return notes


def write_report(path: Path, text: str) -> None:
    kept = ""
    if path.exists():
        old = path.read_text()
        if KEEP_MARKER in old:
            kept = old.split(KEEP_MARKER, 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n" + KEEP_MARKER + (kept or "\n"))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(ALL_SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))} (known: {', '.join(ALL_SCENARIOS)})")
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    rounds = args.rounds or (1 if args.quick else 3)
    began = time.monotonic()
    load_before = os.getloadavg()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = build_settings(args, work, rounds)
    results = Results()
    targets = open_targets(args, work, wanted)
    try:
        if "machine" in chosen:
            size = 64 * MIB if args.quick else GIB
            results.machine = machine.limits(work / "machine", size)
            _say(f"machine: {results.machine}")
        for number in range(rounds):
            order = targets if number % 2 == 0 else list(reversed(targets))
            for name in chosen:
                if name == "machine":
                    continue
                for target in order:
                    _say(f"round {number + 1}/{rounds}: {name} on {target.name}")
                    scenarios.SCENARIOS[name](settings, target, results)
        info = RunInfo(
            command="python -m bench " + shlex.join(argv),
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            rounds=rounds,
            machine=machine.describe(),
            servers=server_notes(args, targets),
            duration_seconds=time.monotonic() - began,
            load=(load_before, os.getloadavg()),
        )
        write_report(args.output, render(results, info))
        _say(f"wrote {args.output}")
    finally:
        for target in targets:
            target.stop()
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

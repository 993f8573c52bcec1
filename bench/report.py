"""docs/benchmarks.md: the machine, the command, the date, and the figures with their ratios."""

from __future__ import annotations

from dataclasses import dataclass

from bench.results import DOCKYARD, REFERENCE, Results


@dataclass
class RunInfo:
    command: str
    date: str
    rounds: int
    machine: dict[str, str]
    servers: dict[str, str]
    duration_seconds: float
    # 1/5/15-minute load averages at the start and the end: how much else the machine was running.
    load: tuple[tuple[float, float, float], tuple[float, float, float]] = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _goal(results: Results, key: str) -> str:
    figure = results.figures[key]
    parts = []
    if figure.goal == "ratio":
        parts.append("≥ 1.0×" if figure.higher_is_better else "≤ 1.0×")
    elif figure.goal == "bound" and figure.bound is not None:
        unit = figure.unit if figure.unit == "×" else f" {figure.unit}"
        parts.append(f"{'≥' if figure.higher_is_better else '≤'} {figure.bound:g}{unit}")
    limit = results.machine_limit(figure.limit)
    if limit:
        parts.append(f"≥ {0.8 * limit:,.0f} MiB/s (80% of machine)")
    return ", ".join(parts)


# Figures measured on Dockyard alone (no reference column), reported in a section of their own.
DOCKYARD_ONLY_PREFIX = "growth-"


def figures_table(results: Results) -> list[str]:
    lines = [
        "| Figure | Unit | Dockyard | Reference | Dockyard / reference | Target | Met | Rounds (Dockyard; reference) |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for key, figure in results.figures.items():
        if key.startswith(DOCKYARD_ONLY_PREFIX):
            continue
        rounds = "; ".join(
            ", ".join(_number(v) for v in results.values[key].get(name, [])) or "–" for name in (DOCKYARD, REFERENCE)
        )
        lines.append(
            f"| {figure.label} | {figure.unit} | {_number(results.median(key, DOCKYARD))} "
            f"| {_number(results.median(key, REFERENCE))} | {_ratio(results.ratio(key))} "
            f"| {_goal(results, key)} | {results.verdict(key)} | {rounds} |"
        )
    return lines


def dockyard_only_table(results: Results) -> list[str]:
    lines = ["| Figure | Unit | Dockyard | Target | Met | Rounds |", "| --- | --- | ---: | --- | --- | --- |"]
    for key, figure in results.figures.items():
        if not key.startswith(DOCKYARD_ONLY_PREFIX):
            continue
        rounds = ", ".join(_number(v) for v in results.values[key].get(DOCKYARD, [])) or "–"
        lines.append(
            f"| {figure.label} | {figure.unit} | {_number(results.median(key, DOCKYARD))} "
            f"| {_goal(results, key)} | {results.verdict(key)} | {rounds} |"
        )
    return lines


def render(results: Results, info: RunInfo) -> str:
    lines = [
        "# Benchmarks: Dockyard and the CNCF reference registry, side by side",
        "",
        "Written by `python -m bench` (see `bench/`); rerun it to refresh this page.",
        "",
        f"- Date: {info.date}",
        f"- Command: `{info.command}`",
        f"- Rounds: {info.rounds} (the registries take turns, scenario by scenario; figures are medians)",
        f"- Wall time: {info.duration_seconds / 60:.1f} min",
        "- Load average (1, 5, 15 min) at start: {}; at end: {}".format(
            *(" / ".join(f"{v:.2f}" for v in sample) for sample in info.load)
        ),
    ]
    lines += [f"- {name}: {value}" for name, value in info.machine.items()]
    lines += [f"- {name}: {value}" for name, value in info.servers.items()]
    if results.machine:
        lines += ["", "## What the machine allows", "", "| Measure | MiB/s |", "| --- | ---: |"]
        lines += [f"| {name} | {value:,.0f} |" for name, value in results.machine.items()]
        push, pull = results.machine_limit("push"), results.machine_limit("pull")
        lines += [
            "",
            f"A push can go no faster than its slowest unavoidable step (hashing, durable write, the wire): "
            f"{_number(push)} MiB/s; a pull no faster than the wire: {_number(pull)} MiB/s.",
        ]
    lines += ["", "## Figures", "", *figures_table(results)]
    if any(key.startswith(DOCKYARD_ONLY_PREFIX) for key in results.figures):
        lines += [
            "",
            "## Growth: cost per request as the data grows (Dockyard only)",
            "",
            "The reference registry has no ECR API, so these are Dockyard's alone. Seeded through the registry "
            "API (not timed); the scenario runs once per run and measures each operation once per round at each "
            "size. The ratio rows compare the largest size with the smallest.",
            "",
            *dockyard_only_table(results),
        ]
    if results.notes:
        lines += ["", "## Notes from this run", ""]
        lines += [f"- {note}" for note in results.notes]
    return "\n".join(lines) + "\n"

"""Figures, their values per registry and round, and what the issue wants of each."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

DOCKYARD, REFERENCE = "dockyard", "reference"


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    # Which machine limit a throughput is held against ("push" or "pull"), if any.
    limit: str | None = None
    # The target: "ratio" (at least as good as the reference), or an absolute bound.
    goal: str = "ratio"
    bound: float | None = None


@dataclass
class Results:
    figures: dict[str, Figure] = field(default_factory=dict)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    machine: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure, target: str, value: float) -> None:
        self.figures.setdefault(figure.key, figure)
        self.values.setdefault(figure.key, {}).setdefault(target, []).append(value)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def median(self, key: str, target: str) -> float | None:
        values = self.values.get(key, {}).get(target)
        return statistics.median(values) if values else None

    def ratio(self, key: str) -> float | None:
        """Dockyard / reference, medians."""
        mine, theirs = self.median(key, DOCKYARD), self.median(key, REFERENCE)
        if mine is None or theirs is None or theirs == 0:
            return None
        return mine / theirs

    def machine_limit(self, kind: str | None) -> float | None:
        """What the machine allows a push or a pull: the slowest step each one cannot skip."""
        if not self.machine or kind is None:
            return None
        wire = self.machine.get("loopback TCP, one connection")
        if kind == "push":
            steps = [self.machine.get("sha256, one core"), self.machine.get("disk write + fsync"), wire]
        else:
            steps = [wire]
        known = [s for s in steps if s]
        return min(known) if known else None

    def verdict(self, key: str) -> str:
        """Whether Dockyard meets the issue's target for this figure: "yes", "no" or ""."""
        figure = self.figures[key]
        mine = self.median(key, DOCKYARD)
        if mine is None:
            return ""
        checks: list[bool] = []
        if figure.goal == "ratio":
            ratio = self.ratio(key)
            if ratio is not None:
                checks.append(ratio >= 1.0 if figure.higher_is_better else ratio <= 1.0)
        elif figure.bound is not None:
            checks.append(mine >= figure.bound if figure.higher_is_better else mine <= figure.bound)
        limit = self.machine_limit(figure.limit)
        if limit:
            checks.append(mine >= 0.8 * limit)
        if not checks:
            return ""
        return "yes" if all(checks) else "no"

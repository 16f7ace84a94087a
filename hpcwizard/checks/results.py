"""A check's answer: one row of ``hpcwizard check`` and of the wizard's
preflight step (ok, warn or block, each with a fix), and a whole run's rows.

A leaf of :mod:`hpcwizard.checks`: the preflight groups and the checks other
packages contribute (:mod:`hpcwizard.prepare.check`) build their rows from it
without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hpcwizard.checks.space import Gauge, Level


@dataclass(frozen=True)
class CheckResult:
    group: str  # token | access | space | training | slurm | environment
    name: str
    level: Level
    message: str  # one short line: what a person takes in at a glance
    fix: str = ""
    detail: str = ""  # more about it (where from, the breakdown), shown on request
    gauge: Gauge | None = None  # space rows: needed against free (or the quota)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["level"] = self.level.value
        return data


@dataclass
class Preflight:
    results: list[CheckResult] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return any(r.level == Level.BLOCK for r in self.results)

    def counts(self) -> dict[str, int]:
        counts = {level.value: 0 for level in Level}
        for result in self.results:
            counts[result.level.value] += 1
        return counts


def ok(group: str, name: str, message: str, detail: str = "") -> CheckResult:
    return CheckResult(group, name, Level.OK, message, detail=detail)


def warn(group: str, name: str, message: str, fix: str) -> CheckResult:
    return CheckResult(group, name, Level.WARN, message, fix)


def block(group: str, name: str, message: str, fix: str) -> CheckResult:
    return CheckResult(group, name, Level.BLOCK, message, fix)

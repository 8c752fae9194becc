"""The noise floor: how much a metric moves between seeds, estimated where selection looks.

A floor taken once from the seed program is wrong where it matters: on ``tiny`` the seed's mse
moves by 0.2 between seeds while the best children sit at 0.002, so every near-best child
looked "within noise". So the floor here is

- **measured on every variant evaluated more than once**: the seed's ``noise_seeds`` first, then
  each recheck (rechecks happen exactly where a gain is in doubt, i.e. near the best), updated
  as each one settles;
- **local**: at a given value (the best's), only the ``NEAREST`` measured variants closest to it
  count (on a relative floor, those within a decade of it, else the nearest one), their
  variances pooled;
- **relative when the metric has one sign**: the spread is measured on the log of the values,
  so a metric spanning decades gets a floor in proportion (σ of log ≈ relative σ), and the floor
  at a value ``v`` is ``|v| × σ_log``. A metric that crosses zero keeps an absolute floor.

A program that declares ``[metric] noise`` is believed: that value is the floor everywhere.
"""

from __future__ import annotations

import math
import statistics

NEAREST = 3
"""How many measured variants (nearest to the value asked about) the floor pools."""
DECADE = math.log(10.0)
"""On a relative floor, measurements whose mean lies within this (in log) of the value pool."""


class NoiseFloor:
    """Repeated measurements of variants, and the floor they imply near a value."""

    def __init__(self, declared: float | None = None):
        self.declared = declared
        self.groups: dict[str, list[float]] = {}
        """Each variant's metric values over its evaluations (two or more)."""

    def add(self, variant_id: str, values: list[float]) -> None:
        """Record (or replace) a variant's values; fewer than two say nothing of noise."""
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) >= 2:
            self.groups[variant_id] = finite

    @property
    def relative(self) -> bool:
        """Whether every value seen has one sign (and none is 0): then spread is relative."""
        values = [v for g in self.groups.values() for v in g]
        return bool(values) and (all(v > 0 for v in values) or all(v < 0 for v in values))

    def at(self, value: float | None) -> float | None:
        """The floor (an absolute metric difference) near ``value``; None before any variant
        was measured twice (and no floor is declared)."""
        if self.declared is not None:
            return self.declared
        if not self.groups:
            return None
        relative = self.relative and value is not None and value != 0 and \
            (value > 0) == (next(iter(self.groups.values()))[0] > 0)
        scale = abs(value) if relative and value is not None else 1.0
        groups = [[math.log(abs(v)) for v in g] if relative else g for g in self.groups.values()]
        if value is not None:
            centre = math.log(abs(value)) if relative else value
            groups.sort(key=lambda g: abs(statistics.fmean(g) - centre))
            if relative:  # within a decade of the value, else the nearest measurement alone
                close = [g for g in groups if abs(statistics.fmean(g) - centre) <= DECADE]
                groups = close or groups[:1]
        near = groups[:NEAREST]
        dof = sum(len(g) - 1 for g in near)
        pooled = sum(statistics.variance(g) * (len(g) - 1) for g in near) / dof
        return math.sqrt(pooled) * scale

    def relative_at(self, value: float | None) -> float | None:
        """The floor near ``value`` as a fraction of ``|value|`` (None when either is unknown
        or the value is 0)."""
        floor = self.at(value)
        if floor is None or value is None or value == 0:
            return None
        return floor / abs(value)

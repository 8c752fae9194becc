"""Selection: which variants are parents, which children are kept, and when a gain is real.

Two strategies ship: ``greedy`` (the paper's loop: the best so far is the only parent and a child
replaces it when better) and ``elitist`` (the best few are kept; parents are drawn by tournament).
Both rank by ``orchestrator.result.Score``, so the metric's direction is respected and a failed
variant (no value) ranks below every real one.

Acceptance is noise-aware. A child that beats the best by less than ``k`` times the program's
noise floor may have drawn a lucky seed, so it is evaluated again with another seed before it is
crowned; its value is then the mean over its evaluations.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from orchestrator.result import Goal, Score


@dataclass(frozen=True)
class Candidate:
    variant_id: str
    value: float | None
    """Mean metric over the variant's evaluations; None when any of them failed."""
    evaluations: int = 1
    idx: int = 0


class Verdict(StrEnum):
    ADMITTED = "admitted"
    RECHECK = "recheck"
    REJECTED = "rejected"


class Strategy(Protocol):
    name: str

    def pick(self, members: Sequence[Candidate], rank, rng: random.Random) -> Candidate:
        """Choose one parent among ``members`` (never empty); ``rank`` maps a member to a Score."""
        ...

    def admit(self, members: Sequence[Candidate], child: Candidate, rank) -> list[Candidate]:
        """The population after ``child`` is offered to it."""
        ...


class Greedy:
    """The paper's loop: one member, the best so far; a child replaces it only when better."""

    name = "greedy"

    def pick(self, members: Sequence[Candidate], rank, rng: random.Random) -> Candidate:
        return members[0]

    def admit(self, members: Sequence[Candidate], child: Candidate, rank) -> list[Candidate]:
        if not members or rank(members[0]) < rank(child):
            return [child]
        return list(members)


class Elitist:
    """Keep the ``size`` best; draw a parent as the best of ``tournament`` random members."""

    name = "elitist"

    def __init__(self, size: int = 8, tournament: int = 3):
        self.size = size
        self.tournament = tournament

    def pick(self, members: Sequence[Candidate], rank, rng: random.Random) -> Candidate:
        entrants = rng.sample(list(members), min(self.tournament, len(members)))
        return max(entrants, key=rank)

    def admit(self, members: Sequence[Candidate], child: Candidate, rank) -> list[Candidate]:
        pool = sorted([*members, child], key=lambda c: (rank(c), -c.idx), reverse=True)
        return pool[: self.size]


def make_strategy(name: str, population: int = 8, tournament: int = 3) -> Strategy:
    if name == "greedy":
        return Greedy()
    if name == "elitist":
        return Elitist(population, tournament)
    raise ValueError(f"unknown selection strategy {name!r}: greedy or elitist")


class Population:
    """The current parents, kept by a strategy, with noise-aware crowning of a new best."""

    def __init__(self, strategy: Strategy, goal: Goal, *, k: float = 2.0, rechecks: int = 1):
        self.strategy = strategy
        self.goal = goal
        self.k = k
        self.rechecks = rechecks
        self.members: list[Candidate] = []

    def rank(self, candidate: Candidate) -> Score:
        return Score(candidate.value, self.goal)

    @property
    def best(self) -> Candidate | None:
        ranked = [m for m in self.members if m.value is not None]
        return max(ranked, key=self.rank) if ranked else None

    def pick(self, rng: random.Random) -> Candidate | None:
        """A parent, or None while the population is empty (the loop then uses the seed)."""
        return self.strategy.pick(self.members, self.rank, rng) if self.members else None

    def consider(self, child: Candidate, noise: float | None) -> Verdict:
        """Offer a child whose evaluations are all done.

        Returns:
            RECHECK when it beats the best by less than ``k × noise`` and may be evaluated again;
            otherwise ADMITTED or REJECTED by the strategy.
        """
        if child.value is None:
            return Verdict.REJECTED
        best = self.best
        if best is not None and best.value is not None and self.rank(best) < self.rank(child):
            gain = abs(child.value - best.value)
            if noise and gain < self.k * noise and child.evaluations <= self.rechecks:
                return Verdict.RECHECK
        self.members = self.strategy.admit(self.members, child, self.rank)
        return Verdict.ADMITTED if child in self.members else Verdict.REJECTED

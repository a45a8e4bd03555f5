"""A training mix of several optimizee families (e.g. the MNIST MLP with sigmoid and with ReLU,
and quadratics), so one learned optimizer meets more than one kind of landscape.

Each batch of problems comes from one member, chosen by the batch's first seed with the
configured weights: the trainer's seed stream (checkpointed) makes the choice of every epoch
reproducible, and a given seed always gives the same problem. Validation scores φ on every member
(`validation_problems`), so best.pt is the best on the whole mix, not on whichever member the
validation seeds happened to pick.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from l2o.errors import L2OError
from l2o.optimizees.base import Family, Problem, generator_for

_MEMBER_STREAM = 0x5EED  # keeps the member draw independent of the member's own use of the seed


class Mix(Family):
    """`members`: {name: family}; `weights`: {name: weight} (missing names weigh 1)."""

    training_mix = True

    def __init__(self, members: Mapping[str, Family], weights: Mapping[str, float] | None = None):
        if not members:
            raise L2OError("optimizee.members is empty; a mix needs at least one optimizee family.")
        self.names = list(members)
        self.members = [members[n] for n in self.names]
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(self.names))
        if unknown:
            raise L2OError(f"optimizee.weights names {unknown}, which are not members ({self.names}).")
        w = [weights.get(n, 1.0) for n in self.names]
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 for v in w) or sum(w) <= 0:
            raise L2OError(f"optimizee.weights={weights!r} must be numbers >= 0 with a positive sum.")
        self.weights = torch.tensor(w, dtype=torch.float64) / sum(w)
        self.spec = self.members[0].spec
        self.description = "mix of " + ", ".join(f"{n} ({float(p):.2f})" for n, p in zip(self.names, self.weights))

    def member_index(self, seed: int) -> int:
        """Which member the batch led by `seed` comes from."""
        gen = generator_for(int(seed) ^ _MEMBER_STREAM)
        return int(torch.multinomial(self.weights, 1, generator=gen))

    def sample(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> Problem:
        return self.members[self.member_index(seeds[0])].sample(seeds, device)

    def validation_problems(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> list[Problem]:
        """One batch of the validation seeds from every member with weight > 0."""
        return [m.sample(seeds, device) for m, w in zip(self.members, self.weights) if w > 0]

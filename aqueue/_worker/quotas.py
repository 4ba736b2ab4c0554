"""How one claim's free slots are shared among the priority levels."""

from __future__ import annotations

from collections.abc import Sequence

from aqueue._core.settings import QueueSettings

__all__ = ["ReadQuotas", "read_weights"]


def read_weights(settings: QueueSettings) -> list[int]:
    """The weight of every level a claim reads: the priority levels, highest first, then the grouped jobs (given
    the default level's weight)."""
    default = settings.priorities[settings.priority_index(settings.default_priority)].weight
    return [*(p.weight for p in settings.priorities), default]


class ReadQuotas:
    """Splits free slots over the levels: strict, or a smooth weighted round robin kept across claims.

    Keeping the round robin's credits across claims makes the long-run shares match the weights even when each
    claim is for a single slot; a level with no work gives its share to the others (the claim script fills).
    """

    def __init__(self, weights: Sequence[int], strict: bool) -> None:
        self._weights = list(weights)
        self._strict = strict
        self._credits = [0] * len(self._weights)

    def split(self, free: int, groups: bool = True) -> list[int]:
        """How many of ``free`` reads each level gets, highest level first; the last level (the grouped jobs)
        gets none unless ``groups`` (the last claim saw groups waiting), so an empty level takes no share."""
        n = len(self._weights)
        if self._strict:
            return [free] + [0] * (n - 1)
        weights = self._weights if groups else [*self._weights[:-1], 0]
        total = sum(weights)
        rounds, rest = divmod(free, total)
        quotas = [w * rounds for w in weights]  # whole rounds give each level exactly its weight
        credits = self._credits
        for _ in range(rest):
            for i in range(n):
                credits[i] += weights[i]
            best = max(range(n), key=credits.__getitem__)
            credits[best] -= total
            quotas[best] += 1
        return quotas

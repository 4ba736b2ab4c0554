"""How one claim's free slots are shared among the priority levels."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ReadQuotas"]


class ReadQuotas:
    """Splits free slots over the levels: strict, or a smooth weighted round robin kept across claims.

    Keeping the round robin's credits across claims makes the long-run shares match the weights even when each
    claim is for a single slot; a level with no work gives its share to the others (the claim script fills).
    """

    def __init__(self, weights: Sequence[int], strict: bool) -> None:
        self._weights = list(weights)
        self._strict = strict
        self._credits = [0] * len(self._weights)

    def split(self, free: int) -> list[int]:
        """How many of ``free`` reads each level gets, highest level first."""
        n = len(self._weights)
        if self._strict:
            return [free] + [0] * (n - 1)
        total = sum(self._weights)
        rounds, rest = divmod(free, total)
        quotas = [w * rounds for w in self._weights]  # whole rounds give each level exactly its weight
        credits = self._credits
        for _ in range(rest):
            for i in range(n):
                credits[i] += self._weights[i]
            best = max(range(n), key=credits.__getitem__)
            credits[best] -= total
            quotas[best] += 1
        return quotas

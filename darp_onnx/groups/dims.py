"""Products of tensor dims where some dims are known only by name (symbolic batch, sequence)."""

from __future__ import annotations

from collections import Counter


class Prod:
    """A product of dims: an integer times a multiset of symbols."""

    def __init__(self, dims=(), value: int = 1, symbols: Counter | None = None) -> None:
        self.value, self.symbols = value, Counter(symbols or {})
        for d in dims:
            if isinstance(d, str):
                self.symbols[d] += 1
            else:
                self.value *= int(d)

    def __eq__(self, other) -> bool:
        return isinstance(other, Prod) and self.value == other.value and self.symbols == other.symbols

    def over(self, other: Prod) -> int | None:
        """self / other when it is a whole number without symbols, else None."""
        if other.value == 0 or self.value % other.value or self.symbols != other.symbols:
            return None
        return self.value // other.value

"""The capacity scripts' pseudo-random generator, mirrored in Python.

Randomness comes from the caller: every mutating script takes a seed as ARGV[1]
and draws from MINSTD (Park–Miller, multiplier 48271, modulus 2**31 - 1), which
is exact in Lua's doubles (state * 48271 < 2**47). Redis' own `math.random` is
not used: its seeding and quality differ between versions.

`Minstd` is the same generator in Python, so the reference model can predict
the very account a script picks from the same seed.
"""

from __future__ import annotations

MODULUS = 2_147_483_647  # 2**31 - 1, prime
MULTIPLIER = 48_271
WARM_UP = 2  # steps discarded after seeding so that adjacent seeds decorrelate


def seed_arg(seed: int) -> int:
    """Reduce any integer to a valid MINSTD state in [1, MODULUS - 1]."""
    return seed % (MODULUS - 1) + 1


class Minstd:
    """Python twin of the Lua PRNG in `scripts/_pump.lua`."""

    def __init__(self, seed: int):
        self.state = seed_arg(seed)
        for _ in range(WARM_UP):
            self.next()

    def next(self) -> int:
        self.state = self.state * MULTIPLIER % MODULUS
        return self.state

    def pick(self, n: int) -> int:
        """A 0-based index in range(n), from the high bits of the next draw."""
        return self.next() * n // MODULUS

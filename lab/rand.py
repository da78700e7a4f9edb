"""Named, independent random streams: one seed gives the same bytes on every run and machine.

Each part of the simulation draws from its own stream (keyed by the scenario seed and a name
such as ``("host", "hci-node-02")``), so adding a host or an incident does not shift the random
numbers every other part sees.
"""

from __future__ import annotations

import uuid
import zlib

import numpy as np
import numpy.typing as npt

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def stream(seed: int, *names: object) -> np.random.Generator:
    """A PCG64 generator for ``seed`` and the given names (stable across Python runs)."""
    keys = [seed & 0xFFFFFFFF] + [zlib.crc32(str(n).encode()) for n in names]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(keys)))


def token(rng: np.random.Generator, n: int, alphabet: str = _ALNUM) -> str:
    idx = rng.integers(0, len(alphabet), size=n)
    return "".join(alphabet[int(i)] for i in idx)


def uuid4(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> npt.NDArray[np.float64]:
    """A stationary AR(1) series with standard deviation ``sigma`` (slow, wandering noise)."""
    eps = rng.normal(0.0, sigma * np.sqrt(1.0 - phi * phi), size=n)
    out = np.empty(n, dtype=np.float64)
    x = float(rng.normal(0.0, sigma))
    for i in range(n):
        x = phi * x + float(eps[i])
        out[i] = x
    return out

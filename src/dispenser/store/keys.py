"""Per-epoch secret keys ("key shredding").

Every template is stored only after it has been sealed with the secret key of the epoch
in which it was admitted (epochs are `key_epoch_s` long on the store's clock). A key is
`transform.ROUNDS + 1` vectors of random signs defining a structured orthogonal transform
(random signs and fast Walsh-Hadamard transforms, see `dispenser.store.transform`). It
preserves dot products, so matching is unchanged: the probe is sealed with each live key
and compared with the rows of that key's epoch. When the last entry of an epoch is deleted
and the epoch is over, its key is overwritten with zeros. From then on any copy of one of
its templates that escaped zeroisation (freed memory, a runtime's scratch buffer) is a
random-looking vector that nobody can turn back into the template (docs/privacy.md says
what such a copy still reveals).

Keys live in one preallocated array of `slots` keys, locked against swap (`mlock`, where
RLIMIT_MEMLOCK allows) like the template rows. The number of keys alive at once is
bounded: the store sweeps before every admission, so every live row was admitted less
than `retention` ago and belongs to one of at most ceil(retention / epoch) + 1 epochs; we
allocate one more slot than that.

Generation: uniform numbers from a PCG64 generator seeded with 128 bits from `secrets`
(the OS CSPRNG), drawn into a locked scratch buffer the store owns, turned into signs
element by element by a numba loop writing straight into the key slot (a numpy expression
would go through a hidden temporary array), then the scratch is zeroised and the
generator's state overwritten. Residual risk, documented in docs/privacy.md: the 128-bit
seed passes through a Python int we cannot wipe.
"""

from __future__ import annotations

import math
import secrets

import numpy as np

from dispenser.privacy.memory import locked_buffer, unlock_pages
from dispenser.store.transform import ROUNDS, padded_dim, signs_from_uniforms

NO_EPOCH = -1


def key_slots_needed(retention_s: float, key_epoch_s: float) -> int:
    """Key slots that always suffice: epochs spanned by `retention` plus current plus one."""
    return math.ceil(retention_s / key_epoch_s) + 2


class EpochKeys:
    """The key array and its bookkeeping. Not thread-safe: the store's lock guards it."""

    def __init__(self, dim: int, slots: int, key_epoch_s: float) -> None:
        self.key_epoch_s = key_epoch_s
        self.padded_dim = padded_dim(dim)
        # keys[k] holds the signs of epoch epoch[k]'s key; refs[k] counts slots sealed
        # under it.
        self.keys = locked_buffer((slots, ROUNDS + 1, self.padded_dim), np.float32)
        self.epoch = np.full(slots, NO_EPOCH, dtype=np.int64)
        self.refs = np.zeros(slots, dtype=np.int32)
        self.shredded = 0
        self._uniform = locked_buffer((ROUNDS + 1, self.padded_dim), np.float64)

    def epoch_at(self, now: float) -> int:
        """The epoch number of time `now`."""
        return math.floor(now / self.key_epoch_s)

    def current(self, now: float) -> int:
        """Index of the current epoch's key, generating it on first use in the epoch."""
        epoch = self.epoch_at(now)
        for k in range(self.epoch.shape[0]):
            if self.epoch[k] == epoch:
                return k
        free = np.flatnonzero(self.epoch == NO_EPOCH)
        if free.size == 0:
            # Impossible when the store sweeps before admitting (see module docstring).
            raise RuntimeError("internal: every key slot is in use; the store was not swept")
        k = int(free[0])
        self._generate_into(k)
        self.epoch[k] = epoch
        return k

    def shred_unused(self, now: float) -> int:
        """Zeroise every key with no stored row whose epoch is over; return how many."""
        current = self.epoch_at(now)
        count = 0
        for k in range(self.epoch.shape[0]):
            if self.epoch[k] != NO_EPOCH and self.refs[k] == 0 and self.epoch[k] != current:
                self._shred(k)
                count += 1
        return count

    def zeroise(self) -> None:
        """Overwrite every key and the generation scratch with zeros."""
        self.keys.fill(0.0)
        self._uniform.fill(0.0)
        self.epoch.fill(NO_EPOCH)
        self.refs.fill(0)

    def unlock(self) -> None:
        """Release the swap locks (after `zeroise`, before the arrays are freed)."""
        unlock_pages(self.keys)
        unlock_pages(self._uniform)

    @property
    def scratch(self) -> np.ndarray:
        """The buffer a key is generated in (zeros between generations), for audits."""
        return self._uniform

    def live(self) -> int:
        """How many keys currently exist (not zeroised)."""
        return int(np.count_nonzero(self.epoch != NO_EPOCH))

    def _shred(self, k: int) -> None:
        self.keys[k].fill(0.0)
        self.epoch[k] = NO_EPOCH
        self.refs[k] = 0
        self.shredded += 1

    def _generate_into(self, k: int) -> None:
        bit_generator = np.random.PCG64(secrets.randbits(128))
        try:
            np.random.Generator(bit_generator).random(out=self._uniform)
            signs_from_uniforms(self._uniform, self.keys[k])
        finally:
            self._uniform.fill(0.0)
            # The generator's state would regenerate the key: overwrite it.
            bit_generator.state = {"bit_generator": "PCG64",
                                   "state": {"state": 0, "inc": 1},
                                   "has_uint32": 0, "uinteger": 0}

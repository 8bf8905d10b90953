"""Per-epoch secret rotations ("key shredding", issue 8).

Every template is stored only after multiplication by a secret random orthogonal matrix
(the *key* of the epoch in which it was admitted; epochs are `key_epoch_s` long on the
store's clock). A rotation preserves dot products exactly in real arithmetic, so matching
is unchanged: the probe is rotated with each live key and compared with the rows of that
key's epoch. When the last entry of an epoch is deleted and the epoch is over, its key is
overwritten with zeros. From then on any copy of one of its templates that escaped
zeroisation (freed memory, a runtime's scratch buffer) is a random-looking vector that
cannot be linked back to a face.

Keys live in one preallocated array of `slots` matrices, locked against swap (`mlock`,
where RLIMIT_MEMLOCK allows) like the template rows. The number of keys alive at once
is bounded: the store sweeps before every admission, so every live row was admitted less
than `retention` ago and belongs to one of at most ceil(retention / epoch) + 1 epochs; we
allocate one more slot than that.

Generation: a Gaussian d x d matrix from a PCG64 generator seeded with 128 bits from
`secrets` (the OS CSPRNG), orthonormalised in place by a numba Gram-Schmidt (so every
intermediate stays in buffers we own and zeroise), then cast into the key slot by a numba
loop (a numpy cast assignment may go through a hidden buffer). The generator's state is
overwritten right after use. Residual risk, documented in docs/privacy.md: the 128-bit
seed passes through a Python int we cannot wipe.
"""

from __future__ import annotations

import math
import secrets

import numpy as np

from dispenser.privacy.memory import locked_buffer, unlock_pages
from dispenser.store.kernels import copy_into, orthonormalise_rows

NO_EPOCH = -1


def key_slots_needed(retention_s: float, key_epoch_s: float) -> int:
    """Key slots that always suffice: epochs spanned by `retention` plus current plus one."""
    return math.ceil(retention_s / key_epoch_s) + 2


class EpochKeys:
    """The key array and its bookkeeping. Not thread-safe: the store's lock guards it."""

    def __init__(self, dim: int, slots: int, key_epoch_s: float) -> None:
        self.key_epoch_s = key_epoch_s
        # keys[k] is the rotation of epoch epoch[k]; refs[k] counts slots stored under it.
        self.keys = locked_buffer((slots, dim, dim), np.float32)
        self.epoch = np.full(slots, NO_EPOCH, dtype=np.int64)
        self.refs = np.zeros(slots, dtype=np.int32)
        self.shredded = 0
        self._gaussian = locked_buffer((dim, dim), np.float64)

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
        self._gaussian.fill(0.0)
        self.epoch.fill(NO_EPOCH)
        self.refs.fill(0)

    def unlock(self) -> None:
        """Release the swap locks (after `zeroise`, before the arrays are freed)."""
        unlock_pages(self.keys)
        unlock_pages(self._gaussian)

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
            np.random.Generator(bit_generator).standard_normal(out=self._gaussian)
            orthonormalise_rows(self._gaussian)
            copy_into(self._gaussian, self.keys[k])
        finally:
            self._gaussian.fill(0.0)
            # The generator's state would regenerate the key: overwrite it.
            bit_generator.state = {"bit_generator": "PCG64",
                                   "state": {"state": 0, "inc": 1},
                                   "has_uint32": 0, "uinteger": 0}

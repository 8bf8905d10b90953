"""The ephemeral template store: RAM-only ring buffer, deny window, hard delete at retention.

The privacy promise lives here: see `dispenser.store.store` for the layout, lifetimes and
locking, `dispenser.store.keys` for key shredding, `dispenser.store.exit_hooks` for
zeroisation on SIGTERM/SIGINT, and tests/audit/ for the tests that prove each guarantee.
"""

from dispenser.store.store import Decision, Reservation, StoreCounters, TemplateStore

__all__ = ["Decision", "Reservation", "StoreCounters", "TemplateStore"]

"""Process-wide privacy hardening (invariant 5): memory locked against swap, no core
dumps, and an audit hook that refuses sockets and unexpected file writes.

Each module has one job:

- `memory`: lock buffers out of swap (`mlock`), zeroise them, disable core dumps.
- `guard`: the `sys.addaudithook` guard against sockets and file writes.
- `memscan`: scan this process's own memory for byte patterns (the audit's proof that no
  copy of a template survives its retention limit).
"""

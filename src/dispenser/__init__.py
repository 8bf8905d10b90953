"""dispenser: an open, auditable face-matching paper dispenser.

The package turns a face into an identity template on the device, compares it only with
the templates of people served in the last minutes (held in RAM), and hard-deletes every
template at the retention limit. See README.md and docs/ for the guarantees and how they
are tested.
"""

__version__ = "0.1.0"

"""`python -m dispenser` is the same as the `dispenser` command."""

from dispenser.cli import main

raise SystemExit(main())

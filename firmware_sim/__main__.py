"""`python -m firmware_sim`: the simulated motor controller on a pty (see console.py)."""

import sys

from firmware_sim.console import main

sys.exit(main())

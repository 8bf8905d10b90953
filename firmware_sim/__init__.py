"""The motor controller's firmware logic running on a PC against a simulated motor and
paper roll, served on a pseudo-terminal so the host driver cannot tell it from hardware."""

"""`connect_motor`: port "sim" starts the simulated controller in-process and closes it
with the link; any other port is handed to MotorLink as a device path, which knows no
"sim" of its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dispenser.clock import BootClock
from dispenser.config import SerialSettings
from dispenser.motor import MotorError, MotorLink
from dispenser.motor_connection import connect_motor


def test_sim_starts_the_simulated_controller_and_close_stops_it() -> None:
    with connect_motor(SerialSettings(port="sim"), BootClock(), sim_speed=20.0) as motor:
        assert motor.simulator is not None
        path = motor.simulator.device_path
        assert motor.link.port == path and os.path.exists(path)
        assert motor.link.dispense(100).ok
        assert motor.simulator.paper_out_mm >= 100
    assert not os.path.exists(path)  # the simulator stopped and removed its pty link


def test_a_device_path_is_opened_as_it_is(tmp_path: Path) -> None:
    missing = str(tmp_path / "ttyACM9")
    with pytest.raises(MotorError, match=f"no serial device {missing}"):
        connect_motor(SerialSettings(port="sim"), BootClock(), port=missing)


def test_the_motor_link_itself_has_no_sim_port() -> None:
    with pytest.raises(MotorError, match="no serial device sim "):
        MotorLink(SerialSettings(port="sim"), BootClock()).open()

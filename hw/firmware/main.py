# main.py: the motor controller firmware for a Raspberry Pi Pico (RP2040) under MicroPython.
#
# This file is only the board: pins, the motor driver's PWM, the sensors, the watchdog and
# the USB-CDC byte stream. Everything that decides anything (framing, CRC, requests,
# idempotency, the safety limits) is in controller.py and protocol.py, the very files the
# host's simulator runs (firmware_sim/controller.py, src/dispenser/motor/protocol.py;
# hw/firmware/ links to them and `mpremote cp` copies them, see hw/README.md).
#
# Maintenance: hold the no-scan button while plugging the Pico in and this firmware does not
# start; the MicroPython REPL stays available for mpremote (flashing, diagnostics).

import os
import select
import sys
from time import sleep_ms, ticks_diff, ticks_ms

import micropython
import protocol as P
from controller import Controller, Limits
from machine import PWM, WDT, Pin, mem32

# --- wiring (hw/README.md, "Wiring") ------------------------------------------------------
PIN_MOTOR_EN = 2        # DRV8876 EN (PWM), PH/EN mode
PIN_MOTOR_PH = 3        # DRV8876 PH (direction), held at forward
PIN_MOTOR_NSLEEP = 4    # DRV8876 nSLEEP, high = driver awake
PIN_MOTOR_NFAULT = 5    # DRV8876 nFAULT, open drain, low = over-current / over-temperature
PIN_ENCODER_A = 6       # measuring-wheel encoder channel A (via 10k/20k divider from 5 V)
PIN_PAPER = 7           # reflective paper sensor, low = paper seen
PIN_DOOR = 8            # door reed contact to GND, closed (low) = door shut
PIN_BUTTON = 9          # no-scan button to GND, low = pressed

PWM_HZ = 20_000         # above hearing
DUTY = 52_000           # of 65535: ~80 %, the feed speed the limits below assume
HAS_ENCODER = True      # False: length from on-time x NOMINAL_MM_S (no jam detection)
NOMINAL_MM_S = 150
# Measuring wheel: 20.0 mm diameter (62.83 mm round), AMT102-V set to 48 PPR, A rising
# edges only: 1.309 mm per count, kept as micrometres to stay in small ints.
UM_PER_COUNT = 1309
BUTTON_DEBOUNCE_MS = 50
WATCHDOG_MS = 1000

# RP2040 watchdog scratch registers 0..2: they survive a watchdog or soft reset (not a
# power-on reset); the boot ROM uses 4..7, MicroPython none of 0..3.
_SCRATCH = (0x4005800C, 0x40058010, 0x40058014)


class Board:
    """The Hal (firmware_sim/hal.py) for this wiring."""

    def __init__(self):
        self.features = P.CAP_PAPER_SENSOR | P.CAP_DOOR_SWITCH | P.CAP_BUTTON | \
            P.CAP_CURRENT_SENSE | P.CAP_RETAINED_RECORD | (P.CAP_ENCODER if HAS_ENCODER else 0)
        Pin(PIN_MOTOR_PH, Pin.OUT, value=0)
        self._pwm = PWM(Pin(PIN_MOTOR_EN))
        self._pwm.freq(PWM_HZ)
        self._pwm.duty_u16(0)
        Pin(PIN_MOTOR_NSLEEP, Pin.OUT, value=1)
        self._nfault = Pin(PIN_MOTOR_NFAULT, Pin.IN, Pin.PULL_UP)
        self._paper = Pin(PIN_PAPER, Pin.IN, Pin.PULL_UP)
        self._door = Pin(PIN_DOOR, Pin.IN, Pin.PULL_UP)
        self._on = False
        self._on_since = 0
        self._on_total_ms = 0
        self._counts = 0
        self._presses = 0
        self._last_press = ticks_ms()
        if HAS_ENCODER:
            Pin(PIN_ENCODER_A, Pin.IN).irq(self._count, Pin.IRQ_RISING)
        Pin(PIN_BUTTON, Pin.IN, Pin.PULL_UP).irq(self._press, Pin.IRQ_FALLING)

    def _count(self, pin):
        self._counts += 1

    def _press(self, pin):
        now = ticks_ms()
        if ticks_diff(now, self._last_press) >= BUTTON_DEBOUNCE_MS:
            self._presses += 1
        self._last_press = now

    def motor(self, on):
        if on and not self._on:
            self._on_since = ticks_ms()
        elif self._on and not on:
            self._on_total_ms += ticks_diff(ticks_ms(), self._on_since)
        self._on = on
        self._pwm.duty_u16(DUTY if on else 0)

    def position_mm(self):
        if HAS_ENCODER:
            return self._counts * UM_PER_COUNT // 1000
        ms = self._on_total_ms
        if self._on:
            ms += ticks_diff(ticks_ms(), self._on_since)
        return ms * NOMINAL_MM_S // 1000

    def paper_present(self):
        return self._paper.value() == 0

    def door_open(self):
        return self._door.value() == 1

    def fault(self):
        return self._nfault.value() == 0

    def button_count(self):
        return self._presses

    def paper_left_mm(self):
        return -1

    def retained_load(self):
        return [mem32[a] & 0xFFFFFFFF for a in _SCRATCH]

    def retained_store(self, words):
        for i in range(len(_SCRATCH)):  # (no zip(strict=) in MicroPython)
            mem32[_SCRATCH[i]] = words[i]


class Millis:
    """A millisecond counter that does not wrap (ticks_ms wraps after ~12 days)."""

    def __init__(self):
        self._last = ticks_ms()
        self._total = 0

    def __call__(self):
        now = ticks_ms()
        self._total += ticks_diff(now, self._last)
        self._last = now
        return self._total


def main():
    if Pin(PIN_BUTTON, Pin.IN, Pin.PULL_UP).value() == 0:
        print("dispenser firmware: button held at boot, staying in the REPL")
        return
    micropython.kbd_intr(-1)  # 0x03 is data on this link, not Ctrl-C
    board = Board()
    watchdog = WDT(timeout=WATCHDOG_MS)
    out = sys.stdout.buffer
    ctl = Controller(board, Millis(), out.write, int.from_bytes(os.urandom(2), "little"),
                     Limits(speed_mm_s=NOMINAL_MM_S))
    inp = sys.stdin.buffer
    poller = select.poll()
    poller.register(sys.stdin, select.POLLIN)
    buf = bytearray(64)
    while True:
        n = 0
        while n < len(buf) and poller.poll(0):
            buf[n] = inp.read(1)[0]
            n += 1
        if n:
            ctl.receive(bytes(buf[:n]))
        ctl.tick()
        watchdog.feed()
        if not n:
            sleep_ms(1)


if __name__ == "__main__":
    main()

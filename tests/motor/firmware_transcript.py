# A scripted session with the controller logic, printed as hex: run by CPython and by
# MicroPython (tests/motor/test_firmware_files.py), which must print the same bytes.
# MicroPython-compatible on purpose: no typing, no f-string format specs, no dataclasses.
import protocol as P
from controller import Controller, Limits


class Board:
    features = P.CAP_ENCODER | P.CAP_PAPER_SENSOR | P.CAP_DOOR_SWITCH | P.CAP_BUTTON

    def __init__(self):
        self.on = False
        self.pos = 0
        self.paper = True
        self.door = False
        self.buttons = 0
        self.retained = None

    def motor(self, on):
        self.on = on

    def position_mm(self):
        return self.pos

    def paper_present(self):
        return self.paper

    def door_open(self):
        return self.door

    def fault(self):
        return False

    def button_count(self):
        return self.buttons

    def paper_left_mm(self):
        return -1

    def retained_load(self):
        return self.retained

    def retained_store(self, words):
        self.retained = list(words)


out = []
clock = [0]
board = Board()
ctl = Controller(board, lambda: clock[0], out.append, 0x3039, Limits(jam_ms=100))


def run(ms):
    for _ in range(ms):
        clock[0] += 1
        if board.on:
            board.pos += 1
        ctl.tick()


def send(t, seq, payload=b""):
    ctl.receive(P.encode_frame(t, seq, payload))


send(P.HELLO, 1, bytes((1,)) + P.u16(42) + P.u16(3000))
send(P.STATUS, 2)
send(P.DISPENSE, 3, P.u16(200) + P.u16(0x3039))
run(50)
send(P.DISPENSE, 3, P.u16(200) + P.u16(0x3039))
send(P.DISPENSE, 4, P.u16(200) + P.u16(0x3039))
run(200)
send(P.DISPENSE, 3, P.u16(200) + P.u16(0x3039))
board.buttons = 2
board.door = True
run(2)
send(P.DISPENSE, 5, P.u16(200) + P.u16(0x3039))
board.door = False
send(P.DISPENSE, 6, P.u16(600) + P.u16(0x3039))
run(30)
board.pos -= 30
run(150)
send(P.HEARTBEAT, 7)
send(0x7E, 8)
send(P.STATUS, 9, b"\x01")
ctl.receive(b"garbage\x00\x05\x01\x02\x00")
send(P.ABORT, 10)
for frame in out:
    print(P.cobs_decode(frame[:-1]).hex())
print("crc", P.crc16(b"123456789"), P.crc16_portable(b"123456789"))

"""The controller firmware logic alone (firmware_sim/controller.py, the file the RP2040
runs), driven frame by frame on a fake board and a hand-moved millisecond clock."""

from __future__ import annotations

from motor_rig import FakeBoard

from dispenser.motor import protocol as P
from firmware_sim.controller import HEARTBEAT_MAX_MS, HEARTBEAT_MIN_MS, Controller, Limits

BOOT = 0x1111


class Rig:
    def __init__(self, board: FakeBoard | None = None, boot_id: int = BOOT,
                 limits: Limits | None = None) -> None:
        self.board = board if board is not None else FakeBoard()
        self.t = 0
        self.out: list[P.Frame] = []
        self._parser = P.FrameParser()
        self.ctl = Controller(self.board, lambda: self.t, self._send, boot_id,
                              limits if limits is not None else Limits(jam_ms=100))

    def _send(self, data: bytes) -> None:
        self.out.extend(self._parser.feed(data))

    def req(self, msg_type: int, seq: int, payload: bytes = b"") -> list[P.Frame]:
        self.out.clear()
        self.ctl.receive(P.encode_frame(msg_type, seq, payload))
        return list(self.out)

    def hello(self, session: int = 5, hb_ms: int = 3000) -> P.Frame:
        return self.req(P.HELLO, 1, bytes((P.VERSION,)) + P.u16(session) + P.u16(hb_ms))[0]

    def dispense(self, seq: int, mm: int, boot: int = BOOT) -> P.Frame:
        replies = self.req(P.DISPENSE, seq, P.u16(mm) + P.u16(boot))
        assert len(replies) == 1
        return replies[0]

    def run(self, ms: int, mm_per_ms: int = 1) -> list[P.Frame]:
        """Let `ms` pass, the paper moving `mm_per_ms` while the motor is on."""
        self.out.clear()
        for _ in range(ms):
            self.t += 1
            if self.board.on:
                self.board.pos += mm_per_ms
            self.ctl.tick()
        return list(self.out)


def _err(frame: P.Frame) -> tuple[str, int]:
    assert frame.msg_type == P.ERROR, P.TYPE_NAMES.get(frame.msg_type)
    return P.ERROR_NAMES[frame.payload[0]], P.get_u16(frame.payload, 1)


def _final(frames: list[P.Frame], seq: int) -> P.Frame:
    finals = [f for f in frames if f.seq == seq and f.msg_type in (P.DONE, P.ERROR)]
    assert len(finals) == 1
    return finals[0]


def test_hello_reports_capabilities_and_clamps_the_heartbeat() -> None:
    rig = Rig()
    caps = rig.hello(hb_ms=50)
    assert caps.msg_type == P.CAPABILITIES and caps.seq == 1
    b = caps.payload
    assert b[0] == P.VERSION and P.get_u16(b, 4) == BOOT
    assert P.get_u16(b, 7) == 1500 and P.get_u16(b, 11) == HEARTBEAT_MIN_MS
    assert P.get_u16(rig.hello(hb_ms=60000).payload, 11) == HEARTBEAT_MAX_MS


def test_dispense_runs_to_the_length_and_reports_it() -> None:
    rig = Rig()
    ack = rig.dispense(10, 600)
    assert ack.msg_type == P.ACK and ack.payload == bytes((P.DISPENSE,))
    assert rig.board.on
    done = _final(rig.run(700), 10)
    assert done.msg_type == P.DONE and P.get_u16(done.payload, 0) == 600
    assert not rig.board.on and rig.board.starts == 1


def test_a_retried_seq_is_never_run_twice() -> None:
    rig = Rig()
    rig.dispense(10, 600)
    rig.run(100)
    assert rig.dispense(10, 600).msg_type == P.ACK  # retry while running: ACK again
    rig.run(600)
    again = rig.dispense(10, 600)                   # retry after the end: the stored DONE
    assert again.msg_type == P.DONE and P.get_u16(again.payload, 0) == 600
    assert rig.board.starts == 1


def test_busy_refusals_are_not_remembered_because_nothing_happened() -> None:
    rig = Rig()
    rig.dispense(10, 600)
    assert _err(rig.dispense(11, 600)) == ("busy", 0)
    rig.run(700)
    assert rig.dispense(11, 600).msg_type == P.ACK  # the retry may now run (once)
    assert rig.board.starts == 2


def test_refusals_door_jam_paper_and_length() -> None:
    rig = Rig()
    rig.board.door = True
    assert _err(rig.dispense(1, 600)) == ("door_open", 0)
    rig.board.door = False
    rig.board.paper = False
    assert _err(rig.dispense(2, 600)) == ("paper_empty", 0)
    rig.board.paper = True
    assert _err(rig.dispense(3, 0)) == ("bad_length", 0)
    assert _err(rig.dispense(4, 1501)) == ("bad_length", 0)
    assert rig.board.starts == 0


def test_jam_stops_the_motor_and_latches_until_the_door_is_cycled() -> None:
    rig = Rig()
    rig.dispense(1, 600)
    rig.run(50)
    name, mm = _err(_final(rig.run(200, mm_per_ms=0), 1))  # paper stuck
    assert (name, mm) == ("jam", 50) and not rig.board.on
    assert _err(rig.dispense(2, 600)) == ("jam", 0)
    rig.board.door = True
    rig.run(1)
    rig.board.door = False
    rig.run(1)
    assert rig.dispense(3, 600).msg_type == P.ACK


def test_stops_when_door_opens_paper_runs_out_or_driver_faults() -> None:
    for attr, value, expected in (("door", True, "door_open"), ("paper", False, "paper_empty"),
                                  ("driver_fault", True, "overcurrent")):
        rig = Rig()
        rig.dispense(1, 600)
        rig.run(100)
        setattr(rig.board, attr, value)
        assert _err(_final(rig.run(5), 1)) == (expected, 101), attr  # 1 mm in the last tick
        assert not rig.board.on


def test_max_run_time_stops_a_slipping_feed() -> None:
    rig = Rig(limits=Limits(max_run_ms=1000, jam_ms=100))
    rig.dispense(1, 600)
    frames: list[P.Frame] = []
    for _ in range(100):  # 1 mm per 10 ms: moving, so no jam, but far too slow
        frames += rig.run(9, mm_per_ms=0) + rig.run(1)
    assert _err(_final(frames, 1)) == ("timeout", 100)


def test_heartbeat_loss_stops_the_motor_and_any_frame_feeds_it() -> None:
    rig = Rig()
    rig.hello(hb_ms=300)
    rig.dispense(1, 1400)
    for _ in range(4):  # the host keeps talking: 4 x 250 ms > 300 ms, still running
        assert not [f for f in rig.run(250) if f.msg_type == P.ERROR]
        rig.req(P.HEARTBEAT, 9)
    name, mm = _err(_final(rig.run(400), 1))
    assert name == "heartbeat_lost" and mm == 1300 and not rig.board.on


def test_abort() -> None:
    rig = Rig()
    rig.dispense(1, 600)
    rig.run(42)
    replies = rig.req(P.ABORT, 2)
    assert _err(_final(replies, 1)) == ("aborted", 42)
    ack = next(f for f in replies if f.seq == 2)
    assert ack.msg_type == P.ACK and ack.payload == bytes((P.ABORT,))
    assert rig.req(P.ABORT, 3)[0].msg_type == P.ACK  # idle abort is fine


def test_unreadable_frames_are_nakked_and_bad_requests_named() -> None:
    rig = Rig()
    body = bytearray(P.encode_body(P.STATUS, 5))
    body[-1] ^= 1
    rig.ctl.receive(P.cobs_encode(bytes(body)) + b"\x00")
    nak = rig.out[-1]
    assert nak.seq == P.SEQ_NONE and _err(nak) == ("bad_frame", 0)
    assert _err(rig.req(P.STATUS, 6, b"\x01")[0]) == ("bad_frame", 0)     # wrong size
    assert _err(rig.req(P.DISPENSE, 7, b"\x01")[0]) == ("bad_frame", 0)
    assert _err(rig.req(0x7E, 8)[0]) == ("unknown_command", 0)
    rig.out.clear()
    rig.ctl.receive(P.encode_frame(P.STATUS, 9, b"", version=2))
    assert rig.out[0].seq == 9 and _err(rig.out[0]) == ("bad_version", 0)
    assert rig.board.starts == 0


def test_status_reports_state_counters_and_last_dispense() -> None:
    rig = Rig()
    rig.board.buttons = 3
    rig.ctl.tick()
    rig.dispense(77, 100)
    rig.run(150)
    st = rig.req(P.STATUS, 2)[0]
    b = st.payload
    assert st.msg_type == P.STATUS_REPLY and len(b) == 24
    assert b[0] == P.ST_READY and b[1] == P.F_PAPER_PRESENT
    assert P.get_u16(b, 2) == BOOT and P.get_u16(b, 4) == 3
    assert (P.get_u16(b, 6), b[8], b[9], P.get_u16(b, 10)) == (77, P.R_DONE, 0, 100)
    assert P.get_u32(b, 12) == P.PAPER_LEFT_UNKNOWN and P.get_u32(b, 16) == 100


def test_events_announce_boot_buttons_and_state_changes() -> None:
    rig = Rig()
    rig.board.buttons = 0
    boot = rig.run(1)
    assert [f.msg_type for f in boot] == [P.EVENT] and P.get_u16(boot[0].payload, 4) == BOOT
    rig.board.buttons = 2
    ev = rig.run(1)[0]
    assert ev.msg_type == P.EVENT and P.get_u16(ev.payload, 2) == 2
    rig.board.door = True
    assert rig.run(1)[0].payload[0] == P.ST_DOOR_OPEN
    assert rig.run(5) == []  # nothing changed, nothing sent


def test_a_reset_never_reruns_and_reports_what_went_out() -> None:
    rig = Rig()
    rig.hello(session=5)
    rig.dispense(10, 600)
    rig.run(300)                      # 300 mm out, then the watchdog resets the chip
    board = rig.board
    board.on = False
    after = Rig(board=board, boot_id=0x2222)
    after.hello(session=5)
    # The host's resend of the same request: bound to the old boot, so refused, and the
    # retained record says how far it got.
    assert _err(after.dispense(10, 600, boot=BOOT)) == ("reset", 300)
    assert _err(after.dispense(11, 600, boot=BOOT)) == ("reset", P.MM_UNKNOWN)
    assert board.starts == 1
    st = after.req(P.STATUS, 3)[0].payload
    assert (P.get_u16(st, 6), st[8], st[9], P.get_u16(st, 10)) == (10, P.R_ERROR, P.E_RESET,
                                                                    300)


def test_a_dispense_finished_before_a_reset_is_reported_done() -> None:
    rig = Rig()
    rig.hello(session=5)
    rig.dispense(10, 200)
    rig.run(250)
    after = Rig(board=rig.board, boot_id=0x2222)
    done = after.dispense(10, 200, boot=BOOT)
    assert done.msg_type == P.DONE and P.get_u16(done.payload, 0) == 200


def test_a_lost_record_reports_an_unknown_length() -> None:
    rig = Rig()
    rig.dispense(10, 600)
    rig.run(100)
    rig.board.retained = None         # power loss
    rig.board.on = False
    after = Rig(board=rig.board, boot_id=0x2222)
    assert _err(after.dispense(10, 600, boot=BOOT)) == ("reset", P.MM_UNKNOWN)


def test_a_new_host_session_forgets_seqs_the_same_session_keeps_them() -> None:
    rig = Rig()
    rig.hello(session=5)
    rig.dispense(10, 100)
    rig.run(150)
    rig.hello(session=5)              # the same host reconnecting
    assert rig.dispense(10, 100).msg_type == P.DONE
    rig.hello(session=6)              # a restarted host: seq 10 is a new request
    assert rig.dispense(10, 100).msg_type == P.ACK
    assert rig.board.starts == 2


def test_the_first_hello_of_a_boot_keeps_dispenses_sent_before_it() -> None:
    """Found by the state machine test: a dispense before any HELLO, then a HELLO, then
    the dispense's resend must not run a second ribbon."""
    rig = Rig()
    rig.dispense(5, 1)
    rig.hello(session=7)
    rig.run(10)
    assert rig.dispense(5, 1).msg_type == P.DONE
    assert rig.board.starts == 1

"""Random sessions against the controller logic (hypothesis state machine): whatever the
host sends, whatever the sensors do and however time passes, the safety rules hold after
every step."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from motor_rig import FakeBoard

from dispenser.motor import protocol as P
from firmware_sim.controller import Controller, Limits

BOOT = 0x0BB0
LIMITS = Limits(max_run_ms=3000, jam_ms=200, heartbeat_ms=1000)


class ControllerSession(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.board = FakeBoard()
        self.t = 0
        self.ctl = Controller(self.board, lambda: self.t, lambda frame: None, BOOT, LIMITS)
        self.starts_by_seq: dict[int, int] = {}
        self.last_frame_t = 0
        self.rate = 1  # mm of paper per ms while the motor runs
        self.run_started_t: int | None = None

    def _send(self, msg_type: int, seq: int, payload: bytes = b"") -> None:
        before = self.board.starts
        self.ctl.receive(P.encode_frame(msg_type, seq, payload))
        self.last_frame_t = self.t
        if self.board.starts > before:
            self.starts_by_seq[seq] = self.starts_by_seq.get(seq, 0) + 1
            self.run_started_t = self.t
            # A start only ever happens with the door shut, paper in, no jam latched.
            assert not self.board.door and self.board.paper

    @rule(seq=st.integers(1, 5), length=st.integers(0, 2000), stale=st.booleans())
    def dispense(self, seq: int, length: int, stale: bool) -> None:
        boot = BOOT ^ 1 if stale else BOOT
        before = self.board.starts
        self._send(P.DISPENSE, seq, P.u16(length) + P.u16(boot))
        if stale or length == 0 or length > LIMITS.max_length_mm:
            assert self.board.starts == before

    @rule(kind=st.sampled_from([P.STATUS, P.HEARTBEAT, P.ABORT]), seq=st.integers(6, 99))
    def request(self, kind: int, seq: int) -> None:
        self._send(kind, seq)
        if kind == P.ABORT:
            assert not self.board.on

    @rule(hb=st.integers(0, 5000))
    def hello(self, hb: int) -> None:
        self._send(P.HELLO, 100, bytes((1,)) + P.u16(7) + P.u16(hb))  # one host session

    @rule(noise=st.binary(min_size=1, max_size=40))
    def line_noise(self, noise: bytes) -> None:
        before = self.board.starts
        self.ctl.receive(noise + b"\x00")
        assert self.board.starts == before

    @rule(ms=st.integers(1, 400), rate=st.integers(0, 2))
    def time_passes(self, ms: int, rate: int) -> None:
        self.rate = rate
        for _ in range(ms):
            self.t += 1
            if self.board.on:
                self.board.pos += self.rate
            self.ctl.tick()
            self._check_running()

    @rule(what=st.sampled_from(["door", "paper", "driver_fault"]))
    def sensor_flips(self, what: str) -> None:
        setattr(self.board, what, not getattr(self.board, what))
        self.t += 1
        self.ctl.tick()
        self._check_running()

    def _check_running(self) -> None:
        if not self.board.on:
            self.run_started_t = None
            return
        assert self.run_started_t is not None
        assert not self.board.door and self.board.paper and not self.board.driver_fault
        assert self.t - self.run_started_t < LIMITS.max_run_ms
        assert self.t - self.last_frame_t < self.ctl.heartbeat_ms

    @invariant()
    def each_decision_runs_at_most_once(self) -> None:
        # Only 5 seqs in one host session: none can fall out of the 8-entry history, so a
        # seq that ran once must never run again, whatever came between.
        assert all(n == 1 for n in self.starts_by_seq.values()), self.starts_by_seq


TestControllerSession = ControllerSession.TestCase
TestControllerSession.settings = settings(max_examples=80, stateful_step_count=30,
                                          deadline=None)

"""The logging guard: biometric-sized payloads never reach a log line (invariant 5)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import numpy as np
import pytest

from dispenser.logsafe import REDACTED, REDACTIONS, configure_logging, event


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = configure_logging("DEBUG", stream)
    yield logging.getLogger("dispenser.test"), stream
    logging.getLogger().removeHandler(handler)


TEMPLATE = np.linspace(-0.3, 0.3, 128, dtype=np.float32)


def _line(stream: io.StringIO) -> str:
    return stream.getvalue().strip().splitlines()[-1]


def test_array_argument_is_redacted(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    before = REDACTIONS.count
    logger.info("probe %s", TEMPLATE)
    # The whole message is the marker (the line's timestamp may well contain "0.3").
    assert _line(stream).endswith(f"dispenser.test  probe {REDACTED}")
    assert REDACTIONS.count == before + 1


@pytest.mark.parametrize("payload", [TEMPLATE.tobytes(), bytearray(TEMPLATE.tobytes()),
                                     memoryview(TEMPLATE.tobytes()), TEMPLATE.tolist()])
def test_bytes_and_lists_of_template_size_are_redacted(
        log: tuple[logging.Logger, io.StringIO], payload: object) -> None:
    logger, stream = log
    logger.warning("payload=%r", payload)
    assert REDACTED in _line(stream)


def test_array_as_message_and_in_mapping_args(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    logger.info(TEMPLATE)
    assert REDACTED in _line(stream)
    logger.info("%(t)s", {"t": TEMPLATE})
    assert REDACTED in _line(stream)


def test_preformatted_array_text_is_redacted(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    logger.info(f"oops {TEMPLATE}")
    line = _line(stream)
    assert line.endswith(REDACTED)


def test_exception_carrying_an_array_is_redacted(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    try:
        raise ValueError(str(TEMPLATE.tolist()))
    except ValueError:
        logger.exception("kernel failed")
    text = stream.getvalue()
    assert "kernel failed [exception text redacted]" in text
    assert "0.2976" not in text and "Traceback" not in text


def test_ordinary_events_pass_unchanged(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    before = REDACTIONS.count
    event(logger, "admit", occupancy=3, similarity=0.42, port="/dev/ttyACM0")
    line = _line(stream)
    assert line.endswith("dispenser.test  admit occupancy=3 similarity=0.42 port=/dev/ttyACM0")
    assert "Z INFO" in line
    assert REDACTIONS.count == before


def test_event_refuses_array_fields(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    event(logger, "decide", probe=TEMPLATE)
    assert _line(stream).endswith(f"decide probe={REDACTED}")

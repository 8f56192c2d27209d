"""A small, bounded reader of the protobuf wire format (stdlib only).

Why not the google protobuf runtime: steps import only what they use, and a checkpoint is
untrusted input, so every length is checked against the buffer, varints stop at 10 bytes and
nesting stops at MAX_DEPTH. Wire format as specified in protobuf's docs/encoding ("Message
Structure", "Base 128 Varints", "Packed Repeated Fields"); groups (wire types 3 and 4) are not
used by CRIU's images/*.proto and are refused.

Every failure is a ProtobufError carrying the offset (into the buffer given) where it happened.
"""

from __future__ import annotations

import struct
from typing import Iterator

VARINT, FIXED64, LEN, SGROUP, EGROUP, FIXED32 = 0, 1, 2, 3, 4, 5
MAX_DEPTH = 32  # CRIU's deepest message (core -> thread_info -> fpregs -> xsave) is 4 levels
MAX_FIELD_NUMBER = (1 << 29) - 1

_VARINT_TYPES = {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool", "enum"}
_FIXED32_TYPES = {"fixed32", "sfixed32", "float"}
_FIXED64_TYPES = {"fixed64", "sfixed64", "double"}
SCALAR_TYPES = _VARINT_TYPES | _FIXED32_TYPES | _FIXED64_TYPES | {"string", "bytes"}


class ProtobufError(ValueError):
    """Malformed wire data; `offset` is where in the buffer it was found."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


def read_varint(buf: bytes | memoryview, pos: int, end: int | None = None) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at `pos`; at most 10 bytes, below 2**64."""
    end = len(buf) if end is None else end
    value = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise ProtobufError("truncated varint", start)
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes", start)
    if value >> 64:
        raise ProtobufError("varint exceeds 64 bits", start)
    return value, pos


def zigzag(value: int) -> int:
    """sint32/sint64: zigzag-decoded."""
    return (value >> 1) ^ -(value & 1)


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def iter_fields(buf: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int | memoryview, int]]:
    """(field number, wire type, value, offset of the value) for each field of one message.

    The value is an int for VARINT, FIXED32 and FIXED64 (raw, unsigned) and a memoryview for LEN
    (whose offset is that of its first payload byte).
    """
    view = memoryview(buf)
    end = len(view) if end is None else end
    if end > len(view):
        raise ProtobufError(f"message end {end} beyond buffer of {len(view)} bytes", len(view))
    pos = start
    while pos < end:
        tag_at = pos
        tag, pos = read_varint(view, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0 or number > MAX_FIELD_NUMBER:
            raise ProtobufError(f"invalid field number {number}", tag_at)
        value_at = pos
        if wire == VARINT:
            value, pos = read_varint(view, pos, end)
        elif wire == FIXED64:
            if pos + 8 > end:
                raise ProtobufError(f"truncated fixed64 field {number}", tag_at)
            value = int.from_bytes(view[pos:pos + 8], "little")
            pos += 8
        elif wire == FIXED32:
            if pos + 4 > end:
                raise ProtobufError(f"truncated fixed32 field {number}", tag_at)
            value = int.from_bytes(view[pos:pos + 4], "little")
            pos += 4
        elif wire == LEN:
            length, pos = read_varint(view, pos, end)
            if length > end - pos:
                raise ProtobufError(f"field {number} length {length} exceeds the {end - pos} bytes left", tag_at)
            value_at = pos
            value = view[pos:pos + length]
            pos += length
        else:
            raise ProtobufError(f"unsupported wire type {wire} (field {number})", tag_at)
        yield number, wire, value, value_at


def wire_type_of(scalar: str) -> int:
    """The wire type a non-packed scalar of this .proto type uses."""
    if scalar in _VARINT_TYPES:
        return VARINT
    if scalar in _FIXED32_TYPES:
        return FIXED32
    if scalar in _FIXED64_TYPES:
        return FIXED64
    return LEN


def convert(scalar: str, raw: int | memoryview) -> int | bool | float | bytes:
    """A raw wire value as the Python value of the .proto scalar type (as protobuf's parsers do:
    int32 is the low 32 bits, signed; uint32 the low 32 bits). Strings stay bytes here."""
    if scalar in ("uint64", "fixed64", "fixed32"):
        return raw
    if scalar == "uint32":
        return raw & 0xFFFFFFFF
    if scalar in ("int32", "enum", "sfixed32"):
        return _signed(raw, 32)
    if scalar in ("int64", "sfixed64"):
        return _signed(raw, 64)
    if scalar == "sint32":
        return zigzag(raw & 0xFFFFFFFF)
    if scalar == "sint64":
        return zigzag(raw)
    if scalar == "bool":
        return raw != 0
    if scalar == "float":
        return struct.unpack("<f", raw.to_bytes(4, "little"))[0]
    if scalar == "double":
        return struct.unpack("<d", raw.to_bytes(8, "little"))[0]
    return bytes(raw)  # string, bytes


def unpack_packed(scalar: str, data: memoryview, offset: int = 0) -> list:
    """The elements of a packed repeated field (its LEN payload); `offset` locates errors."""
    wire = wire_type_of(scalar)
    out: list = []
    if wire == VARINT:
        pos = 0
        while pos < len(data):
            try:
                raw, pos = read_varint(data, pos)
            except ProtobufError as exc:
                raise ProtobufError(f"packed {scalar}: {exc}", offset + exc.offset) from None
            out.append(convert(scalar, raw))
        return out
    size = 4 if wire == FIXED32 else 8
    if len(data) % size:
        raise ProtobufError(f"packed {scalar} payload of {len(data)} bytes is not a multiple of {size}", offset)
    for pos in range(0, len(data), size):
        out.append(convert(scalar, int.from_bytes(data[pos:pos + size], "little")))
    return out

"""A proto2 wire-format ENCODER for CRIU images, written for the stand-in kubelets.

Independent of the product's decoder (steps/forensics/criu.py) on purpose: the two meet only in
the bytes, and Debian's crit checks both. Wire format as protobuf's encoding guide states it
(varint keys `number << 3 | wire type`; 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32;
sint zigzag; negative int32/int64 as 10-byte varints). proto2 `repeated` scalars are unpacked
unless declared `[packed = true]`, which no CRIU image field is (criu images/*.proto), and
protobuf-c writes the fields in field-number order, which is what `encode` does.

A message is described by a schema: a tuple of (number, name, type) where type is a scalar
("uint32", "uint64", "int32", "int64", "sint32", "sint64", "bool", "enum", "string", "bytes",
"fixed64") or another schema (a nested message). `encode(schema, **values)` writes every field
given (None or absent: not written; a list: repeated). Required proto2 fields must be given by
the caller: the schema does not invent values.
"""

from __future__ import annotations

import struct
from typing import Any

Schema = tuple[tuple[int, str, Any], ...]

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_VARINT_TYPES = {"uint32", "uint64", "int32", "int64", "bool", "enum"}


def varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as their 64-bit two's complement (10 bytes)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def _scalar(number: int, kind: str, value: Any) -> bytes:
    if kind in _VARINT_TYPES:
        return key(number, VARINT) + varint(int(value))
    if kind in ("sint32", "sint64"):
        return key(number, VARINT) + varint(zigzag(int(value)))
    if kind == "fixed64":
        return key(number, FIXED64) + struct.pack("<Q", value)
    if kind in ("string", "bytes"):
        data = value.encode() if isinstance(value, str) else bytes(value)
        return key(number, LENGTH) + varint(len(data)) + data
    raise ValueError(f"unknown protobuf type {kind!r}")


def encode(schema: Schema, **values: Any) -> bytes:
    """One message: the fields given, in field-number order."""
    unknown = set(values) - {name for _, name, _ in schema}
    if unknown:
        raise ValueError(f"no such field(s) {sorted(unknown)} in this message")
    out = bytearray()
    for number, name, kind in sorted(schema, key=lambda f: f[0]):
        value = values.get(name)
        if value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(kind, tuple):  # nested message: given as a dict or as encoded bytes
                data = item if isinstance(item, bytes) else encode(kind, **item)
                out += key(number, LENGTH) + varint(len(data)) + data
            else:
                out += _scalar(number, kind, item)
    return bytes(out)


# --- rewriting fields of a real image's message (keeps every other byte as CRIU wrote it) --------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def split(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """A message as (field number, raw key+length prefix, raw value bytes) in wire order, no schema."""
    fields, pos = [], 0
    while pos < len(data):
        start = pos
        tag, pos = _read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == VARINT:
            _, end = _read_varint(data, pos)
        elif wire == FIXED64:
            end = pos + 8
        elif wire == FIXED32:
            end = pos + 4
        elif wire == LENGTH:
            size, pos = _read_varint(data, pos)
            end = pos + size
        else:
            raise ValueError(f"unsupported wire type {wire} at byte {start}")
        fields.append((number, data[start:pos], data[pos:end]))
        pos = end
    return fields


def replace(data: bytes, path: tuple[int, ...], new: bytes | None) -> bytes:
    """`data` with the field at `path` (nested field numbers) replaced by `new`, a whole encoded
    field (key included) or None to drop it. Every other field keeps its bytes and order; a field
    that is absent is appended to its parent."""
    head, *rest = path
    out, done = bytearray(), False
    for number, prefix, value in split(data):
        if number != head:
            out += prefix + value
        elif rest:
            inner = replace(value, tuple(rest), new)
            out += prefix[: len(key(number, LENGTH))] + varint(len(inner)) + inner
            done = True
        elif not done:
            out += new or b""
            done = True
    if not done:
        if rest:
            raise ValueError(f"field {head} is absent: cannot reach {path}")
        out += new or b""
    return bytes(out)

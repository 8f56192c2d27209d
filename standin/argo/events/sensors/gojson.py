"""JSON as Go's encoding/json and tidwall/gjson see it: every value keeps its raw, Go-compacted text."""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any

from standin.argo.events.sensors.errors import GoError
from standin.argo.events.sensors.goconv import go_format_float, go_parse_bool, go_parse_float


def _go_replace(err: UnicodeDecodeError):
    # Go replaces every byte of an invalid UTF-8 sequence with U+FFFD.
    return "\ufffd" * (err.end - err.start), err.end


codecs.register_error("go-replace", _go_replace)


def go_text(data: bytes) -> str:
    return data.decode("utf-8", errors="go-replace")


_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_HTML_RE = re.compile("[<>&\u2028\u2029]")


def _html_escape(raw_string: str) -> str:
    return _HTML_RE.sub(lambda m: _HTML_ESCAPES[m.group(0)], raw_string)


def go_json_string(value: str) -> str:
    """A string as Go's json.Marshal writes it (HTML-safe, UTF-8 kept, \\b and \\f short)."""
    return _html_escape(json.dumps(value, ensure_ascii=False))


class Node:
    """One JSON value with its raw (compacted, Go-escaped) text, as gjson.Result.Raw holds it."""

    __slots__ = ("kind", "raw", "scalar", "items", "key_raws", "cache")

    def __init__(self, kind: str, raw: str, scalar: Any = None, items: list | None = None, key_raws: list | None = None):
        self.kind = kind  # object | array | string | number | true | false | null
        self.raw = raw
        self.scalar = scalar  # decoded string for strings
        self.items = items  # [(key, Node)] for objects, every occurrence in order; [Node] for arrays
        self.key_raws = key_raws  # objects: each key's raw text as the event holds it (gjson Result.Raw of a key)
        self.cache: dict | None = None  # decoded forms, computed once per event

    # --- gjson.Result accessors -------------------------------------------------------------

    def string(self) -> str:
        """gjson Result.String()."""
        if self.kind == "null":
            return ""
        if self.kind in ("true", "false"):
            return self.kind
        if self.kind == "string":
            return self.scalar
        if self.kind == "number":
            if re.fullmatch(r"-?[0-9]+", self.raw):
                return self.raw
            return go_format_float(self.float(), "f")
        return self.raw

    def float(self) -> float:
        """gjson Result.Float()."""
        if self.kind == "number":
            return _parse_float(self.raw)
        if self.kind == "true":
            return 1.0
        if self.kind == "string":
            try:
                return go_parse_float(self.scalar)
            except ValueError:
                return 0.0
        return 0.0

    def bool(self) -> bool:
        """gjson Result.Bool()."""
        if self.kind == "true":
            return True
        if self.kind == "string":
            try:
                return go_parse_bool(self.scalar)
            except ValueError:
                return False
        if self.kind == "number":
            return self.float() != 0
        return False

    def value(self) -> Any:
        """gjson Result.Value(): objects as maps, numbers as float64.

        A repeated key keeps its FIRST value: arrayOrMap (gjson v1.19.0 gjson.go) stores a key
        only `if _, ok := r.oi[key.Str]; !ok`. (Go's json.Unmarshal keeps the last: go_unmarshal.)
        """
        if self.kind == "object":
            out: dict = {}
            for k, v in self.items:
                if k not in out:
                    out[k] = v.value()
            return out
        if self.kind == "array":
            return [v.value() for v in self.items]
        if self.kind == "string":
            return self.scalar
        if self.kind == "number":
            return _parse_float(self.raw)
        return {"true": True, "false": False, "null": None}[self.kind]

    def gtype(self) -> str:
        """gjson Type.String(): Null, False, Number, String, True, JSON."""
        return {"null": "Null", "false": "False", "true": "True", "number": "Number", "string": "String"}.get(
            self.kind, "JSON"
        )


def _parse_float(text: str) -> float:
    return float(text)  # strconv.ParseFloat: out of range gives +-Inf, as gjson keeps it


_WS = re.compile(r"[ \t\r\n]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(.))")
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _decode_string(raw: str) -> str:
    body = raw[1:-1]
    if "\\" not in body:
        return body
    out = []
    pos = 0
    pending_high: int | None = None
    for m in _ESCAPE.finditer(body):
        if m.start() > pos:
            if pending_high is not None:
                out.append("\ufffd")
                pending_high = None
            out.append(body[pos : m.start()])
        pos = m.end()
        if m.group(1) is None:
            if pending_high is not None:
                out.append("\ufffd")
                pending_high = None
            out.append(_SIMPLE_ESCAPES[m.group(2)])
            continue
        code = int(m.group(1), 16)
        if 0xD800 <= code < 0xDC00:
            if pending_high is not None:
                out.append("\ufffd")
            pending_high = code
        elif 0xDC00 <= code < 0xE000:
            if pending_high is not None:
                out.append(chr(0x10000 + ((pending_high - 0xD800) << 10) + (code - 0xDC00)))
                pending_high = None
            else:
                out.append("\ufffd")
        else:
            if pending_high is not None:
                out.append("\ufffd")
                pending_high = None
            out.append(chr(code))
    if pending_high is not None:
        out.append("\ufffd")
    out.append(body[pos:])
    return "".join(out)


class JSONSyntaxError(ValueError):
    pass


def parse_json(text: str) -> Node:
    """Strict RFC 8259 parse (Go's json.Valid), keeping Go-compacted raw text for every value."""
    pos = _WS.match(text, 0).end()
    node, pos = _parse_value(text, pos, 0)
    pos = _WS.match(text, pos).end()
    if pos != len(text):
        raise JSONSyntaxError(f"invalid character {text[pos]!r} after top-level value at offset {pos}")
    return node


def _parse_value(text: str, pos: int, depth: int) -> tuple[Node, int]:
    if depth > 10000:
        raise JSONSyntaxError("exceeded max depth")
    if pos >= len(text):
        raise JSONSyntaxError("unexpected end of JSON input")
    c = text[pos]
    if c == "{":
        items: list = []
        raws: list[str] = []
        key_raws: list[str] = []
        pos = _WS.match(text, pos + 1).end()
        if pos < len(text) and text[pos] == "}":
            return Node("object", "{}", items=items, key_raws=key_raws), pos + 1
        while True:
            m = _STRING.match(text, pos)
            if not m:
                raise JSONSyntaxError(f"expected a string key at offset {pos}")
            key_raw = m.group(0)
            pos = _WS.match(text, m.end()).end()
            if pos >= len(text) or text[pos] != ":":
                raise JSONSyntaxError(f"expected ':' at offset {pos}")
            pos = _WS.match(text, pos + 1).end()
            child, pos = _parse_value(text, pos, depth + 1)
            items.append((_decode_string(key_raw), child))
            key_raws.append(_html_escape(key_raw))
            raws.append(key_raws[-1] + ":" + child.raw)
            pos = _WS.match(text, pos).end()
            if pos < len(text) and text[pos] == ",":
                pos = _WS.match(text, pos + 1).end()
                continue
            if pos < len(text) and text[pos] == "}":
                return Node("object", "{" + ",".join(raws) + "}", items=items, key_raws=key_raws), pos + 1
            raise JSONSyntaxError(f"expected ',' or '}}' at offset {pos}")
    if c == "[":
        elems: list[Node] = []
        pos = _WS.match(text, pos + 1).end()
        if pos < len(text) and text[pos] == "]":
            return Node("array", "[]", items=elems), pos + 1
        while True:
            child, pos = _parse_value(text, pos, depth + 1)
            elems.append(child)
            pos = _WS.match(text, pos).end()
            if pos < len(text) and text[pos] == ",":
                pos = _WS.match(text, pos + 1).end()
                continue
            if pos < len(text) and text[pos] == "]":
                return Node("array", "[" + ",".join(e.raw for e in elems) + "]", items=elems), pos + 1
            raise JSONSyntaxError(f"expected ',' or ']' at offset {pos}")
    if c == '"':
        m = _STRING.match(text, pos)
        if not m:
            raise JSONSyntaxError(f"invalid string at offset {pos}")
        raw = m.group(0)
        return Node("string", _html_escape(raw), scalar=_decode_string(raw)), m.end()
    if c == "-" or c.isdigit():
        m = _NUMBER.match(text, pos)
        if not m:
            raise JSONSyntaxError(f"invalid number at offset {pos}")
        return Node("number", m.group(0)), m.end()
    for word in ("true", "false", "null"):
        if text.startswith(word, pos):
            return Node(word, word), pos + len(word)
    raise JSONSyntaxError(f"invalid character {c!r} looking for beginning of value at offset {pos}")


def node_from_value(value: Any) -> Node:
    """A Node for a Python value (used for results of complex GJSON paths)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        text = str(int(value))
    else:
        text = go_marshal(value)
    return parse_json(text)


def go_marshal(value: Any) -> str:
    """json.Marshal of a Go interface{} value (sorted map keys, HTML-safe, Go float format)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return go_json_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            raise GoError(f"json: unsupported value: {go_format_float(value, 'g')}")
        abs_v = abs(value)
        if abs_v != 0 and (abs_v < 1e-6 or abs_v >= 1e21):
            text = go_format_float(value, "e")
            return re.sub(r"e-0(\d)$", r"e-\g<1>", text)  # Go cleans up e-09 to e-9
        return go_format_float(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(go_json_string(k) + ":" + go_marshal(value[k]) for k in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_marshal(v) for v in value) + "]"
    raise GoError(f"json: unsupported type {type(value).__name__}")


def cached(node: Node, key: str, compute):
    """A value derived from an event's root Node, computed once (the Node is never mutated)."""
    if node.cache is None:
        node.cache = {}
    if key not in node.cache:
        try:
            node.cache[key] = (compute(), None)
        except GoError as exc:
            node.cache[key] = (None, exc)
    value, error = node.cache[key]
    if error is not None:
        raise error
    return value


def go_unmarshal(node: Node) -> Any:
    """json.Unmarshal into interface{}: numbers as float64 (error when out of range)."""
    if node.kind == "object":
        return {k: go_unmarshal(v) for k, v in node.items}
    if node.kind == "array":
        return [go_unmarshal(v) for v in node.items]
    if node.kind == "number":
        value = float(node.raw)
        if math.isinf(value):
            raise GoError(f"json: cannot unmarshal number {node.raw} into Go value of type float64")
        return value
    return node.value()

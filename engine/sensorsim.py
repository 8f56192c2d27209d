"""Evaluate an Argo Events Sensor (v1.9) on one event, offline, with Argo Events' own semantics.

What the Sensor pod does for a webhook event, step by step, and where this module does it:

- the EventSource publishes `{"header": <http.Header>, "body": <posted JSON>, "metadata": ...}` as
  Go's `json.Marshal` writes it: the body is compacted and `<`, `>`, `&` are escaped as `\\u003c`...
  (`webhook_event_data`). Every later step reads those exact bytes.
- data filters (`filterData` in pkg/sensors/dependencies/filter.go): GJSON path (first matching
  key wins), a missing path is an error (the event is rejected under `and`), `null` reads as "",
  arrays and objects as their raw JSON text; string values are Go regexps matched unanchored;
  `!=` passes when ANY value does not match; numbers as float64 with `>= > = != < <=`; bools
  with strconv.ParseBool.
- the Lua `script` filter: the global `event` is built like Argo's `mapToTable` (JSON nulls and
  nested arrays dropped, numbers as floats); the filter passes only if the last value the script
  returns is exactly `true`; an error rejects.
- trigger parameters (pkg/sensors/triggers/params.go): `dataTemplate` (Go text/template with sprig
  over `{"Input": <event data>}`; "" or "<no value>" or an error falls back to `dataKey`, then to
  `value`), `dataKey` (GJSON; JSON blocks and null as raw text), `value`; `dest` set with sjson
  semantics on the embedded `source.resource`. A `submit` adds the labels Argo Events adds.

GJSON: plain key paths (`body.output_fields.k8s\\.ns\\.name`, also `proc\\.aname[2]`, which the `gjson`
PyPI port cannot parse) are walked here on a parse that keeps each value's raw text, because
Argo reads raw text (arrays as their JSON, `dataKey: body` verbatim) and the first of duplicate
keys; paths with modifiers, wildcards or queries go to the `gjson` package on the decoded value.

Anything this module does not implement (expr/context/time filters, transforms, conditions,
sjson paths with wildcards, template actions beyond the ones build/ uses, RE2 constructs that
Python's `re` reads differently) raises `Unsupported`, naming it: a simulator that silently guesses
is worse than none.
"""

from __future__ import annotations

import base64
import codecs
import copy
import functools
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

MEDIA_JSON = "application/json"


class Unsupported(Exception):
    """The Sensor uses something this simulator does not implement: refuse loudly."""


class GoError(Exception):
    """An error Argo Events itself would hit (bad template, bad regexp, missing key...)."""


# =============================================================================================
# JSON as Go's encoding/json and tidwall/gjson see it
# =============================================================================================


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

    __slots__ = ("kind", "raw", "scalar", "items", "cache")

    def __init__(self, kind: str, raw: str, scalar: Any = None, items: list | None = None):
        self.kind = kind  # object | array | string | number | true | false | null
        self.raw = raw
        self.scalar = scalar  # decoded string for strings
        self.items = items  # [(key, Node)] for objects, [Node] for arrays
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
        """gjson Result.Value(): objects as maps (last duplicate key wins), numbers as float64."""
        if self.kind == "object":
            return {k: v.value() for k, v in self.items}
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
        pos = _WS.match(text, pos + 1).end()
        if pos < len(text) and text[pos] == "}":
            return Node("object", "{}", items=items), pos + 1
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
            raws.append(_html_escape(key_raw) + ":" + child.raw)
            pos = _WS.match(text, pos).end()
            if pos < len(text) and text[pos] == ",":
                pos = _WS.match(text, pos + 1).end()
                continue
            if pos < len(text) and text[pos] == "}":
                return Node("object", "{" + ",".join(raws) + "}", items=items), pos + 1
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


# --- GJSON paths ------------------------------------------------------------------------------

_COMPLEX = set("|#@*?!")


@functools.lru_cache(maxsize=4096)
def split_path(path: str) -> tuple[str, ...] | None:
    """Split a GJSON/sjson path on unescaped dots; None when it uses anything beyond keys."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(path):
        c = path[i]
        if c == "\\":
            if i + 1 < len(path):
                cur.append(path[i + 1])
            i += 2
            continue
        if c == ".":
            parts.append("".join(cur))
            cur = []
        elif c in _COMPLEX or (not cur and c in "[{"):  # modifiers, queries, wildcards, multipaths
            return None
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return tuple(parts)


def gjson_get(root: Node, path: str) -> Node | None:
    """gjson.Get(raw, path): the Node at path, or None when it does not exist."""
    parts = split_path(path)
    if parts is None:
        return _gjson_complex(root, path)
    node: Node | None = root
    for part in parts:
        if node is None:
            return None
        if node.kind == "object":
            node = next((child for key, child in node.items if key == part), None)
        elif node.kind == "array" and part.isdigit() and part.isascii():
            index = int(part)
            node = node.items[index] if index < len(node.items) else None
        else:
            return None
    return node


def _gjson_complex(root: Node, path: str) -> Node | None:
    """Paths with modifiers, wildcards or queries: the gjson package on the decoded value."""
    import gjson  # the PyPI port; it works on decoded objects only

    try:
        result = gjson.get(root.value(), path)
    except gjson.GJSONError:
        return None
    return node_from_value(result)


# =============================================================================================
# Go's strconv and fmt, as far as filters and templates need them
# =============================================================================================


def go_parse_bool(text: str) -> bool:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


_GO_FLOAT = re.compile(r"[+-]?(?:(?:[0-9](?:_?[0-9])*)?\.?[0-9]*(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)", re.I)


def go_parse_float(text: str) -> float:
    if not text or not _GO_FLOAT.fullmatch(text) or text in (".", "+", "-") or text.lower().startswith("0x"):
        raise ValueError(f'strconv.ParseFloat: parsing "{text}": invalid syntax')
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise ValueError(f'strconv.ParseFloat: parsing "{text}": invalid syntax') from None
    if math.isinf(value) and "inf" not in text.lower():
        raise ValueError(f'strconv.ParseFloat: parsing "{text}": value out of range')
    return value


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits and the decimal point position (strconv's digs, dp)."""
    sign, digits, exponent = Decimal(repr(abs(value))).as_tuple()
    text = "".join(map(str, digits)).lstrip("0")
    if not text:
        return "0", 1
    dp = len("".join(map(str, digits))) + exponent - (len("".join(map(str, digits))) - len(text))
    stripped = text.rstrip("0")
    return stripped, dp


def go_format_float(value: float, fmt: str) -> str:
    """strconv.FormatFloat(value, fmt, -1, 64) for fmt in 'g', 'f', 'e'."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    neg = value < 0 or (value == 0 and math.copysign(1, value) < 0)
    if value == 0:
        digits, dp = "0", 1
    else:
        digits, dp = _shortest_digits(value)
    sign = "-" if neg else ""
    if fmt == "g":
        # strconv: with the shortest precision, %e is used when the exponent is < -4 or >= 6
        exp = dp - 1
        fmt = "e" if exp < -4 or exp >= 6 else "f"
    if fmt == "e":
        exp = dp - 1
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    # 'f'
    if dp <= 0:
        return f"{sign}0.{'0' * (-dp)}{digits}"
    if dp >= len(digits):
        return f"{sign}{digits}{'0' * (dp - len(digits))}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def go_sprint(value: Any) -> str:
    """fmt.Sprint of a value decoded from JSON (what a template action prints)."""
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_format_float(value, "g")
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_sprint(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_sprint(v) for v in value) + "]"
    return str(value)


def _go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return type(value).__name__


_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?([a-zA-Z%])")


def go_sprintf(fmt: str, args: list) -> str:
    out: list[str] = []
    pos = 0
    argi = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, _prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        if verb in "sv":
            if verb == "v" or isinstance(arg, str):
                text = go_sprint(arg)
            elif arg is None:
                text = f"%!{verb}(<nil>)"
            elif isinstance(arg, (dict, list)):
                text = go_sprint(arg)
            else:
                text = f"%!{verb}({_go_type(arg)}={go_sprint(arg)})"
        elif verb == "d":
            if isinstance(arg, int) and not isinstance(arg, bool):
                text = str(arg)
            else:
                text = f"%!d({_go_type(arg)}={go_sprint(arg)})" if arg is not None else "%!d(<nil>)"
        elif verb == "q":
            if isinstance(arg, str):
                text = json.dumps(arg, ensure_ascii=False)
            else:
                text = f"%!q({_go_type(arg)}={go_sprint(arg)})"
        else:
            raise Unsupported(f"printf verb %{verb} in a template")
        if width:
            w = int(width)
            text = text.ljust(w) if "-" in flags else text.rjust(w, "0" if "0" in flags and verb == "d" else " ")
        out.append(text)
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{_go_type(a)}={go_sprint(a)}" if a is not None else "<nil>" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# =============================================================================================
# Go regexps (RE2) on Python's re: the subset whose meaning is the same, anything else refused
# =============================================================================================

_REGEXP_CACHE: dict[str, re.Pattern] = {}
_GO_SPACE = "\\t\\n\\f\\r "
_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ", "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~", "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z", "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}


def compile_go_regexp(pattern: str) -> re.Pattern:
    """regexp.Compile(pattern) as a Python pattern with the same matches, or GoError/Unsupported."""
    cached = _REGEXP_CACHE.get(pattern)
    if cached is not None:
        return cached
    translated = _translate_re2(pattern)
    try:
        compiled = re.compile(translated, re.ASCII)
    except re.error as exc:
        raise GoError(f"error parsing regexp: {exc}: `{pattern}`") from None
    _REGEXP_CACHE[pattern] = compiled
    return compiled


def _translate_re2(p: str) -> str:
    out: list[str] = []
    i = 0
    n = len(p)

    def escape(i: int, in_class: bool) -> tuple[str, int]:
        if i + 1 >= n:
            raise GoError(f"error parsing regexp: trailing backslash at end of expression: `{p}`")
        c = p[i + 1]
        if c.isdigit():
            raise Unsupported(f"regexp {p!r}: octal escapes and backreferences (\\{c}) differ between RE2 and Python")
        if c in "pPQEC":
            raise Unsupported(f"regexp {p!r}: \\{c} (RE2-only construct) is not supported by the simulator")
        if c == "x":
            if i + 2 < n and p[i + 2] == "{":
                raise Unsupported(f"regexp {p!r}: \\x{{...}} escapes are not supported by the simulator")
            if not re.fullmatch(r"[0-9a-fA-F]{2}", p[i + 2 : i + 4]):
                raise GoError(f"error parsing regexp: invalid escape sequence: `{p[i:i + 4]}`")
            return p[i : i + 4], i + 4
        if c == "s":
            return (_GO_SPACE if in_class else f"[{_GO_SPACE}]"), i + 2
        if c == "S":
            if in_class:
                raise Unsupported(f"regexp {p!r}: \\S inside a character class")
            return f"[^{_GO_SPACE}]", i + 2
        if c == "z":
            if in_class:
                raise GoError(f"error parsing regexp: invalid escape sequence: `\\z`")
            return "\\Z", i + 2
        if c in "AbB" and in_class:
            raise GoError(f"error parsing regexp: invalid escape sequence: `\\{c}`")
        if c in "AbBdDwWfnrtv":
            return "\\" + c, i + 2
        if c.isalnum() or c == "_":
            raise GoError(f"error parsing regexp: invalid escape sequence: `\\{c}`")
        return "\\" + c, i + 2  # an escaped punctuation character is itself in both

    while i < n:
        c = p[i]
        if c == "\\":
            text, i = escape(i, False)
            out.append(text)
        elif c == "[":
            j = i + 1
            cls = ["["]
            if j < n and p[j] == "^":
                cls.append("^")
                j += 1
            first = True
            while True:
                if j >= n:
                    raise GoError(f"error parsing regexp: missing closing ]: `{p[i:]}`")
                d = p[j]
                if d == "]" and not first:
                    cls.append("]")
                    j += 1
                    break
                if d == "]" and first:
                    cls.append("\\]")
                    j += 1
                elif d == "\\":
                    text, j = escape(j, True)
                    cls.append(text)
                elif d == "[" and j + 1 < n and p[j + 1] == ":":
                    end = p.find(":]", j + 2)
                    name = p[j + 2 : end] if end != -1 else ""
                    negate = name.startswith("^")
                    if end == -1 or name.lstrip("^") not in _POSIX or negate:
                        raise Unsupported(f"regexp {p!r}: POSIX class {p[j:end + 2]!r} is not supported")
                    cls.append(_POSIX[name])
                    j = end + 2
                elif d == "[":
                    cls.append("\\[")
                    j += 1
                elif d in "&~|" and j + 1 < n and p[j + 1] == d:
                    cls.append("\\" + d)
                    j += 1
                else:
                    cls.append(d)
                    j += 1
                first = False
            out.append("".join(cls))
            i = j
        elif c == "$":
            out.append("\\Z")  # RE2 `$` without (?m) is end of text, Python's also matches before a final \n
            i += 1
        elif c == "(":
            if p.startswith("(?P<", i) or p.startswith("(?<", i):
                start = i + (4 if p.startswith("(?P<", i) else 3)
                end = p.find(">", start)
                if end == -1 or not re.fullmatch(r"[A-Za-z0-9_]+", p[start:end]):
                    raise GoError(f"error parsing regexp: invalid named capture: `{p[i:]}`")
                out.append(f"(?P<{p[start:end]}>")
                i = end + 1
            elif p.startswith("(?:", i):
                out.append("(?:")
                i += 3
            elif p.startswith("(?", i):
                raise Unsupported(f"regexp {p!r}: group flags or lookaround {p[i:i + 4]!r}... are not supported")
            else:
                out.append("(")
                i += 1
        elif c == "{":
            m = re.match(r"\{(\d+)(,(\d*))?\}", p[i:])
            if m:
                lo = int(m.group(1))
                hi = int(m.group(3)) if m.group(3) else None
                if lo > 1000 or (hi is not None and (hi > 1000 or hi < lo)):
                    raise GoError(f"error parsing regexp: invalid repeat count: `{m.group(0)}`")
                out.append(m.group(0))
                i += len(m.group(0))
            else:
                out.append("\\{")  # not a repetition: a literal brace in RE2 (Python would read {,n})
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def go_regexp_replace(pattern: str, text: str, repl: str) -> str:
    """regexp.MustCompile(pattern).ReplaceAllString(text, repl) with Go's $name expansion."""
    rx = compile_go_regexp(pattern)
    names = rx.groupindex

    def expand(m: re.Match) -> str:
        def group(name: str) -> str:
            if name.isdigit():
                index = int(name)
                return (m.group(index) or "") if index <= rx.groups else ""
            return (m.group(name) or "") if name in names else ""

        return _REPL_REF.sub(lambda t: "$" if t.group(3) else group(t.group(1) or t.group(2)), repl)

    return rx.sub(expand, text)


_REPL_REF = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+)|(\$))")


# =============================================================================================
# Go text/template with the sprig functions build/ uses
# =============================================================================================

_KEYWORDS = {"with", "if", "else", "end", "range", "template", "define", "block", "break", "continue"}


class _Tok:
    __slots__ = ("kind", "text")

    def __init__(self, kind: str, text: str):
        self.kind = kind
        self.text = text

    def __repr__(self) -> str:
        return f"{self.kind}:{self.text}"


_ACTION_TOKEN = re.compile(
    r"""(?P<space>[ \t\r\n]+)
      | (?P<string>"(?:[^"\\\n]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<char>'(?:[^'\\\n]|\\.)*')
      | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
      | (?P<dot>\.)
      | (?P<var>\$[A-Za-z0-9_]*)
      | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?))
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<pipe>\|)
      | (?P<lparen>\()
      | (?P<rparen>\))
      | (?P<assign>:?=)
      | (?P<comma>,)
    """,
    re.X,
)


def _go_unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    body = text[1:-1]
    out = []
    i = 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif e == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif e == "U":
            out.append(chr(int(body[i + 2 : i + 10], 16)))
            i += 10
        elif e in "01234567":
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise GoError(f"template: invalid syntax in string {text}")
    return "".join(out)


@dataclass
class _Text:
    text: str


@dataclass
class _Pipe:
    cmds: list  # list[list[operand]]


@dataclass
class _Action:
    pipe: _Pipe


@dataclass
class _Branch:
    kind: str  # with | if
    pipe: _Pipe
    body: list
    orelse: list


@dataclass
class _Operand:
    kind: str  # field | dot | string | number | bool | nil | ident | pipe
    value: Any


class GoTemplate:
    """A parsed Go text/template (subset). `execute(data)` returns the text or raises GoError."""

    def __init__(self, source: str):
        self.source = source
        self.nodes = self._parse(source)

    # --- lexing and parsing -------------------------------------------------------------------

    def _items(self, src: str) -> list:
        items: list = []
        pos = 0
        trim_next = False
        while True:
            start = src.find("{{", pos)
            text = src[pos:] if start == -1 else src[pos:start]
            if trim_next:
                text = text.lstrip(" \t\r\n")
            if start == -1:
                if text:
                    items.append(("text", text))
                return items
            inner_start = start + 2
            if src.startswith("- ", inner_start) or src.startswith("-\t", inner_start) or src.startswith("-\n", inner_start) or src.startswith("-\r", inner_start):
                text = text.rstrip(" \t\r\n")
                inner_start += 1
            if text:
                items.append(("text", text))
            end = self._find_close(src, inner_start)
            if end == -1:
                raise GoError(f'template: param:1: unclosed action in "{self.source}"')
            inner = src[inner_start:end]
            close_len = 2
            trim_next = False
            if inner.endswith((" -", "\t-", "\n-", "\r-")):
                inner = inner[:-1]
                trim_next = True
            pos = end + close_len
            stripped = inner.strip()
            if stripped.startswith("/*"):
                if not stripped.endswith("*/"):
                    raise GoError("template: unclosed comment")
                continue
            items.append(("action", self._lex(inner)))

    @staticmethod
    def _find_close(src: str, pos: int) -> int:
        i = pos
        while i < len(src):
            c = src[i]
            if c in "\"`'":
                j = i + 1
                while j < len(src) and src[j] != c:
                    j += 2 if (src[j] == "\\" and c != "`") else 1
                i = j + 1
                continue
            if src.startswith("}}", i):
                return i
            i += 1
        return -1

    def _lex(self, inner: str) -> list[_Tok]:
        toks: list[_Tok] = []
        pos = 0
        while pos < len(inner):
            m = _ACTION_TOKEN.match(inner, pos)
            if not m:
                raise GoError(f"template: unexpected {inner[pos]!r} in action {inner!r}")
            pos = m.end()
            kind = m.lastgroup
            if kind == "space":
                continue
            if kind in ("var", "assign", "comma", "char"):
                raise Unsupported(f"template construct {m.group(0)!r} (variables, assignments, char constants) in {self.source!r}")
            toks.append(_Tok(kind, m.group(0)))
        return toks

    def _parse(self, src: str) -> list:
        items = self._items(src)
        nodes, stop, rest = self._parse_list(items, 0, top=True)
        return nodes

    def _parse_list(self, items: list, i: int, top: bool = False):
        nodes: list = []
        while i < len(items):
            kind, payload = items[i]
            if kind == "text":
                nodes.append(_Text(payload))
                i += 1
                continue
            toks = payload
            if not toks:
                raise GoError(f"template: missing value for command in {self.source!r}")
            head = toks[0]
            if head.kind == "ident" and head.text in ("end", "else"):
                if top:
                    raise GoError(f"template: unexpected {{{{{head.text}}}}} in {self.source!r}")
                return nodes, (head.text, toks[1:]), i + 1
            if head.kind == "ident" and head.text in ("with", "if"):
                pipe = self._parse_pipe(toks[1:])
                body, stop, i = self._parse_list(items, i + 1)
                orelse: list = []
                if stop[0] == "else":
                    if stop[1]:
                        raise Unsupported(f"template 'else {stop[1][0].text}' chains in {self.source!r}")
                    orelse, stop, i = self._parse_list(items, i)
                    if stop[0] != "end":
                        raise GoError(f"template: expected end; found {stop[0]}")
                nodes.append(_Branch(head.text, pipe, body, orelse))
                continue
            if head.kind == "ident" and head.text in _KEYWORDS:
                raise Unsupported(f"template action {{{{{head.text} ...}}}} in {self.source!r}")
            nodes.append(_Action(self._parse_pipe(toks)))
            i += 1
        if not top:
            raise GoError(f"template: unexpected EOF in {self.source!r}")
        return nodes, None, i

    def _parse_pipe(self, toks: list[_Tok]) -> _Pipe:
        cmds: list = []
        cur: list = []
        i = 0
        while i < len(toks):
            t = toks[i]
            if t.kind == "pipe":
                if not cur:
                    raise GoError("template: missing command before |")
                cmds.append(cur)
                cur = []
                i += 1
                continue
            if t.kind == "lparen":
                depth = 1
                j = i + 1
                while j < len(toks) and depth:
                    depth += {"lparen": 1, "rparen": -1}.get(toks[j].kind, 0)
                    j += 1
                if depth:
                    raise GoError("template: unclosed left paren")
                if j < len(toks) and toks[j].kind == "field":
                    raise Unsupported("template field access on a parenthesized pipeline")
                cur.append(_Operand("pipe", self._parse_pipe(toks[i + 1 : j - 1])))
                i = j
                continue
            if t.kind == "rparen":
                raise GoError("template: unexpected right paren")
            cur.append(self._operand(t))
            i += 1
        if not cur:
            raise GoError("template: missing value for command")
        cmds.append(cur)
        return _Pipe(cmds)

    def _operand(self, t: _Tok) -> _Operand:
        if t.kind == "field":
            return _Operand("field", t.text[1:].split("."))
        if t.kind == "dot":
            return _Operand("dot", None)
        if t.kind in ("string", "raw"):
            return _Operand("string", _go_unquote(t.text))
        if t.kind == "number":
            text = t.text.replace("_", "")
            try:
                value: Any = int(text, 0)
            except ValueError:
                value = float(text)
            return _Operand("number", value)
        if t.text in ("true", "false"):
            return _Operand("bool", t.text == "true")
        if t.text == "nil":
            return _Operand("nil", None)
        if t.text in _KEYWORDS:
            raise GoError(f"template: unexpected keyword {t.text}")
        if t.text not in _FUNCS:
            raise Unsupported(f"template function {t.text!r} (not implemented by the simulator) in {self.source!r}")
        return _Operand("ident", t.text)

    # --- execution ------------------------------------------------------------------------------

    def execute(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.nodes, data, data, out)
        return "".join(out)

    def _run(self, nodes: list, dot: Any, root: Any, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self._pipe(node.pipe, dot, root)
                out.append("<no value>" if value is None else go_sprint(value))
            else:
                value = self._pipe(node.pipe, dot, root)
                if _truth(value):
                    self._run(node.body, value if node.kind == "with" else dot, root, out)
                else:
                    self._run(node.orelse, dot, root, out)

    def _pipe(self, pipe: _Pipe, dot: Any, root: Any) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self._command(cmd, dot, root, value)
        return value

    def _command(self, cmd: list[_Operand], dot: Any, root: Any, final: Any) -> Any:
        first = cmd[0]
        if first.kind == "ident":
            args = [self._arg(a, dot, root) for a in cmd[1:]]
            if final is not _MISSING:
                args.append(final)
            return _call(first.value, args)
        if len(cmd) > 1 or final is not _MISSING:
            raise GoError(f"template: can't give argument to non-function {first.kind}")
        return self._arg(first, dot, root)

    def _arg(self, op: _Operand, dot: Any, root: Any) -> Any:
        if op.kind == "field":
            return _field(dot, op.value)
        if op.kind == "dot":
            return dot
        if op.kind == "pipe":
            return self._pipe(op.value, dot, root)
        if op.kind == "ident":
            return _call(op.value, [])
        return op.value


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _truth(value: Any) -> bool:
    if value is None or value is _MISSING:
        return False
    if isinstance(value, (str, dict, list)):
        return len(value) > 0
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    return True


def _field(dot: Any, names: list[str]) -> Any:
    value = dot
    for i, name in enumerate(names):
        if value is None:
            raise GoError(f"template: nil pointer evaluating interface {{}}.{name}")
        if not isinstance(value, dict):
            raise GoError(f"template: can't evaluate field {name} in type {_go_type(value)}")
        value = value.get(name)  # a missing key is Go's invalid value: prints <no value>
    return value


def _want_str(fn: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise GoError(f"template: error calling {fn}: invalid value; expected string")
    raise GoError(f"template: wrong type for value; expected string; got {_go_type(value)}")


def _want_int(fn: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None:
        raise GoError(f"template: error calling {fn}: invalid value; expected int")
    raise GoError(f"template: wrong type for value; expected int; got {_go_type(value)}")


def _go_bytes(s: str) -> bytes:
    return s.encode("utf-8", errors="surrogatepass")


def _fn_index(args: list) -> Any:
    if not args:
        raise GoError("template: wrong number of args for index: want at least 1 got 0")
    item, keys = args[0], args[1:]
    if item is None:
        raise GoError("template: error calling index: index of untyped nil")
    for key in keys:
        if item is None:
            raise GoError("template: error calling index: index of nil pointer")
        if isinstance(item, dict):
            if not isinstance(key, str):
                raise GoError(f"template: error calling index: value has type {_go_type(key)}; should be string")
            item = item.get(key)
        elif isinstance(item, (list, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise GoError(f"template: error calling index: cannot index slice/array with type {_go_type(key)}")
            seq = item if isinstance(item, list) else _go_bytes(item)
            if key < 0 or key >= len(seq):
                raise GoError(f"template: error calling index: index out of range: {key}")
            item = seq[key]
        else:
            raise GoError(f"template: error calling index: can't index item of type {_go_type(item)}")
    return item


def _fn_trunc(args: list) -> str:
    c = _want_int("trunc", args[0])
    s = _go_bytes(_want_str("trunc", args[1]))
    if c < 0 and len(s) + c > 0:
        s = s[len(s) + c :]
    elif c >= 0 and len(s) > c:
        s = s[:c]
    return go_text(s)


def _fn_default(args: list) -> Any:
    if not args:
        raise GoError("template: wrong number of args for default")
    d, given = args[0], args[1:]
    if not given:
        return d
    return given[0] if _truth(given[0]) else d


def _nargs(name: str, n: int, fn):
    def call(args: list) -> Any:
        if len(args) != n:
            raise GoError(f"template: wrong number of args for {name}: want {n} got {len(args)}")
        return fn(args)

    return call


def _fn_len(value: Any) -> int:
    if isinstance(value, str):
        return len(_go_bytes(value))
    if isinstance(value, (list, dict)):
        return len(value)
    raise GoError(f"template: error calling len: len of type {_go_type(value)}")


def _fn_eq(args: list) -> bool:
    if len(args) < 2:
        raise GoError("template: missing argument for comparison")
    first = args[0]
    return any(first == other and type(first) is type(other) for other in args[1:])


_FUNCS = {
    # Go text/template builtins
    "index": _fn_index,
    "printf": lambda a: go_sprintf(_want_str("printf", a[0]), a[1:]) if a else "",
    "print": lambda a: "".join(go_sprint(x) for x in a),
    "len": _nargs("len", 1, lambda a: _fn_len(a[0])),
    "not": _nargs("not", 1, lambda a: not _truth(a[0])),
    "and": lambda a: next((x for x in a if not _truth(x)), a[-1] if a else None),
    "or": lambda a: next((x for x in a if _truth(x)), a[-1] if a else None),
    "eq": _fn_eq,
    "ne": _nargs("ne", 2, lambda a: not _fn_eq(a)),
    # sprig
    "sha256sum": _nargs("sha256sum", 1, lambda a: hashlib.sha256(_go_bytes(_want_str("sha256sum", a[0]))).hexdigest()),
    "trunc": _nargs("trunc", 2, _fn_trunc),
    "trimAll": _nargs("trimAll", 2, lambda a: _want_str("trimAll", a[1]).strip(_want_str("trimAll", a[0])) if a[0] else a[1]),
    "trim": _nargs("trim", 1, lambda a: _want_str("trim", a[0]).strip(" \t\n\r\v\f\u0085\u00a0")),
    "trimPrefix": _nargs("trimPrefix", 2, lambda a: _want_str("trimPrefix", a[1]).removeprefix(_want_str("trimPrefix", a[0]))),
    "trimSuffix": _nargs("trimSuffix", 2, lambda a: _want_str("trimSuffix", a[1]).removesuffix(_want_str("trimSuffix", a[0]))),
    "regexReplaceAll": _nargs(
        "regexReplaceAll", 3, lambda a: go_regexp_replace(_want_str("regexReplaceAll", a[0]), _want_str("regexReplaceAll", a[1]), _want_str("regexReplaceAll", a[2]))
    ),
    "regexMatch": _nargs("regexMatch", 2, lambda a: compile_go_regexp(_want_str("regexMatch", a[0])).search(_want_str("regexMatch", a[1])) is not None),
    "lower": _nargs("lower", 1, lambda a: _want_str("lower", a[0]).lower()),
    "upper": _nargs("upper", 1, lambda a: _want_str("upper", a[0]).upper()),
    "replace": _nargs("replace", 3, lambda a: _want_str("replace", a[2]).replace(_want_str("replace", a[0]), _want_str("replace", a[1]))),
    "contains": _nargs("contains", 2, lambda a: _want_str("contains", a[0]) in _want_str("contains", a[1])),
    "hasPrefix": _nargs("hasPrefix", 2, lambda a: _want_str("hasPrefix", a[1]).startswith(_want_str("hasPrefix", a[0]))),
    "hasSuffix": _nargs("hasSuffix", 2, lambda a: _want_str("hasSuffix", a[1]).endswith(_want_str("hasSuffix", a[0]))),
    "b64enc": _nargs("b64enc", 1, lambda a: base64.b64encode(_go_bytes(_want_str("b64enc", a[0]))).decode()),
    "toJson": _nargs("toJson", 1, lambda a: go_marshal(a[0])),
    "default": _fn_default,
}


def _call(name: str, args: list) -> Any:
    try:
        result = _FUNCS[name](args)
    except IndexError:
        raise GoError(f"template: wrong number of args for {name}") from None
    return result


_TEMPLATE_CACHE: dict[str, GoTemplate] = {}


def go_template(source: str) -> GoTemplate:
    tpl = _TEMPLATE_CACHE.get(source)
    if tpl is None:
        tpl = GoTemplate(source)
        _TEMPLATE_CACHE[source] = tpl
    return tpl


# =============================================================================================
# sjson.Set on a decoded object
# =============================================================================================


def sjson_set(obj: Any, path: str, value: Any, in_place: bool = False) -> Any:
    """sjson.SetBytes(json(obj), path, value) for plain paths; returns the new object."""
    if path == "":
        raise GoError("path cannot be empty")
    force = path.startswith(":")
    parts = split_path(path[1:] if force else path)
    if parts is None:
        raise Unsupported(f"sjson path {path!r} (wildcards, queries or modifiers) is not supported by the simulator")
    forced = [force] + [False] * (len(parts) - 1)
    root = obj if in_place else copy.deepcopy(obj)
    if not isinstance(root, (dict, list)):
        root = [] if _numeric(parts[0], forced[0]) else {}
    _sjson_into(root, parts, forced, value)
    return root


def _numeric(part: str, force: bool) -> bool:
    return not force and part != "" and part.isdigit() and part.isascii()


def _sjson_into(container: Any, parts: list[str], forced: list[bool], value: Any) -> None:
    part, rest = parts[0], parts[1:]
    if isinstance(container, dict):
        key = part
        if not rest:
            container[key] = value
            return
        child = container.get(key)
        if not isinstance(child, (dict, list)) or key not in container:
            child = [] if (_numeric(rest[0], forced[1]) or (rest[0] == "-1" and not forced[1])) else {}
            container[key] = child
        _sjson_into(child, rest, forced[1:], value)
        return
    # a list
    if part == "-1" and not forced[0]:
        index = len(container)
    elif _numeric(part, forced[0]):
        index = int(part)
    else:
        raise GoError(f"cannot set array element for non-numeric key '{part}'")
    while len(container) <= index:
        container.append(None)
    if not rest:
        container[index] = value
        return
    child = container[index]
    if not isinstance(child, (dict, list)):
        child = [] if (_numeric(rest[0], forced[1]) or rest[0] == "-1") else {}
        container[index] = child
    _sjson_into(child, rest, forced[1:], value)


# =============================================================================================
# Event data, filters, triggers
# =============================================================================================


def falcosidekick_headers(body: bytes, authorization: str | None = "*** Masked Auth Secret ***") -> dict[str, list[str]]:
    """The headers Falcosidekick's webhook output sends, as the EventSource records them."""
    headers = {
        "Accept-Encoding": ["gzip"],
        "Content-Length": [str(len(body))],
        "Content-Type": ["application/json; charset=utf-8"],
        "User-Agent": ["Falcosidekick"],
    }
    if authorization is not None:
        headers["Authorization"] = [authorization]
    return headers


def webhook_event_data(body: bytes, headers: dict[str, list[str]] | None = None, metadata: dict | None = None) -> bytes:
    """json.Marshal(WebhookEventData{Header, Body: RawMessage(body), Metadata}) as the EventSource does.

    Raises JSONSyntaxError when the body is not valid JSON (the EventSource answers 400).
    """
    node = parse_json(go_text(body))
    if headers is None:
        headers = falcosidekick_headers(body)
    head = "{" + ",".join(go_json_string(k) + ":" + go_marshal(list(headers[k])) for k in sorted(headers)) + "}"
    out = '{"header":' + head + ',"body":' + node.raw
    if metadata:
        out += ',"metadata":' + go_marshal(dict(metadata))
    return (out + "}").encode("utf-8")


def event_data_for_alert(alert: Any) -> bytes:
    """Event data for an alert given as a decoded object (serialized as Falcosidekick would)."""
    body = json.dumps(alert, ensure_ascii=False).encode("utf-8")
    return webhook_event_data(body)


@dataclass
class FilterFailure:
    dependency: str
    kind: str  # event | data | script | filters
    index: int | None
    path: str | None
    reason: str

    def describe(self) -> str:
        where = f"{self.kind} filter" + (f" #{self.index + 1}" if self.index is not None else "")
        if self.path:
            where += f" ({self.path})"
        return f"dependency {self.dependency}: {where}: {self.reason}"


@dataclass
class TriggerResult:
    name: str
    workflow: dict | None
    error: str | None = None


@dataclass
class SensorResult:
    sensor: str
    policy: str | None
    order: int
    matched: bool
    failure: FilterFailure | None = None
    dependencies: list[str] = field(default_factory=list)
    triggers: list[TriggerResult] = field(default_factory=list)

    @property
    def reason(self) -> str:
        if self.matched:
            return "all filters passed"
        return self.failure.describe() if self.failure else "no trigger fired"


_SUPPORTED_FILTER_KEYS = {"data", "dataLogicalOperator", "script"}
_UNSUPPORTED_FILTERS = {"exprs": "exprs (govaluate)", "context": "context", "time": "time", "exprLogicalOperator": "exprs"}


def _check_dependency(dep: dict) -> None:
    for key in dep:
        if key not in ("name", "eventSourceName", "eventName", "filters", "filtersLogicalOperator"):
            raise Unsupported(f"dependency {dep.get('name')!r}: field {key!r} (e.g. transform) is not supported by the simulator")
    for key, value in (dep.get("filters") or {}).items():
        if key in _UNSUPPORTED_FILTERS and value:
            raise Unsupported(f"dependency {dep.get('name')!r}: {_UNSUPPORTED_FILTERS[key]} filters are not supported by the simulator")
        if key not in _SUPPORTED_FILTER_KEYS and key not in _UNSUPPORTED_FILTERS:
            raise Unsupported(f"dependency {dep.get('name')!r}: unknown filter kind {key!r}")
    for i, f in enumerate((dep.get("filters") or {}).get("data") or []):
        for key in f:
            if key not in ("path", "type", "value", "comparator", "template"):
                raise Unsupported(f"dependency {dep.get('name')!r}: data filter #{i + 1} field {key!r}")
        comparator = f.get("comparator") or ""
        if comparator not in ("", "=", "!=", ">=", ">", "<", "<="):
            # the controller's validation refuses the Sensor (e.g. '==')
            raise GoError(f"data filter #{i + 1}: invalid comparator {comparator!r} (the Sensor would be refused)")


def _operator(value: Any, what: str) -> str:
    value = value or "and"
    if value not in ("and", "or"):
        raise GoError(f"{what}: invalid logical operator {value!r}")
    return value


def filter_data(filters: list[dict], operator: str, root: Node) -> tuple[bool, str | None, tuple[int, str, str] | None]:
    """filterData: (passed, error text, first failure (index, path, reason)) like Argo's loop."""
    errors: list[str] = []
    first: tuple[int, str, str] | None = None

    def fail(i: int, path: str, reason: str) -> None:
        nonlocal first
        if first is None:
            first = (i, path, reason)

    for i, f in enumerate(filters):
        path = str(f.get("path", ""))
        result = gjson_get(root, path)
        if result is None:
            msg = f"path '{path}' does not exist"
            if operator == "or":
                errors.append(msg)
                fail(i, path, msg)
                continue
            return False, f"data filter error ({msg})", (i, path, msg)
        values = [str(v) for v in (f.get("value") or [])]
        if not values:
            msg = "no values specified"
            if operator == "or":
                errors.append(msg)
                fail(i, path, msg)
                continue
            return False, f"data filter error ({msg})", (i, path, msg)
        template = f.get("template") or ""
        if template:
            try:
                out = go_template(template).execute({"Input": result.string()})
            except GoError as exc:
                out, err = None, str(exc)
            else:
                err = None if out not in ("", "<no value>") else f"template '{template}' evaluated to empty string or no value"
            if err:
                if operator == "or":
                    errors.append(err)
                    fail(i, path, err)
                    continue
                return False, f"data filter error ({err})", (i, path, err)
            result = Node("string", go_json_string(out), scalar=out)
        typ = f.get("type")
        comparator = f.get("comparator") or ""
        matched = False
        reason = ""
        if typ == "bool":
            actual = result.bool()
            for v in values:
                try:
                    want = go_parse_bool(v)
                except ValueError as exc:
                    if operator == "or":
                        errors.append(str(exc))
                        fail(i, path, str(exc))
                        break
                    return False, f"data filter error ({exc})", (i, path, str(exc))
                if want == actual:
                    matched = True
                    break
            reason = f"{actual!s} is not {' / '.join(values)}".lower()
        elif typ == "number":
            actual_f = result.float()
            for v in values:
                try:
                    want_f = go_parse_float(v)
                except ValueError as exc:
                    if operator == "or":
                        errors.append(str(exc))
                        fail(i, path, str(exc))
                        break
                    return False, f"data filter error ({exc})", (i, path, str(exc))
                ok = {
                    ">=": actual_f >= want_f, ">": actual_f > want_f, "<": actual_f < want_f,
                    "<=": actual_f <= want_f, "!=": actual_f != want_f, "=": actual_f == want_f, "": actual_f == want_f,
                }.get(comparator, False)
                if ok:
                    matched = True
                    break
            reason = f"{go_format_float(actual_f, 'g')} is not {comparator or '='} {' / '.join(values)}"
        elif typ == "string":
            text = result.string()
            for v in values:
                try:
                    rx = compile_go_regexp(v)
                except GoError as exc:
                    if operator == "or":
                        errors.append(str(exc))
                        fail(i, path, str(exc))
                        break
                    return False, f"data filter error ({exc})", (i, path, str(exc))
                hit = rx.search(text) is not None
                if (comparator in ("", "=") and hit) or (comparator == "!=" and not hit):
                    matched = True
                    break
            shown = text if len(text) <= 120 else text[:117] + "..."
            if comparator == "!=":
                reason = f"{shown!r} matches {' and '.join(values)} (comparator !=)"
            elif comparator in ("", "="):
                reason = f"{shown!r} does not match {' / '.join(values)}"
            else:
                reason = f"comparator {comparator!r} never matches a string"
        else:
            msg = f"unsupported JSON type '{typ}'"
            if operator == "or":
                errors.append(msg)
                fail(i, path, msg)
                continue
            return False, f"data filter error ({msg})", (i, path, msg)
        if matched:
            if operator == "or":
                return True, None, None
            continue
        if operator == "or":
            fail(i, path, reason)
            continue
        return False, None, (i, path, reason)
    if operator == "or":
        if errors:
            return False, "data filter errors [" + " / ".join(errors) + "]", first
        return False, None, first
    return True, None, None


def _cached(node: Node, key: str, compute):
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


def _lua_table(rt, mapping: dict):
    """Argo's mapToTable: nil and nested-array values dropped, array elements appended in order."""
    table = rt.table()
    for key, element in mapping.items():
        converted = _lua_value(rt, element, in_array=False)
        if converted is not _MISSING:
            table[key] = converted
    return table


def _lua_value(rt, element: Any, in_array: bool) -> Any:
    if isinstance(element, bool) or isinstance(element, str) or isinstance(element, float):
        return element
    if isinstance(element, dict):
        return _lua_table(rt, element)
    if isinstance(element, list) and not in_array:
        seq = rt.table()
        n = 0
        for item in element:
            converted = _lua_value(rt, item, in_array=True)
            if converted is not _MISSING:
                n += 1
                seq[n] = converted
        return seq
    return _MISSING  # nil, and arrays inside arrays


def filter_script(script: str, root: Node) -> tuple[bool, str | None]:
    """filterScript: run the Lua script with the global `event`; (passed, error)."""
    if not script:
        return True, None
    from lupa import lua51

    try:
        payload = _cached(root, "unmarshal", lambda: go_unmarshal(root))
    except GoError as exc:
        return False, str(exc)
    if not isinstance(payload, dict):
        return False, "json: cannot unmarshal into Go value of type map[string]interface {}"
    rt = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
    rt.globals().event = _lua_table(rt, payload)
    try:
        result = rt.execute(script)
    except lua51.LuaError as exc:
        return False, f"lua: {' '.join(str(exc).split())}"
    if isinstance(result, tuple):
        result = result[-1] if result else None
    return result is True, None


def _first_failure_or(dep: str, data_first, script_ok: bool, script_err: str | None) -> FilterFailure:
    if data_first is not None:
        i, path, reason = data_first
        return FilterFailure(dep, "data", i, path, reason)
    if script_err:
        return FilterFailure(dep, "script", None, None, f"script error: {script_err}")
    return FilterFailure(dep, "script", None, None, "script did not return true")


def evaluate_dependency(dep: dict, root: Node) -> FilterFailure | None:
    """None when the event passes the dependency's filters, else the first failing filter."""
    _check_dependency(dep)
    name = str(dep.get("name"))
    filters = dep.get("filters")
    if not filters:
        return None
    operator = _operator(dep.get("filtersLogicalOperator"), "filtersLogicalOperator")
    data = filters.get("data")
    data_operator = _operator(filters.get("dataLogicalOperator"), "dataLogicalOperator")
    if data:
        data_ok, data_err, data_first = filter_data(list(data), data_operator, root)
    else:
        data_ok, data_err, data_first = True, None, None
    if data_err and operator != "or":
        i, path, reason = data_first if data_first else (None, None, data_err)
        return FilterFailure(name, "data", i, path, reason)
    script = filters.get("script") or ""
    script_ok, script_err = filter_script(script, root)
    if script_err:  # filterScript's error is returned whatever the operator
        return FilterFailure(name, "script", None, None, f"script error: {script_err}")
    if operator == "or":
        passed = (bool(data) and data_ok) or (bool(script) and script_ok)
        if passed and not data_err:
            return None
        if data_err:
            # Argo returns (pass, err); a Sensor treats an error as a rejection
            return FilterFailure(name, "data", data_first[0] if data_first else None, data_first[1] if data_first else None, data_err)
        return _first_failure_or(name, data_first, script_ok, None)
    if not data_ok:
        i, path, reason = data_first
        return FilterFailure(name, "data", i, path, reason)
    if not script_ok:
        return FilterFailure(name, "script", None, None, "script did not return true")
    return None


# --- trigger parameters ---------------------------------------------------------------------


def resolve_parameter(src: dict, events: dict[str, Node]) -> tuple[str | None, str]:
    """ResolveParamValue: (value or None, type) where type is 'String', 'JSON', 'Null', ..."""
    for key in src:
        if key not in ("dependencyName", "dataKey", "dataTemplate", "value", "contextKey", "contextTemplate", "useRawData"):
            raise Unsupported(f"trigger parameter source field {key!r}")
    if src.get("contextKey") or src.get("contextTemplate"):
        raise Unsupported("trigger parameters from the CloudEvent context (contextKey/contextTemplate)")
    default = src.get("value")
    default = None if default is None else str(default)
    root = events.get(str(src.get("dependencyName")))
    if root is None:
        if default is not None:
            return default, "String"
        return None, "String"
    key = src.get("dataKey") or ""
    template = src.get("dataTemplate") or ""
    if not key and not template:
        if default is not None:
            return default, "String"
        raise Unsupported("a parameter without dataKey/dataTemplate/value passes the whole event: not simulated")
    if template:
        try:
            out = go_template(template).execute({"Input": _cached(root, "value", root.value)})
            if out not in ("", "<no value>"):
                return out, "String"
        except GoError:
            pass
    if key:
        node = gjson_get(root, key)
        if node is not None:
            if node.kind in ("object", "array") or node.kind == "null":
                return node.raw, node.gtype()
            return node.string(), node.gtype()
    if default is not None:
        return default, "String"
    raise GoError(f"unable to resolve '{src.get('dependencyName')}' parameter value")


def apply_parameters(obj: Any, params: list[dict], events: dict[str, Node]) -> Any:
    """ApplyParams: every parameter's value set at its dest (sjson), in order."""
    obj = copy.deepcopy(obj)
    for i, param in enumerate(params or []):
        for key in param:
            if key not in ("src", "dest", "operation"):
                raise Unsupported(f"trigger parameter field {key!r}")
        value, typ = resolve_parameter(param.get("src") or {}, events)
        if value is None:
            continue
        dest = str(param.get("dest") or "")
        op = param.get("operation") or "overwrite"
        if op in ("append", "prepend"):
            current = gjson_get(parse_json(go_marshal(obj)), dest)
            if current is not None:
                typ = "String"
                value = current.string() + value if op == "append" else value + current.string()
        elif op != "overwrite":
            raise GoError(f"unsupported trigger parameter operation: {op}")
        if typ != "String" and (param.get("src") or {}).get("useRawData"):
            raw_value = json.loads(value)
            obj = sjson_set(obj, dest, raw_value, in_place=True)
        else:
            obj = sjson_set(obj, dest, value, in_place=True)
    return obj


def _wire(obj: Any) -> Any:
    """A JSON round trip, as the Sensor marshals and unmarshals the template."""
    return json.loads(json.dumps(obj))


def run_trigger(sensor: dict, trigger: dict, events: dict[str, Node], now_ms: int | None = None) -> TriggerResult:
    trigger = _wire(trigger)
    for key in trigger:
        if key not in ("template", "parameters", "policy", "retryStrategy", "rateLimit", "atLeastOnce"):
            raise Unsupported(f"trigger field {key!r}")
    template = trigger.get("template") or {}
    name = str(template.get("name"))
    if trigger.get("parameters"):
        template = apply_parameters(template, trigger["parameters"], events)
    for key in template:
        if key not in ("name", "argoWorkflow", "conditions"):
            raise Unsupported(f"trigger {name!r}: trigger type {key!r} (only argoWorkflow is simulated)")
    conditions = template.get("conditions")
    if conditions and conditions.strip() not in events:
        raise Unsupported(f"trigger {name!r}: conditions {conditions!r} (only a single dependency name is simulated)")
    aw = template.get("argoWorkflow")
    if not isinstance(aw, dict):
        raise Unsupported(f"trigger {name!r}: no argoWorkflow")
    operation = aw.get("operation") or "submit"
    if operation != "submit":
        raise Unsupported(f"trigger {name!r}: argoWorkflow operation {operation!r}")
    if aw.get("args"):
        raise Unsupported(f"trigger {name!r}: argoWorkflow args {aw['args']!r}")
    source = aw.get("source") or {}
    if set(source) != {"resource"}:
        raise Unsupported(f"trigger {name!r}: source {sorted(source)} (only an embedded resource is simulated)")
    resource = copy.deepcopy(source["resource"])
    try:
        workflow = apply_parameters(resource, aw.get("parameters") or [], events)
    except GoError as exc:
        return TriggerResult(name, None, f"failed to apply parameters: {exc}")
    if not isinstance(workflow, dict):
        return TriggerResult(name, None, "the resource is not an object")
    meta = workflow.setdefault("metadata", {})
    if not meta.get("name") and not meta.get("generateName"):
        return TriggerResult(name, None, "failed to trigger the workflow, neither name nor generateName is given")
    if not meta.get("namespace"):
        meta["namespace"] = (sensor.get("metadata") or {}).get("namespace")
    labels = meta.get("labels") or {}
    labels["events.argoproj.io/sensor"] = str((sensor.get("metadata") or {}).get("name"))
    labels["events.argoproj.io/trigger"] = name
    labels["events.argoproj.io/action-timestamp"] = str(now_ms if now_ms is not None else int(time.time() * 1000))
    meta["labels"] = labels
    return TriggerResult(name, workflow)


def evaluate(
    sensor: dict,
    event_data: bytes | Node,
    *,
    event_source: str = "falco",
    event_name: str = "falco-alert",
    now_ms: int | None = None,
) -> SensorResult:
    """Everything one Sensor does with one event: filters, then (if they pass) its triggers."""
    meta = sensor.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    order_text = str(annotations.get("falco-response.io/policy-order", "0"))
    result = SensorResult(
        sensor=str(meta.get("name")),
        policy=labels.get("falco-response.io/policy"),
        order=int(order_text) if order_text.isdigit() else 0,
        matched=False,
    )
    spec = sensor.get("spec") or {}
    for key in spec:
        if key not in ("dependencies", "triggers", "template", "eventBusName", "replicas", "revisionHistoryLimit", "loggingFields", "errorOnFailedRound"):
            raise Unsupported(f"Sensor spec field {key!r}")
    root = event_data if isinstance(event_data, Node) else parse_json(go_text(event_data))
    events: dict[str, Node] = {}
    for dep in spec.get("dependencies") or []:
        name = str(dep.get("name"))
        result.dependencies.append(name)
        if dep.get("eventSourceName") != event_source or dep.get("eventName") != event_name:
            _check_dependency(dep)
            result.failure = FilterFailure(
                name, "event", None, None,
                f"waits for {dep.get('eventSourceName')}/{dep.get('eventName')}, not {event_source}/{event_name}",
            )
            continue
        failure = evaluate_dependency(dep, root)
        if failure is None:
            events[name] = root
        elif result.failure is None or result.failure.kind == "event":
            result.failure = failure
    if not events:
        return result
    if len(events) != len(spec.get("dependencies") or []):
        # A trigger needs all the dependencies its conditions name; ours name exactly one.
        if len(spec.get("dependencies") or []) > 1:
            raise Unsupported("Sensors with several dependencies are not simulated")
    result.failure = None
    result.matched = True
    for trigger in spec.get("triggers") or []:
        result.triggers.append(run_trigger(sensor, trigger, events, now_ms=now_ms))
    return result


# --- build/ ------------------------------------------------------------------------------------


def load_yaml_objects(directory: Path, kind: str) -> list[dict]:
    objs = []
    for path in sorted(Path(directory).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == kind:
                objs.append(doc)
    return objs


def load_sensors(build_dir: str | Path) -> list[dict]:
    """The Sensors in build/sensors, in policy order."""
    sensors = load_yaml_objects(Path(build_dir) / "sensors", "Sensor")

    def order(s: dict) -> tuple[int, str]:
        text = str(((s.get("metadata") or {}).get("annotations") or {}).get("falco-response.io/policy-order", ""))
        return (int(text) if text.isdigit() else 1 << 30, str((s.get("metadata") or {}).get("name")))

    return sorted(sensors, key=order)


@dataclass
class WebhookSpec:
    eventsource: str
    event_name: str
    endpoint: str
    method: str
    port: int
    max_payload_size: int
    auth_secret: dict | None


def load_eventsource(build_dir: str | Path) -> WebhookSpec:
    """The (single) webhook event of the EventSource in build/eventsources."""
    sources = load_yaml_objects(Path(build_dir) / "eventsources", "EventSource")
    hooks = [(es, name, hook) for es in sources for name, hook in ((es.get("spec") or {}).get("webhook") or {}).items()]
    if len(hooks) != 1:
        raise Unsupported(f"expected exactly one webhook event in {build_dir}/eventsources, found {len(hooks)}")
    es, name, hook = hooks[0]
    size = hook.get("maxPayloadSize")
    if size is not None and not isinstance(size, int):
        raise GoError(f"EventSource {es['metadata']['name']}: maxPayloadSize must be an integer, got {size!r}")
    return WebhookSpec(
        eventsource=str(es["metadata"]["name"]),
        event_name=str(name),
        endpoint=str(hook.get("endpoint") or "/"),
        method=str(hook.get("method") or "POST"),
        port=int(str(hook.get("port"))),
        max_payload_size=int(size) if size else 1048576,
        auth_secret=hook.get("authSecret"),
    )


def evaluate_all(sensors: list[dict], event_data: bytes, webhook: WebhookSpec, now_ms: int | None = None) -> list[SensorResult]:
    root = parse_json(go_text(event_data))  # parsed once, read by every Sensor
    return [
        evaluate(s, root, event_source=webhook.eventsource, event_name=webhook.event_name, now_ms=now_ms)
        for s in sensors
    ]


def workflow_parameters(workflow: dict) -> dict[str, str]:
    return {
        str(p.get("name")): "" if p.get("value") is None else str(p.get("value"))
        for p in ((workflow.get("spec") or {}).get("arguments") or {}).get("parameters") or []
    }

"""Go's strconv and fmt, as far as filters and templates need them: the Sensor prints and parses like Go."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from standin.argo.events.sensors.errors import Unsupported


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


# bool before int: a Python bool is an int, a Go bool is not
_GO_TYPES = ((bool, "bool"), (str, "string"), (int, "int"), (float, "float64"), (dict, "map[string]interface {}"), (list, "[]interface {}"))


def go_type(value: Any) -> str:
    """The type name Go's error messages give a value decoded from JSON."""
    if value is None:
        return "<nil>"
    return next((name for typ, name in _GO_TYPES if isinstance(value, typ)), type(value).__name__)


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
                text = f"%!{verb}({go_type(arg)}={go_sprint(arg)})"
        elif verb == "d":
            if isinstance(arg, int) and not isinstance(arg, bool):
                text = str(arg)
            else:
                text = f"%!d({go_type(arg)}={go_sprint(arg)})" if arg is not None else "%!d(<nil>)"
        elif verb == "q":
            if isinstance(arg, str):
                text = json.dumps(arg, ensure_ascii=False)
            else:
                text = f"%!q({go_type(arg)}={go_sprint(arg)})"
        else:
            raise Unsupported(f"printf verb %{verb} in a template")
        if width:
            w = int(width)
            text = text.ljust(w) if "-" in flags else text.rjust(w, "0" if "0" in flags and verb == "d" else " ")
        out.append(text)
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{go_type(a)}={go_sprint(a)}" if a is not None else "<nil>" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)

"""Go regexps (RE2) on Python's re: the subset whose meaning is the same, anything else refused."""

from __future__ import annotations

import re

from standin.argo.events.sensors.errors import GoError, Unsupported


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
                raise GoError("error parsing regexp: invalid escape sequence: `\\z`")
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

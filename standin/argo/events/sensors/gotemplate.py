"""Go text/template with the sprig functions build/ uses: enough to run dataTemplate and filter templates."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from standin.argo.events.sensors.errors import GoError, Unsupported
from standin.argo.events.sensors.goconv import go_sprint, go_sprintf, go_type
from standin.argo.events.sensors.gojson import go_marshal, go_text
from standin.argo.events.sensors.goregex import compile_go_regexp, go_regexp_replace


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
      | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
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
    decl: str | None = None  # `{{ $x := p }}` or `{{ $x = p }}`: the variable, and nothing printed
    assign: bool = False  # `=` sets the nearest existing $x (Go 1.11), `:=` declares a new one


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
        self._vars = ["$"]  # parse.go Tree.vars: the variables in scope while parsing
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
            if kind in ("comma", "char"):
                raise Unsupported(f"template construct {m.group(0)!r} (range declarations, char constants) in {self.source!r}")
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
                node, i = self._parse_branch(head.text, toks[1:], items, i + 1)
                nodes.append(node)
                continue
            if head.kind == "ident" and head.text in _KEYWORDS:
                raise Unsupported(f"template action {{{{{head.text} ...}}}} in {self.source!r}")
            nodes.append(self._parse_action(toks))
            i += 1
        if not top:
            raise GoError(f"template: unexpected EOF in {self.source!r}")
        return nodes, None, i

    def _parse_action(self, toks: list[_Tok]) -> _Action:
        """`{{ p }}`, or `{{ $x := p }}` / `{{ $x = p }}` (parse.go pipeline: a declaration is a
        variable then `:=` or `=`; `=` needs $x in scope, else "undefined variable")."""
        if len(toks) >= 2 and toks[0].kind == "var" and toks[1].kind == "assign" and "." not in toks[0].text:
            name, assign = toks[0].text, toks[1].text == "="
            if name == "$":
                raise GoError(f'template: param:1: undefined variable "$" cannot be assigned in {self.source!r}')
            if assign and name not in self._vars:
                raise GoError(f'template: param:1: undefined variable "{name}"')
            pipe = self._parse_pipe(toks[2:])
            if not assign:
                self._vars.append(name)
            return _Action(pipe, name, assign)
        return _Action(self._parse_pipe(toks))

    def _parse_branch(self, kind: str, toks: list[_Tok], items: list, i: int):
        """`{{if p}}..{{else if q}}..{{else}}..{{end}}`: text/template parse.go parseControl reads
        `else if` as `else` holding one nested `if` that shares the outer `end`. Variables declared
        inside go out of scope at the `end` (parseControl: defer t.popVars)."""
        mark = len(self._vars)
        try:
            return self._parse_branch_scoped(kind, toks, items, i)
        finally:
            del self._vars[mark:]

    def _parse_branch_scoped(self, kind: str, toks: list[_Tok], items: list, i: int):
        if any(t.kind == "assign" for t in toks):
            raise Unsupported(f"template declaration in an {kind} pipeline in {self.source!r}")
        pipe = self._parse_pipe(toks)
        body, stop, i = self._parse_list(items, i)
        orelse: list = []
        if stop[0] == "else":
            if stop[1]:
                chained = stop[1][0]
                if chained.kind != "ident" or chained.text != kind or kind != "if":
                    raise Unsupported(f"template 'else {chained.text}' chains in {self.source!r}")
                node, i = self._parse_branch_scoped("if", stop[1][1:], items, i)
                return _Branch(kind, pipe, body, [node]), i
            orelse, stop, i = self._parse_list(items, i)
            if stop[0] != "end":
                raise GoError(f"template: expected end; found {stop[0]}")
        return _Branch(kind, pipe, body, orelse), i

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
        if t.kind == "var":
            name, *fields = t.text.split(".")
            if name not in self._vars:
                raise GoError(f'template: param:1: undefined variable "{name}"')
            return _Operand("var", (name, fields))
        if t.kind == "assign":
            raise GoError(f"template: unexpected {t.text!r} in command")
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
        # exec.go state.vars: a stack of (name, value), `$` the data; a declaration pushes, `=`
        # sets the nearest of that name (setVar), an if/with pops what its body pushed (s.mark)
        self._run(self.nodes, data, [["$", data]], out)
        return "".join(out)

    def _run(self, nodes: list, dot: Any, vars: list, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self._pipe(node.pipe, dot, vars)
                if node.decl is None:
                    out.append("<no value>" if value is None else go_sprint(value))
                elif node.assign:
                    next(v for v in reversed(vars) if v[0] == node.decl)[1] = value
                else:
                    vars.append([node.decl, value])
            else:
                mark = len(vars)
                value = self._pipe(node.pipe, dot, vars)
                if _truth(value):
                    self._run(node.body, value if node.kind == "with" else dot, vars, out)
                else:
                    self._run(node.orelse, dot, vars, out)
                del vars[mark:]

    def _pipe(self, pipe: _Pipe, dot: Any, vars: list) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self._command(cmd, dot, vars, value)
        return value

    def _command(self, cmd: list[_Operand], dot: Any, vars: list, final: Any) -> Any:
        first = cmd[0]
        if first.kind == "ident" and first.value in ("and", "or"):
            # text/template since Go 1.18 (funcs.go and/or, exec.go evalCall): arguments are
            # evaluated left to right only until the result is known
            if len(cmd) < 2 and final is _MISSING:
                raise GoError(f"template: wrong number of args for {first.value}: want at least 1 got 0")
            value: Any = None
            for a in cmd[1:]:
                value = self._arg(a, dot, vars)
                if _truth(value) == (first.value == "or"):
                    return value
            return final if final is not _MISSING else value
        if first.kind == "ident":
            args = [self._arg(a, dot, vars) for a in cmd[1:]]
            if final is not _MISSING:
                args.append(final)
            return _call(first.value, args)
        if len(cmd) > 1 or final is not _MISSING:
            raise GoError(f"template: can't give argument to non-function {first.kind}")
        return self._arg(first, dot, vars)

    def _arg(self, op: _Operand, dot: Any, vars: list) -> Any:
        if op.kind == "field":
            return _field(dot, op.value)
        if op.kind == "dot":
            return dot
        if op.kind == "pipe":
            return self._pipe(op.value, dot, vars)
        if op.kind == "ident":
            return _call(op.value, [])
        if op.kind == "var":
            name, fields = op.value
            try:
                value = next(v for v in reversed(vars) if v[0] == name)[1]
            except StopIteration:  # declared in a branch not taken (exec.go varValue)
                raise GoError(f"template: undefined variable: {name}") from None
            return _field(value, fields) if fields else value
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
            raise GoError(f"template: can't evaluate field {name} in type {go_type(value)}")
        value = value.get(name)  # a missing key is Go's invalid value: prints <no value>
    return value


def _want_str(fn: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise GoError(f"template: error calling {fn}: invalid value; expected string")
    raise GoError(f"template: wrong type for value; expected string; got {go_type(value)}")


def _want_int(fn: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None:
        raise GoError(f"template: error calling {fn}: invalid value; expected int")
    raise GoError(f"template: wrong type for value; expected int; got {go_type(value)}")


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
                raise GoError(f"template: error calling index: value has type {go_type(key)}; should be string")
            item = item.get(key)
        elif isinstance(item, (list, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise GoError(f"template: error calling index: cannot index slice/array with type {go_type(key)}")
            seq = item if isinstance(item, list) else _go_bytes(item)
            if key < 0 or key >= len(seq):
                raise GoError(f"template: error calling index: index out of range: {key}")
            item = seq[key]
        else:
            raise GoError(f"template: error calling index: can't index item of type {go_type(item)}")
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
    raise GoError(f"template: error calling len: len of type {go_type(value)}")


def _eq_kind(value: Any) -> str:
    if value is None:
        return "nil"
    kind = _basic_kind(value)
    return kind if kind != "invalid" else "other"


def _fn_eq(args: list) -> bool:
    """text/template funcs.go eq: true if arg1 equals any later argument. Different basic kinds
    (a string and a float64, a float64 and an int constant) are an error unless one side is nil;
    maps and slices are not comparable."""
    if len(args) < 2:
        raise GoError("template: missing argument for comparison")
    first = args[0]
    k1 = _eq_kind(first)
    for other in args[1:]:
        k2 = _eq_kind(other)
        if k1 != k2:
            if k1 != "nil" and k2 != "nil":
                raise GoError("template: error calling eq: incompatible types for comparison")
            continue
        if k1 == "other":
            raise GoError(f"template: error calling eq: non-comparable type {go_type(first)}")
        if k1 == "nil" or first == other:
            return True
    return False


def _fn_has(args: list) -> bool:
    """sprig has(needle, haystack): reflect.DeepEqual against each element of a slice; nil: false;
    any other haystack: sprig panics ("Cannot find has on type"), a template error."""
    needle, haystack = args
    if haystack is None:
        return False
    if not isinstance(haystack, list):
        raise GoError(f"template: error calling has: Cannot find has on type {go_type(haystack)}")
    return any(_deep_equal(needle, item) for item in haystack)


def _deep_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    return a == b


def _kind_of(value: Any) -> str:
    """sprig kindOf: reflect.ValueOf(v).Kind().String() for a value decoded by gjson Value() or a constant."""
    if value is None:
        return "invalid"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "slice"
    if isinstance(value, dict):
        return "map"
    raise Unsupported(f"kindIs on a {type(value).__name__}")


def _basic_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "invalid"


def _fn_less(name: str, args: list, or_equal: bool) -> bool:
    """text/template funcs.go lt/le: the same basic kind (int, float, string) on both sides."""
    if len(args) != 2:
        raise GoError(f"template: wrong number of args for {name}: want 2 got {len(args)}")
    a, b = args
    ka, kb = _basic_kind(a), _basic_kind(b)
    if ka in ("bool", "invalid") or kb in ("bool", "invalid"):
        raise GoError(f"template: error calling {name}: invalid type for comparison")
    if ka != kb:
        raise GoError(f"template: error calling {name}: incompatible types for comparison")
    return a < b or (or_equal and a == b)


def _fn_split_list(args: list) -> list[str]:
    """sprig splitList: strings.Split(orig, sep)."""
    sep, orig = _want_str("splitList", args[0]), _want_str("splitList", args[1])
    return list(orig) if sep == "" else orig.split(sep)


def _fn_uniq(args: list) -> list:
    """sprig uniq: the first occurrence of each element (reflect.DeepEqual), in order; a panic on a non-list."""
    items = args[0]
    if not isinstance(items, list):
        raise GoError(f"template: error calling uniq: Cannot find uniq on type {go_type(items)}")
    out: list = []
    seen: set = set()
    for item in items:
        if isinstance(item, str):
            if item in seen:
                continue
            seen.add(item)
        elif any(item == other and type(item) is type(other) for other in out):
            continue
        out.append(item)
    return out


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
    "lt": lambda a: _fn_less("lt", a, False),
    "le": lambda a: _fn_less("le", a, True),
    "gt": lambda a: not _fn_less("gt", a, True),
    "ge": lambda a: not _fn_less("ge", a, False),
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
    "splitList": _nargs("splitList", 2, _fn_split_list),
    "uniq": _nargs("uniq", 1, _fn_uniq),
    "has": _nargs("has", 2, _fn_has),
    "list": lambda a: list(a),
    "kindIs": _nargs("kindIs", 2, lambda a: _want_str("kindIs", a[0]) == _kind_of(a[1])),
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

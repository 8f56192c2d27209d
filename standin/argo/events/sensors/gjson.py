"""GJSON paths (gjson.Get, tidwall/gjson v1.19.0 as Argo Events v1.9 vendors it) on a parsed event.

Walked on the raw parse (gojson.Node), never on a decoded dict, because a dict has lost what GJSON
sees: every occurrence of a repeated key, in order, and each key's raw text. What is implemented,
each as gjson.go does it:

- keys, with `\\` escapes (parseObjectPath); a key matches when it equals the part once its own
  JSON escapes are decoded. The LAST component returns the FIRST matching key's value; a
  component with more path after it tries every matching key in order and returns the first one
  under which the rest is found (parseObject: `if hit { return }`, else keep scanning), so
  `{"a": {}, "a": {"b": 1}}` has `a.b` = 1;
- array indexes (parseArrayPath/parseUint: ASCII digits);
- pipes: `|` and a dot followed by a modifier or a sub-selector (isDotPiperChar). The pipe is
  applied to the value before it, or to nothing when that key is missing (`c.value.Get(c.pipe)` on
  an empty Result), as long as the object holding the key was reached;
- the modifiers `@keys` (modKeys: each key's raw text, every occurrence; `null` per element of a
  non-object) and `@this`;
- the sub-selector `[path,...]` (parseSubSelectors): the raw values that exist, in a JSON array.

Anything else (wildcards, `#` counts and queries, `{...}` selectors, other modifiers, modifier
arguments, `!` literals, `..`) raises Unsupported: guessing would hide exactly the differences
this module exists to show.
"""

from __future__ import annotations

import functools

from standin.argo.events.sensors.errors import Unsupported
from standin.argo.events.sensors.gojson import Node, parse_json


_COMPLEX = set("|#@*?!")

# gjson.go `modifiers` (v1.19.0): every name that makes `.@name` a pipe; only some are implemented.
_GJSON_MODIFIERS = {"pretty", "ugly", "reverse", "this", "flatten", "join", "valid", "keys", "values", "tostr", "fromstr", "group", "dig"}


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
    return _get(root, path)


def _get(node: Node | None, path: str) -> Node | None:
    """gjson.Get(json, path) where json is node's raw text, or "" when node is None."""
    if len(path) > 1 and path[0] == "@":
        out = _modifier(node, path)
        if out is not None:
            result, rest = out
            if rest and rest[0] in "|.":
                return _get(result, rest[1:])
            return result
    if len(path) > 1 and path[0] == "!":
        raise Unsupported(f"GJSON literal {path!r}")
    if path[:1] == "{":
        raise Unsupported(f"GJSON object sub-selector {path!r}")
    if path[:1] == "[":
        out = _subselector(node, path)
        if out is not None:
            result, rest = out
            if rest:
                return _get(result, rest[1:])
            return result
    if path.startswith(".."):
        raise Unsupported(f"GJSON JSON-lines path {path!r}")
    if node is None:
        return None
    if node.kind == "object":
        value, pipe = _object(node, path)
    elif node.kind == "array":
        value, pipe = _array(node, path)
    else:
        return None
    if pipe is not None:
        return _get(value, pipe)
    return value


# --- paths ------------------------------------------------------------------------------------


def _is_dot_piper(rest: str) -> bool:
    """isDotPiperChar: after a dot, a known modifier, `[` or `{` starts a pipe."""
    if rest[0] == "@":
        i = 1
        while i < len(rest) and rest[i] not in ".|:":
            i += 1
        return rest[1:i] in _GJSON_MODIFIERS
    return rest[0] in "[{"


@functools.lru_cache(maxsize=4096)
def _object_path(path: str) -> tuple[str, str | None, str | None]:
    """parseObjectPath: (part, more path or None, pipe or None)."""
    part: list[str] = []
    i = 0
    while i < len(path):
        c = path[i]
        if c == "|":
            return "".join(part), None, path[i + 1 :]
        if c == ".":
            rest = path[i + 1 :]
            if rest and _is_dot_piper(rest):
                return "".join(part), None, rest
            return "".join(part), rest, None
        if c in "*?":
            raise Unsupported(f"GJSON wildcard in path {path!r}")
        if c == "\\":
            i += 1
            if i < len(path):
                part.append(path[i])
            i += 1
            continue
        part.append(c)
        i += 1
    return "".join(part), None, None


@functools.lru_cache(maxsize=4096)
def _array_path(path: str) -> tuple[str, str | None, str | None]:
    """parseArrayPath without `#`: (part, more path or None, pipe or None); no escapes in arrays."""
    for i, c in enumerate(path):
        if c == "#":
            raise Unsupported(f"GJSON '#' (count or query) in path {path!r}")
        if c == "|":
            return path[:i], None, path[i + 1 :]
        if c == ".":
            rest = path[i + 1 :]
            if rest and _is_dot_piper(rest):
                return path[:i], None, rest
            return path[:i], rest, None
    return path, None, None


def _object(node: Node, path: str) -> tuple[Node | None, str | None]:
    """parseObject: (value, pipe). The pipe is set once this object is reached (c.piped)."""
    part, more, pipe = _object_path(path)
    for key, child in node.items:
        if key != part:
            continue
        if more is None:
            return child, pipe
        if child.kind not in ("object", "array"):
            continue  # a scalar under a matching key: keep scanning for another occurrence
        value, inner = _descend(child, more)
        if inner is not None:
            pipe = inner
        if value is not None:
            return value, pipe
    return None, pipe


def _array(node: Node, path: str) -> tuple[Node | None, str | None]:
    """parseArray for an index part."""
    part, more, pipe = _array_path(path)
    if not part or not (part.isascii() and part.isdigit()):
        return None, pipe
    index = int(part)
    if index >= len(node.items):
        return None, pipe
    child = node.items[index]
    if more is None:
        return child, pipe
    if child.kind not in ("object", "array"):
        return None, pipe
    value, inner = _descend(child, more)
    return value, inner if inner is not None else pipe


def _descend(child: Node, more: str) -> tuple[Node | None, str | None]:
    """The rest of the path inside an object or array child."""
    return _object(child, more) if child.kind == "object" else _array(child, more)


# --- modifiers and sub-selectors --------------------------------------------------------------


def _modifier(node: Node | None, path: str) -> tuple[Node | None, str] | None:
    """execModifier: (result, rest of the path), or None when `@name` is not a modifier."""
    i = 1
    while i < len(path) and path[i] not in ":|.":
        i += 1
    name, rest = path[1:i], path[i:]
    if name not in _GJSON_MODIFIERS:
        return None
    if rest.startswith(":"):
        raise Unsupported(f"GJSON modifier arguments in {path!r}")
    if name == "keys":
        return parse_json(_mod_keys(node)), rest
    if name == "this":
        return node, rest  # modThis returns its input; Parse("") does not exist
    raise Unsupported(f"GJSON modifier @{name}")


def _mod_keys(node: Node | None) -> str:
    """modKeys: `[` + each key's Raw (every occurrence, in order) + `]`; `null` per non-object item."""
    if node is None:
        return "[]"
    if node.kind == "object":
        return "[" + ",".join(node.key_raws or []) + "]"
    if node.kind == "array":
        return "[" + ",".join("null" for _ in node.items) + "]"
    return "[null]"  # ForEach on a scalar calls the iterator once, with an empty key


def _subselector(node: Node | None, path: str) -> tuple[Node, str] | None:
    """parseSubSelectors + Get's `[...]` branch: (the array of the raw values that exist, rest)."""
    sels: list[str] = []
    depth, start, colon, modifier = 1, 1, 0, 0
    i = 1
    while i < len(path):
        c = path[i]
        if c == "\\":
            i += 1
        elif c == "@":
            if modifier == 0 and path[i - 1] in ".|":
                modifier = i
        elif c == ":":
            if modifier == 0 and colon == 0 and depth == 1:
                colon = i
        elif c == "," and depth == 1:
            sels.append(path[(colon + 1 if colon else start) : i])
            start, colon, modifier = i + 1, 0, 0
        elif c == '"':
            i += 1
            while i < len(path) and path[i] != '"':
                i += 2 if path[i] == "\\" else 1
        elif c in "[({":
            depth += 1
        elif c in "])}":
            depth -= 1
            if depth == 0:
                sels.append(path[(colon + 1 if colon else start) : i])
                rest = path[i + 1 :]
                if rest and rest[0] not in "|.":
                    return None  # not a selector path: Get goes on with the path as keys
                raws = []
                for sel in sels:
                    value = _get(node, sel)
                    if value is not None:
                        raws.append(value.raw)
                return parse_json("[" + ",".join(raws) + "]"), rest
        i += 1
    return None

"""GJSON paths (gjson.Get) on a parsed event: plain key paths here, anything richer via the gjson package."""

from __future__ import annotations

import functools

from standin.argo.events.sensors.gojson import Node, node_from_value


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
    import gjson  # the PyPI port (an absolute import, not this module); it works on decoded objects only

    try:
        result = gjson.get(root.value(), path)
    except gjson.GJSONError:
        return None
    return node_from_value(result)

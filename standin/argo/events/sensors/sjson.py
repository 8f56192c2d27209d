"""sjson.Set on a decoded object: how a trigger parameter's `dest` writes into the resource."""

from __future__ import annotations

import copy
from typing import Any

from standin.argo.events.sensors.errors import GoError, Unsupported
from standin.argo.events.sensors.gjson import split_path


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

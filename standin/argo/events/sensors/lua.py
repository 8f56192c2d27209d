"""The Lua `script` filter (filterScript), run by lupa on the event as Argo's mapToTable builds it."""

from __future__ import annotations

from typing import Any

from standin.argo.events.sensors.errors import GoError
from standin.argo.events.sensors.gojson import Node, cached, go_unmarshal

_DROPPED = object()  # what mapToTable leaves out of a table


def _lua_table(rt, mapping: dict):
    """Argo's mapToTable: nil and nested-array values dropped, array elements appended in order."""
    table = rt.table()
    for key, element in mapping.items():
        converted = _lua_value(rt, element, in_array=False)
        if converted is not _DROPPED:
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
            if converted is not _DROPPED:
                n += 1
                seq[n] = converted
        return seq
    return _DROPPED  # nil, and arrays inside arrays


def filter_script(script: str, root: Node) -> tuple[bool, str | None]:
    """filterScript: run the Lua script with the global `event`; (passed, error)."""
    if not script:
        return True, None
    from lupa import lua51

    try:
        payload = cached(root, "unmarshal", lambda: go_unmarshal(root))
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

"""A dependency's filters (pkg/sensors/dependencies/filter.go): data filters, the script filter, their operators."""

from __future__ import annotations

from dataclasses import dataclass
from operator import eq, ge, gt, le, lt, ne
from typing import Any

from standin.argo.events.sensors.errors import GoError, Unsupported
from standin.argo.events.sensors.goconv import go_format_float, go_parse_bool, go_parse_float
from standin.argo.events.sensors.gjson import gjson_get
from standin.argo.events.sensors.gojson import Node, go_json_string
from standin.argo.events.sensors.goregex import compile_go_regexp
from standin.argo.events.sensors.gotemplate import go_template
from standin.argo.events.sensors.lua import filter_script


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


_SUPPORTED_FILTER_KEYS = {"data", "dataLogicalOperator", "script"}
_UNSUPPORTED_FILTERS = {"exprs": "exprs (govaluate)", "context": "context", "time": "time", "exprLogicalOperator": "exprs"}


def check_dependency(dep: dict) -> None:
    """Refuse what the simulator does not implement, and what the controller would refuse."""
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


class _FilterError(Exception):
    """A data filter Argo cannot evaluate: an error, not a mismatch (it rejects under `and`)."""


def _parsed(parse, text: str, error: type[Exception]):
    try:
        return parse(text)
    except error as exc:
        raise _FilterError(str(exc)) from None


def _match_bool(result: Node, values: list[str], comparator: str) -> tuple[bool, str]:
    actual = result.bool()
    matched = any(_parsed(go_parse_bool, v, ValueError) == actual for v in values)
    return matched, f"{actual!s} is not {' / '.join(values)}".lower()


_NUMBER_COMPARATORS = {">=": ge, ">": gt, "<": lt, "<=": le, "!=": ne, "=": eq, "": eq}


def _match_number(result: Node, values: list[str], comparator: str) -> tuple[bool, str]:
    actual = result.float()
    compare = _NUMBER_COMPARATORS.get(comparator, lambda _a, _b: False)
    matched = any(compare(actual, _parsed(go_parse_float, v, ValueError)) for v in values)
    return matched, f"{go_format_float(actual, 'g')} is not {comparator or '='} {' / '.join(values)}"


def _match_string(result: Node, values: list[str], comparator: str) -> tuple[bool, str]:
    text = result.string()

    def passes(value: str) -> bool:
        hit = _parsed(compile_go_regexp, value, GoError).search(text) is not None
        return (comparator in ("", "=") and hit) or (comparator == "!=" and not hit)

    matched = any(passes(v) for v in values)
    shown = text if len(text) <= 120 else text[:117] + "..."
    if comparator == "!=":
        return matched, f"{shown!r} matches {' and '.join(values)} (comparator !=)"
    if comparator in ("", "="):
        return matched, f"{shown!r} does not match {' / '.join(values)}"
    return matched, f"comparator {comparator!r} never matches a string"


_MATCHERS = {"bool": _match_bool, "number": _match_number, "string": _match_string}


def _templated(template: str, result: Node) -> Node:
    """A filter's `template` applied to the value at its path, as the value to compare."""
    try:
        out = go_template(template).execute({"Input": result.string()})
    except GoError as exc:
        raise _FilterError(str(exc)) from None
    if out in ("", "<no value>"):
        raise _FilterError(f"template '{template}' evaluated to empty string or no value")
    return Node("string", go_json_string(out), scalar=out)


def _filter_matches(f: dict, path: str, root: Node) -> tuple[bool, str]:
    """One data filter: (matched, why not); _FilterError where Argo's filterData returns an error."""
    result = gjson_get(root, path)
    if result is None:
        raise _FilterError(f"path '{path}' does not exist")
    values = [str(v) for v in (f.get("value") or [])]
    if not values:
        raise _FilterError("no values specified")
    template = f.get("template") or ""
    if template:
        result = _templated(template, result)
    typ = f.get("type")
    match = _MATCHERS.get(typ) if isinstance(typ, str) else None
    if match is None:
        raise _FilterError(f"unsupported JSON type '{typ}'")
    return match(result, values, f.get("comparator") or "")


def filter_data(filters: list[dict], operator: str, root: Node) -> tuple[bool, str | None, tuple[int, str, str] | None]:
    """filterData: (passed, error text, first failure (index, path, reason)) like Argo's loop."""
    errors: list[str] = []
    first: tuple[int, str, str] | None = None
    for i, f in enumerate(filters):
        path = str(f.get("path", ""))
        try:
            matched, reason = _filter_matches(f, path, root)
        except _FilterError as exc:
            if operator != "or":
                return False, f"data filter error ({exc})", (i, path, str(exc))
            errors.append(str(exc))
            matched, reason = False, str(exc)
        if matched:
            if operator == "or":
                return True, None, None
            continue
        if operator != "or":
            return False, None, (i, path, reason)
        if first is None:
            first = (i, path, reason)
    if operator == "or":
        if errors:
            return False, "data filter errors [" + " / ".join(errors) + "]", first
        return False, None, first
    return True, None, None


def _first_failure_or(dep: str, data_first, script_ok: bool, script_err: str | None) -> FilterFailure:
    if data_first is not None:
        i, path, reason = data_first
        return FilterFailure(dep, "data", i, path, reason)
    if script_err:
        return FilterFailure(dep, "script", None, None, f"script error: {script_err}")
    return FilterFailure(dep, "script", None, None, "script did not return true")


def evaluate_dependency(dep: dict, root: Node) -> FilterFailure | None:
    """None when the event passes the dependency's filters, else the first failing filter."""
    check_dependency(dep)
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

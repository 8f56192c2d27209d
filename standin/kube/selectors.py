"""Label and field selectors with the real server's syntax, and its 400s for what it cannot parse."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from standin.kube.errors import ApiError, bad_request
from standin.kube.resources import ResourceType
from standin.kube.validation import label_key_problem, label_value_problem


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: `key op values`."""

    key: str
    op: str  # = != in notin exists !exists > <
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if not present or not re.fullmatch(r"-?\d+", value or ""):
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.op == ">" else int(value) < bound


_KEY = r"([^\s!=<>(),]+)"
_SET_TERM = re.compile(rf"^{_KEY}\s+(in|notin)\s*\(([^()]*)\)$")
_EQ_TERM = re.compile(rf"^{_KEY}\s*(==|=|!=)\s*([^\s!=<>(),]*)$")
_CMP_TERM = re.compile(rf"^{_KEY}\s*([<>])\s*(-?\d+)$")
_EXISTS_TERM = re.compile(rf"^(!?)\s*{_KEY}$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `( )`, as `a in (x,y),b` has two terms."""
    terms, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t.strip() for t in terms]


def _parse_label_term(term: str) -> Requirement:
    if match := _SET_TERM.match(term):
        values = tuple(v.strip() for v in match.group(3).split(","))
        return Requirement(match.group(1), match.group(2), values)
    if match := _EQ_TERM.match(term):
        op = "=" if match.group(2) == "==" else match.group(2)
        return Requirement(match.group(1), op, (match.group(3),))
    if match := _CMP_TERM.match(term):
        return Requirement(match.group(1), match.group(2), (match.group(3),))
    if match := _EXISTS_TERM.match(term):
        return Requirement(match.group(2), "!exists" if match.group(1) else "exists")
    raise bad_request(f"unable to parse requirement: {term!r}")


def parse_label_selector(text: str | None) -> list[Requirement]:
    """labelSelector as the API accepts it; a syntax error is a 400 like the real one."""
    if not text or not text.strip():
        return []
    requirements = []
    for term in _split_top_level(text):
        requirement = _parse_label_term(term)
        checked_values = requirement.values if requirement.op not in ("<", ">") else ()
        problem = label_key_problem(requirement.key) or next(
            (p for p in map(label_value_problem, checked_values) if p), None
        )
        if problem:
            raise bad_request(f"unable to parse requirement: {term!r}: {problem}")
        requirements.append(requirement)
    return requirements


def labels_match(requirements: Iterable[Requirement], obj: dict) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


def selector_string(selector: dict | None) -> str:
    """metav1.LabelSelectorAsSelector(s).String(): requirements sorted by key, comma-joined."""
    selector = selector or {}
    requirements: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        requirements.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator"), sorted(expr.get("values") or [])
        text = {
            "In": f"{key} in ({','.join(values)})",
            "NotIn": f"{key} notin ({','.join(values)})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(op)
        if text is None:
            raise ApiError(400, f'"{op}" is not a valid label selector operator')
        requirements.append((key, text))
    return ",".join(text for _, text in sorted(requirements, key=lambda r: r[0]))


def label_selector_matches(selector: dict | None, labels: dict) -> bool:
    """A metav1.LabelSelector object (matchLabels, matchExpressions; {} selects everything) against
    labels, through the same string form the API server converts it to."""
    return labels_match(parse_label_selector(selector_string(selector)), {"metadata": {"labels": labels}})


_FIELD_TERM = re.compile(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$")


def parse_field_selector(text: str | None, rt: ResourceType) -> list[tuple[str, str, str]]:
    """fieldSelector terms `(field, op, value)`; only the fields the resource indexes are allowed."""
    if not text or not text.strip():
        return []
    allowed = ("metadata.name", "metadata.namespace") + rt.field_labels
    terms = []
    for term in text.split(","):
        match = _FIELD_TERM.match(term.strip())
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        path, op, value = match.groups()
        if path not in allowed:
            raise bad_request(f"field label not supported: {path}")
        terms.append((path, "!=" if op == "!=" else "=", value))
    return terms


def _field_value(obj: dict, path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def fields_match(terms: Iterable[tuple[str, str, str]], obj: dict) -> bool:
    return all((_field_value(obj, path) == value) == (op == "=") for path, op, value in terms)

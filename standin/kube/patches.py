"""PATCH semantics: JSON patch, merge patch and strategic merge, failing where upstream fails."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from standin.kube.errors import ApiError, bad_request
from standin.kube.resources import ResourceType


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]] if path else []


def _patch_failed(message: str) -> ApiError:
    return ApiError(422, message)


def _child(container: Any, token: str, path: str) -> Any:
    if isinstance(container, dict) and token in container:
        return container[token]
    if isinstance(container, list) and token.isdigit() and int(token) < len(container):
        return container[int(token)]
    raise _patch_failed(f"doc is missing path: {path!r}")


def _locate(doc: Any, path: str) -> tuple[Any, str]:
    """The container holding the last token of `path`, and that token."""
    tokens = _pointer(path)
    if not tokens:
        raise _patch_failed(f"cannot operate on the whole document at {path!r}")
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, path)
    return node, tokens[-1]


def _json_get(doc: Any, path: str) -> Any:
    node = doc
    for token in _pointer(path):
        node = _child(node, token, path)
    return node


def _json_add(doc: Any, path: str, value: Any) -> Any:
    if not _pointer(path):
        return value
    parent, token = _locate(doc, path)
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list) and token == "-":
        parent.append(value)
    elif isinstance(parent, list) and token.isdigit() and int(token) <= len(parent):
        parent.insert(int(token), value)
    else:
        raise _patch_failed(f"add operation does not apply: doc is missing path: {path!r}")
    return doc


def _json_remove(doc: Any, path: str) -> Any:
    parent, token = _locate(doc, path)
    _child(parent, token, path)  # raises when absent
    if isinstance(parent, dict):
        del parent[token]
    else:
        del parent[int(token)]
    return doc


def _json_replace(doc: Any, path: str, value: Any) -> Any:
    if not _pointer(path):
        return value
    parent, token = _locate(doc, path)
    _child(parent, token, path)  # raises when absent: replace never creates
    parent[token if isinstance(parent, dict) else int(token)] = value
    return doc


def _json_operation(doc: Any, operation: Any) -> Any:
    if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
        raise bad_request(f"invalid JSON patch operation {operation!r}")
    op, path = operation["op"], operation["path"]
    if op in ("add", "replace", "test") and "value" not in operation:
        raise bad_request(f"JSON patch {op} operation at {path!r} has no value")
    if op == "add":
        return _json_add(doc, path, copy.deepcopy(operation["value"]))
    if op == "remove":
        return _json_remove(doc, path)
    if op == "replace":
        return _json_replace(doc, path, copy.deepcopy(operation["value"]))
    if op == "test":
        if _json_get(doc, path) != operation["value"]:
            raise _patch_failed(f"testing value {path} failed: test failed")
        return doc
    if op in ("move", "copy"):
        value = copy.deepcopy(_json_get(doc, operation.get("from", "")))
        if op == "move":
            doc = _json_remove(doc, operation["from"])
        return _json_add(doc, path, value)
    raise bad_request(f"unexpected JSON patch operation {op!r}")


def json_patch(doc: dict, operations: Any) -> Any:
    """RFC 6902. A malformed patch is 400; a patch that does not apply is 422, as upstream."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    result = copy.deepcopy(doc)
    for operation in operations:
        result = _json_operation(result, operation)
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, null deletes, anything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# patchMergeKey of the list fields a response step may touch; other lists are replaced.
STRATEGIC_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "ownerReferences": "uid",
    "conditions": "type",
}
STRATEGIC_SET_LISTS = ("finalizers",)


def _merge_keyed_list(current: list, patch: list, key: str) -> list:
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            return copy.deepcopy(patch)
        index = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _strategic_field(result: dict, key: str, value: Any) -> None:
    current = result.get(key)
    if value is None:
        result.pop(key, None)
    elif isinstance(value, dict):
        merged = strategic_merge_patch(current, value)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    elif isinstance(value, list) and isinstance(current, list) and key in STRATEGIC_MERGE_KEYS:
        result[key] = _merge_keyed_list(current, value, STRATEGIC_MERGE_KEYS[key])
    elif isinstance(value, list) and isinstance(current, list) and key in STRATEGIC_SET_LISTS:
        result[key] = current + [v for v in value if v not in current]
    else:
        result[key] = copy.deepcopy(value)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge for the shapes a step patches: maps merge (null deletes), lists of
    containers/env/ownerReferences... merge by their key, `$patch: replace|delete` work,
    `$deleteFromPrimitiveList/<field>` works; every other list is replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return merge_patch({}, {k: v for k, v in patch.items() if k != "$patch"})
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [v for v in result.get(name) or [] if v not in (value or [])]
        elif not key.startswith("$"):
            _strategic_field(result, key, value)
    return result


PATCHERS: dict[str, Callable[[Any, Any], Any]] = {
    "application/json-patch+json": json_patch,
    "application/merge-patch+json": merge_patch,
    "application/strategic-merge-patch+json": strategic_merge_patch,
}


def patcher_for(rt: ResourceType, media_type: str) -> Callable[[Any, Any], Any]:
    """The patch function for a Content-Type; custom resources take no strategic merge (415)."""
    accepted = [t for t in PATCHERS if rt.builtin or "strategic" not in t]
    if media_type not in accepted:
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types include: " + ", ".join(accepted),
        )
    return PATCHERS[media_type]

"""The PATCH body formats: JSON merge patch, strategic merge patch and JSON patch.

A strategic merge patch is applied as a JSON merge patch (lists are replaced, not merged
by key) after its `$`-directives (`$setElementOrder/...`, `$retainKeys`, `$patch`) are
dropped: enough for the patches our code and `kubectl apply` send to these kinds.
"""

import copy
import json
from typing import Any

from gatewayflow_dev.kube_emulator.errors import ApiError, bad_request, unsupported_media_type

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def apply_patch(content_type: str, target: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The patched copy of `target`; the target itself is left unchanged."""
    media_type = content_type.split(";")[0].strip()
    if media_type not in (MERGE, STRATEGIC, JSON_PATCH):
        raise unsupported_media_type(content_type)
    try:
        patch = json.loads(body or b"null")
    except ValueError as exc:
        raise bad_request(f"invalid patch body: {exc}") from exc
    if media_type == JSON_PATCH:
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise bad_request("a merge patch must be a JSON object")
    if media_type == STRATEGIC:
        patch = _without_directives(patch)
    result = merge_patch(target, patch)
    if not isinstance(result, dict):
        raise bad_request("the patch does not produce an object")
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, `null` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _without_directives(patch: Any) -> Any:
    if isinstance(patch, dict):
        return {k: _without_directives(v) for k, v in patch.items() if not k.startswith("$")}
    if isinstance(patch, list):
        return [_without_directives(item) for item in patch]
    return patch


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, path: str) -> tuple[Any, str]:
    """The container holding the last token of `path`, and that token."""
    tokens = _pointer(path)
    if not tokens:
        raise bad_request("a JSON patch cannot replace the whole object")
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, path)
    return node, tokens[-1]


def _child(node: Any, token: str, path: str) -> Any:
    try:
        if isinstance(node, list):
            return node[int(token)]
        return node[token]
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise _unprocessable(f"path {path!r} does not exist") from exc


def _get(doc: Any, path: str) -> Any:
    node = doc
    for token in _pointer(path):
        node = _child(node, token, path)
    return node


def _add(doc: Any, path: str, value: Any) -> None:
    parent, token = _parent(doc, path)
    if isinstance(parent, list):
        index = len(parent) if token == "-" else int(token)
        if not 0 <= index <= len(parent):
            raise _unprocessable(f"index out of range in {path!r}")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[token] = value
    else:
        raise _unprocessable(f"path {path!r} does not exist")


def _remove(doc: Any, path: str) -> Any:
    parent, token = _parent(doc, path)
    value = _child(parent, token, path)
    if isinstance(parent, list):
        del parent[int(token)]
    else:
        del parent[token]
    return value


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", f"the JSON patch cannot be applied: {message}")


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902: add, remove, replace, move, copy and test, applied in order."""
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict):
            raise bad_request("a JSON patch operation must be an object")
        op, path = operation.get("op"), operation.get("path", "")
        if op == "add":
            _add(doc, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            _remove(doc, path)
        elif op == "replace":
            _remove(doc, path)
            _add(doc, path, copy.deepcopy(operation.get("value")))
        elif op == "move":
            _add(doc, path, _remove(doc, operation.get("from", "")))
        elif op == "copy":
            _add(doc, path, copy.deepcopy(_get(doc, operation.get("from", ""))))
        elif op == "test":
            if _get(doc, path) != operation.get("value"):
                raise _unprocessable(f"test failed at {path!r}")
        else:
            raise bad_request(f"unknown JSON patch operation {op!r}")
    return doc

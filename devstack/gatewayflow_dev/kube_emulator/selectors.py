"""Label and field selectors in the API server's query syntax.

Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`,
`k>1`, `k<1`, joined by commas. Field selectors: `path=v`, `path==v`, `path!=v` over any
dotted path of the object (the real server allows only some paths per kind, of which
`metadata.name` and `metadata.namespace` are the ones clients use).
"""

import re
from collections.abc import Callable
from typing import Any

from gatewayflow_dev.kube_emulator.errors import bad_request

LabelTest = Callable[[dict[str, str]], bool]
ObjectTest = Callable[[dict[str, Any]], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*$")
_COMPARE = re.compile(rf"^\s*({_KEY})\s*(==|=|!=|>|<)\s*({_VALUE})\s*$")
_FIELD = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$")


def _split(selector: str) -> list[str]:
    """Split on the commas that are not inside a `( )` value set."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> LabelTest:
    if match := _SET.match(text):
        key, op, values_text = match.groups()
        values = {v.strip() for v in values_text.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _COMPARE.match(text):
        key, op, value = match.groups()
        if op in ("=", "=="):
            return lambda labels: key in labels and labels[key] == value
        if op == "!=":
            return lambda labels: labels.get(key) != value
        if not re.fullmatch(r"-?\d+", value):
            raise bad_request(f"unable to parse requirement: {text!r}: {value!r} is not an integer")
        bound = int(value)
        if op == ">":
            return lambda labels: _as_int(labels.get(key)) > bound
        return lambda labels: _as_int(labels.get(key)) < bound
    if match := _EXISTS.match(text):
        negated, key = match.groups()
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: {text.strip()!r}")


def _as_int(value: str | None) -> float:
    """A label's integer value for `>`/`<`; a missing or non-integer label never matches."""
    if value is None or not re.fullmatch(r"-?\d+", value):
        return float("nan")
    return int(value)


def label_selector(selector: str | None) -> ObjectTest:
    """A test of an object's `metadata.labels` against a label selector."""
    tests = [_requirement(part) for part in _split(selector or "")]

    def matches(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(test(labels) for test in tests)

    return matches


def _field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _field_test(path: str, op: str, value: str) -> ObjectTest:
    if op == "!=":
        return lambda obj: _field_value(obj, path) != value
    return lambda obj: _field_value(obj, path) == value


def field_selector(selector: str | None) -> ObjectTest:
    """A test of an object's fields against a field selector."""
    tests: list[ObjectTest] = []
    for part in _split(selector or ""):
        match = _FIELD.match(part)
        if not match:
            raise bad_request(f"invalid field selector: {part.strip()!r}")
        tests.append(_field_test(*match.groups()))
    return lambda obj: all(test(obj) for test in tests)

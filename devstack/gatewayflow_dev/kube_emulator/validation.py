"""The validation the API server applies to every object: names and labels.

The messages are the API server's, so a 422 from the emulator reads like one from a
real cluster.
"""

import re
from typing import Any

from gatewayflow_dev.kube_emulator.errors import invalid
from gatewayflow_dev.kube_emulator.kinds import DNS1035, LABEL, Kind

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
_DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

_SUBDOMAIN_HELP = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_LABEL_HELP = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
    "'-', and must start and end with an alphanumeric character"
)
_DNS1035_HELP = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
    "with an alphabetic character, and end with an alphanumeric character"
)
_QUALIFIED_HELP = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character"
)


def _name_problem(kind: Kind, name: str) -> str | None:
    if len(name) > kind.max_name_length:
        return f"must be no more than {kind.max_name_length} characters"
    if kind.name_rule == LABEL:
        return None if _DNS1123_LABEL.match(name) else _LABEL_HELP
    if kind.name_rule == DNS1035:
        return None if _DNS1035_LABEL.match(name) else _DNS1035_HELP
    return None if _DNS1123_SUBDOMAIN.match(name) else _SUBDOMAIN_HELP


def _label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return f"prefix part {_SUBDOMAIN_HELP}"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    return None if _QUALIFIED_NAME.match(name) else _QUALIFIED_HELP


def _label_value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "a label value must be a string"
    if len(value) > 63:
        return "must be no more than 63 characters"
    if value and not _QUALIFIED_NAME.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return None


def validate(kind: Kind, obj: dict[str, Any]) -> None:
    """Raise 422 Invalid for a name or label the API server would refuse."""
    metadata = obj["metadata"]
    name = metadata.get("name") or ""
    if not name:
        raise invalid(
            kind, name, "metadata.name", "Required value: name or generateName is required"
        )
    if problem := _name_problem(kind, name):
        raise invalid(kind, name, "metadata.name", f'Invalid value: "{name}": {problem}')
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        raise invalid(kind, name, "metadata.labels", "Invalid value: labels must be a map")
    for key, value in labels.items():
        if problem := _label_key_problem(key):
            raise invalid(kind, name, "metadata.labels", f'Invalid value: "{key}": {problem}')
        if problem := _label_value_problem(value):
            raise invalid(kind, name, "metadata.labels", f'Invalid value: "{value}": {problem}')
    finalizers = metadata.get("finalizers") or []
    if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
        raise invalid(kind, name, "metadata.finalizers", "Invalid value: must be a list of strings")

"""ValidatingAdmissionPolicy, enforced on every write as kube-apiserver enforces it.

The embedded stack starts the emulator with deploy/worker.yaml (`--admission-policy`), so
every test runs under the policy the product ships. What a policy sees and how it decides
follow kube-apiserver's source (k8s.io/apiserver, Kubernetes 1.30 to 1.35):

- `request.namespace` of a Namespace is the Namespace's own name. For a create,
  pkg/endpoints/handlers/create.go: `if len(namespace) == 0 && scope.Resource ==
  namespaceGVR { namespace = name }`; for an update, patch or delete,
  pkg/endpoints/request/requestinfo.go reads `/api/v1/namespaces/<name>` as the URL form
  `/namespaces/{namespace}/...` and sets the namespace to <name>. Empty `name` and
  `namespace` are left out of `request` (admission/v1 AdmissionRequest: `omitempty`).
- `namespaceObject` is the namespace the object lives in, with only its metadata, spec and
  status (pkg/admission/plugin/cel/filter.go, CreateNamespaceObject); null for a
  cluster-scoped object and for a Namespace itself
  (pkg/admission/plugin/policy/validating/dispatcher.go: "Special case, the namespace
  object has the namespace of itself (maybe a bug). unset it if the incoming object is a
  namespace").
- `object` and `oldObject`: CREATE has no old object; UPDATE (PUT and PATCH) has both;
  DELETE has no object and the stored one as `oldObject`; a deletecollection is checked
  object by object with an empty name (pkg/registry/rest/delete.go,
  AdmissionToValidateObjectDeleteFunc).
- Rules match as pkg/admission/plugin/webhook/predicates/rules/rules.go matches them
  (`*` is every resource but no subresource; scope `Cluster` includes Namespaces).
- A policy applies once a binding names it; its matchConditions must all be true; then its
  variables and validations are evaluated, and an expression that fails to evaluate
  counts as its failurePolicy says (validating/validator.go).
- A denial is the first denied validation's message (validating/dispatcher.go) wrapped by
  admission.NewForbidden (pkg/admission/errors.go): HTTP 422, reason Invalid unless the
  validation gives another, message `<resource> "<name>" is forbidden:
  ValidatingAdmissionPolicy '<policy>' with binding '<binding>' denied request: <message>`
  and that last part as the one cause. A `Warn` action becomes a Warning header.

CEL is evaluated by cel-python, which agrees with cel-go on the expressions gatewayflow
uses (a field of a null value reads as absent in `has()` instead of an error; both deny
under `failurePolicy: Fail`). What the emulator cannot enforce (parameters, namespace and
object selectors) makes loading fail instead of being skipped.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from gatewayflow_dev.kube_emulator.errors import ApiError
from gatewayflow_dev.kube_emulator.kinds import NAMESPACE, Kind

API_GROUP = "admissionregistration.k8s.io"
STATUS_CODES = {"Invalid": 422, "Forbidden": 403, "Unauthorized": 401, "RequestEntityTooLarge": 413}
SCALE = {"group": "autoscaling", "version": "v1", "kind": "Scale"}


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Write:
    """One write as the store is about to make it."""

    operation: str  # CREATE, UPDATE or DELETE
    kind: Kind
    namespace: str  # the object's namespace, "" for a cluster-scoped object
    name: str  # the name the request gives ("" for generateName and deletecollection)
    obj: dict[str, Any] | None
    old: dict[str, Any] | None
    namespace_obj: dict[str, Any] | None  # the Namespace the object lives in
    subresource: str = ""


Admit = Callable[[Write], None]
"""Raises the API server's error when admission denies the write."""


def request_namespace(write: Write) -> str:
    """`request.namespace`: a Namespace's own name for a Namespace (see the docstring)."""
    return write.name if write.kind == NAMESPACE else write.namespace


def namespace_object(write: Write) -> dict[str, Any] | None:
    """`namespaceObject`: none for a Namespace or another cluster-scoped object."""
    if write.kind == NAMESPACE or write.namespace_obj is None:
        return None
    namespace = write.namespace_obj
    metadata = namespace.get("metadata") or {}
    kept = (
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "finalizers",
    )
    return {
        "metadata": {k: metadata[k] for k in kept if k in metadata},
        "spec": namespace.get("spec") or {},
        "status": namespace.get("status") or {},
    }


def admission_request(write: Write, user: User) -> dict[str, Any]:
    """`request`: the admission/v1 AdmissionRequest, as JSON (empty optional fields left out)."""
    kind = write.kind
    resource = {"group": kind.group, "version": kind.version, "resource": kind.plural}
    of_kind = {"group": kind.group, "version": kind.version, "kind": kind.kind}
    if write.subresource == "scale":
        of_kind = SCALE
    user_info: dict[str, Any] = {"username": user.name}
    if user.groups:
        user_info["groups"] = list(user.groups)
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": of_kind,
        "resource": resource,
        "requestKind": of_kind,
        "requestResource": resource,
        "operation": write.operation,
        "userInfo": user_info,
        "dryRun": False,
    }
    if write.subresource:
        request["subResource"] = request["requestSubResource"] = write.subresource
    if write.name:
        request["name"] = write.name
    if namespace := request_namespace(write):
        request["namespace"] = namespace
    return request


@dataclass(frozen=True)
class Rule:
    """One entry of resourceRules (or excludeResourceRules)."""

    groups: tuple[str, ...]
    versions: tuple[str, ...]
    resources: tuple[str, ...]
    operations: tuple[str, ...]
    scope: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, rule: dict[str, Any]) -> "Rule":
        return cls(
            tuple(rule.get("apiGroups") or ()),
            tuple(rule.get("apiVersions") or ()),
            tuple(rule.get("resources") or ()),
            tuple(rule.get("operations") or ()),
            rule.get("scope") or "*",
            tuple(rule.get("resourceNames") or ()),
        )

    def matches(self, write: Write) -> bool:
        kind = write.kind
        return (
            _among(write.operation, self.operations)
            and _among(kind.group, self.groups)
            and _among(kind.version, self.versions)
            and any(self._resource(r, kind.plural, write.subresource) for r in self.resources)
            and self._scope(kind)
            and (not self.names or write.name in self.names)
        )

    @staticmethod
    def _resource(rule: str, resource: str, subresource: str) -> bool:
        wanted, _, wanted_sub = rule.partition("/")
        return wanted in ("*", resource) and wanted_sub in ("*", subresource)

    def _scope(self, kind: Kind) -> bool:
        if self.scope == "Cluster":
            return not kind.namespaced  # Namespaces are cluster-scoped here
        if self.scope == "Namespaced":
            return kind.namespaced
        return True


def _among(value: str, allowed: tuple[str, ...]) -> bool:
    return "*" in allowed or value in allowed


def _matches(rules: list[Rule], excluded: list[Rule], write: Write) -> bool:
    return any(r.matches(write) for r in rules) and not any(r.matches(write) for r in excluded)


class CelError(Exception):
    """An expression that could not be evaluated (an error value in CEL)."""


Program = Any  # celpy.Runner: its evaluate() takes the activation


@dataclass(frozen=True)
class Validation:
    expression: str
    program: Program
    message: str
    message_program: Program | None
    reason: str


@dataclass(frozen=True)
class Decision:
    """A denial by one validation (or an evaluation error under failurePolicy Fail)."""

    message: str
    reason: str


@dataclass(frozen=True)
class Policy:
    name: str
    fail_closed: bool  # failurePolicy Fail (the default) rather than Ignore
    rules: list[Rule]
    excluded: list[Rule]
    match_conditions: list[tuple[str, Program]]
    variables: list[tuple[str, Program]]
    validations: list[Validation]

    def decide(self, write: Write, user: User) -> list[Decision]:
        """The denials of this policy for the write (none when it does not apply)."""
        activation: dict[str, Any] = {
            "request": json_to_cel(admission_request(write, user)),
            "object": json_to_cel(write.obj),
            "oldObject": json_to_cel(write.old),
            "namespaceObject": json_to_cel(namespace_object(write)),
            "params": json_to_cel(None),
            "variables": celtypes.MapType({}),
        }
        failed = []
        for name, program in self.match_conditions:
            try:
                if not _boolean(program, activation):
                    return []
            except CelError as error:
                failed.append(f"matchCondition {name!r}: {error}")
        if failed:
            return self._on_error("; ".join(failed))
        variables: dict[celtypes.StringType, Any] = {}
        for name, program in self.variables:
            try:
                variables[celtypes.StringType(name)] = _evaluate(program, activation)
            except CelError as error:  # an error value: fails whatever uses it
                variables[celtypes.StringType(name)] = CELEvalError(str(error))
            activation["variables"] = celtypes.MapType(variables)
        decisions: list[Decision] = []
        for validation in self.validations:
            try:
                if _boolean(validation.program, activation):
                    continue
            except CelError as error:
                decisions += self._on_error(str(error))
                continue
            decisions.append(Decision(_message(validation, activation), validation.reason))
        return decisions

    def _on_error(self, message: str) -> list[Decision]:
        return [Decision(message, "Invalid")] if self.fail_closed else []


def _evaluate(program: Program, activation: dict[str, Any]) -> Any:
    try:
        value = program.evaluate(activation)
    except Exception as error:  # celpy raises CELEvalError, and others on odd input
        raise CelError(str(error)) from error
    if isinstance(value, CELEvalError):
        raise CelError(str(value))
    return value


def _boolean(program: Program, activation: dict[str, Any]) -> bool:
    value = _evaluate(program, activation)
    if not isinstance(value, celtypes.BoolType | bool):
        raise CelError(f"expression must evaluate to bool, not {type(value).__name__}")
    return bool(value)


def _message(validation: Validation, activation: dict[str, Any]) -> str:
    """messageExpression if it gives one line of text, else message, else the expression."""
    if validation.message_program is not None:
        try:
            value = _evaluate(validation.message_program, activation)
        except CelError:
            value = None
        if isinstance(value, str) and value.strip():  # celpy's + gives a plain str
            text = str(value).strip()
            if "\n" not in text:
                return text
    if validation.message.strip():
        return validation.message.strip()
    return f"failed expression: {validation.expression.strip()}"


@dataclass(frozen=True)
class Binding:
    name: str
    policy: str
    actions: tuple[str, ...]  # Deny, Warn, Audit
    rules: list[Rule] | None  # matchResources; None: every request the policy matches
    excluded: list[Rule]

    def matches(self, write: Write) -> bool:
        if self.rules is None:
            return not any(r.matches(write) for r in self.excluded)
        return _matches(self.rules, self.excluded, write)


class Admission:
    """The ValidatingAdmissionPolicies and bindings of one file."""

    def __init__(self, policies: list[Policy], bindings: list[Binding]) -> None:
        self.policies = {policy.name: policy for policy in policies}
        self.bindings = [b for b in bindings if b.policy in self.policies]

    @classmethod
    def load(cls, path: Path) -> "Admission":
        """Every policy and binding of a YAML file (other documents are skipped); a
        ValueError names what the emulator cannot enforce."""
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        environment = celpy.Environment()
        policies, bindings = [], []
        for doc in documents:
            if str(doc.get("apiVersion", "")).split("/")[0] != API_GROUP:
                continue
            if doc.get("kind") == "ValidatingAdmissionPolicy":
                policies.append(_policy(doc, environment))
            elif doc.get("kind") == "ValidatingAdmissionPolicyBinding":
                bindings.append(_binding(doc))
        return cls(policies, bindings)

    def check(self, write: Write, user: User) -> list[str]:
        """Raise the API server's error if the write is denied; return its warnings."""
        denied: list[tuple[Policy, Binding, Decision]] = []
        warnings: list[str] = []
        for binding in self.bindings:
            policy = self.policies[binding.policy]
            if not (_matches(policy.rules, policy.excluded, write) and binding.matches(write)):
                continue
            for decision in policy.decide(write, user):
                if "Deny" in binding.actions:
                    denied.append((policy, binding, decision))
                if "Warn" in binding.actions:
                    warnings.append(
                        f"Validation failed for ValidatingAdmissionPolicy '{policy.name}' "
                        f"with binding '{binding.name}': {decision.message}"
                    )
        if denied:
            raise _denial(write, *denied[0])
        return warnings


def _denial(write: Write, policy: Policy, binding: Binding, decision: Decision) -> ApiError:
    message = (
        f"ValidatingAdmissionPolicy '{policy.name}' with binding '{binding.name}' "
        f"denied request: {decision.message}"
    )
    kind = write.kind
    name = write.name or _name_of(write.obj)
    details: dict[str, Any] = {"name": name, "kind": kind.plural, "causes": [{"message": message}]}
    if kind.group:
        details["group"] = kind.group
    reason = decision.reason or "Invalid"
    return ApiError(
        STATUS_CODES.get(reason, 422),
        reason,
        f'{kind.resource} "{name}" is forbidden: {message}',
        details,
    )


def _name_of(obj: dict[str, Any] | None) -> str:
    metadata = (obj or {}).get("metadata") or {}
    return str(metadata.get("name") or metadata.get("generateName") or "Unknown")


def _compile(environment: celpy.Environment, expression: str, where: str) -> Program:
    try:
        return environment.program(environment.compile(expression))
    except Exception as error:
        raise ValueError(f"{where}: cannot compile {expression!r}: {error}") from error


def _policy(doc: dict[str, Any], environment: celpy.Environment) -> Policy:
    name = doc["metadata"]["name"]
    spec = doc.get("spec") or {}
    where = f"ValidatingAdmissionPolicy {name}"
    for unsupported in ("paramKind",):
        if spec.get(unsupported):
            raise ValueError(f"{where}: the emulator does not support {unsupported}")
    constraints = spec.get("matchConstraints") or {}
    _refuse_selectors(constraints, where)
    failure = spec.get("failurePolicy", "Fail")
    if failure not in ("Fail", "Ignore"):
        raise ValueError(f"{where}: unknown failurePolicy {failure!r}")
    validations = []
    for item in spec.get("validations") or []:
        message_expression = item.get("messageExpression")
        validations.append(
            Validation(
                expression=item["expression"],
                program=_compile(environment, item["expression"], where),
                message=item.get("message", ""),
                message_program=(
                    _compile(environment, message_expression, where) if message_expression else None
                ),
                reason=item.get("reason", "Invalid"),
            )
        )
    return Policy(
        name=name,
        fail_closed=failure == "Fail",
        rules=[Rule.of(r) for r in constraints.get("resourceRules") or []],
        excluded=[Rule.of(r) for r in constraints.get("excludeResourceRules") or []],
        match_conditions=[
            (c["name"], _compile(environment, c["expression"], where))
            for c in spec.get("matchConditions") or []
        ],
        variables=[
            (v["name"], _compile(environment, v["expression"], where))
            for v in spec.get("variables") or []
        ],
        validations=validations,
    )


def _binding(doc: dict[str, Any]) -> Binding:
    name = doc["metadata"]["name"]
    spec = doc.get("spec") or {}
    where = f"ValidatingAdmissionPolicyBinding {name}"
    if spec.get("paramRef"):
        raise ValueError(f"{where}: the emulator does not support paramRef")
    actions = tuple(spec.get("validationActions") or ())
    if not actions or set(actions) - {"Deny", "Warn", "Audit"}:
        raise ValueError(f"{where}: validationActions must be among Deny, Warn and Audit")
    resources = spec.get("matchResources")
    if resources is not None:
        _refuse_selectors(resources, where)
    return Binding(
        name=name,
        policy=spec["policyName"],
        actions=actions,
        rules=(
            [Rule.of(r) for r in resources["resourceRules"]]
            if resources and resources.get("resourceRules")
            else None
        ),
        excluded=[Rule.of(r) for r in (resources or {}).get("excludeResourceRules") or []],
    )


def _refuse_selectors(match: dict[str, Any], where: str) -> None:
    for selector in ("namespaceSelector", "objectSelector"):
        if match.get(selector):  # an empty selector selects everything
            raise ValueError(f"{where}: the emulator does not support {selector}")

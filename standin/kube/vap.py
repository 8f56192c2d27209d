"""ValidatingAdmissionPolicy: the API server's CEL admission, from the policies and bindings stored.

What the stand-in API server does on every CREATE, UPDATE (PUT and PATCH) and DELETE it serves,
after RBAC and mutating admission and after the object passed the store's defaults and validation,
before the write (genericregistry.Store hands createValidation/updateValidation the object after
rest.BeforeCreate/BeforeUpdate). Upstream, k8s.io/apiserver/pkg/admission/plugin/policy/:

- validating/plugin.go (compilePolicy): matchConditions, variables, validations and their
  messageExpressions compiled against object, oldObject, request, namespaceObject, params and
  variables; failurePolicy defaults to Fail.
- validating/dispatcher.go (Dispatch): per policy, matchConstraints (matching/matching.go with
  webhook/predicates/rules/rules.go: scope, operations, groups, versions, `res/sub` resources,
  resourceNames, excludeResourceRules, namespaceSelector and objectSelector), then each binding
  naming it (no matchResources matches all), its validationActions (Deny denies; Warn and Audit do
  not); the first denied decision is reported as
  `ValidatingAdmissionPolicy '<policy>' with binding '<binding>' denied request: <message>`
  inside admission.NewForbidden (errors.go: `<resource> "<name>" is forbidden: ...`, name
  "Unknown" when there is none), its reason (default Invalid) and reasonToCode
  (policy_decision.go: Forbidden 403, Unauthorized 401, RequestEntityTooLarge 413, else 422),
  and the message appended as a cause. A configuration error (no matchConstraints) denies as
  `ValidatingAdmissionPolicy '<policy>' denied request: failed to configure policy: ...`.
- validating/validator.go (Validate): matchConditions first (webhook/matchconditions/matcher.go:
  any false skips the policy, else an error applies failurePolicy), then each validation: an error
  denies under Fail (ignored under Ignore) with its text; a result other than true denies with the
  messageExpression's string (trimmed; ignored when not a string, over 5120 bytes, or holding a
  newline), else the message, else `failed expression: <expression>`.
- cel/filter.go (ForInput, CreateAdmissionRequest): `object` is null on DELETE, `oldObject` null
  on CREATE; `request` is the AdmissionRequest converted to unstructured (apimachinery
  runtime/converter.go structToUnstructured skips omitempty fields holding zero values), so empty
  fields (namespace and name of cluster-scoped requests, subResource of the main resource) are
  absent and `request.subResource` without has() is a "no such key" error; an evaluation error
  reads `expression '<expression>' resulted in error: <error>`.
- Requests on the admission configuration kinds themselves are exempt
  (rules.IsExemptAdmissionConfigurationResource).

CEL is cel-python's: the language and its standard macros. Like cel-go's compiler, the stand-in
refuses a name the environment does not declare (cel-python alone would make `has(typo.x)` false).
What cel-python lacks fails loudly, never passes: a parse error, a Kubernetes CEL library function
or variable (authorizer, strings, lists, regex, quantity, url, ip, sets, optional) or an unsupported
field (paramKind, paramRef, auditAnnotations) denies whatever the failurePolicy; a result that is
not a bool is an error, as cel-go's type check would make it. Not modelled: the runtime cost budget,
warnings from Warn bindings (the request is admitted, as upstream), audit annotations, and
matchPolicy Equivalent (the stand-in serves one version of each resource).
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel

from standin.kube.auth import User
from standin.kube.errors import ApiError
from standin.kube.resources import ResourceType
from standin.kube.selectors import label_selector_matches
from standin.kube.store import Store

logging.getLogger("celpy").setLevel(logging.WARNING)

# The variables of a validation's CEL environment (cel/compile.go; params only with paramKind, which
# the stand-in refuses; authorizer it cannot evaluate).
DECLARED = {"object", "oldObject", "request", "namespaceObject", "variables"}
_MACROS = {"all", "exists", "exists_one", "map", "filter"}
POLICIES = "validatingadmissionpolicies"
BINDINGS = "validatingadmissionpolicybindings"
ADMISSION_GROUP = "admissionregistration.k8s.io"
EXEMPT_KINDS = {
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
}
MAX_MESSAGE_BYTES = 5 * 1024  # celconfig.MaxEvaluatedMessageExpressionSizeBytes
REASON_CODES = {"Forbidden": 403, "Unauthorized": 401, "RequestEntityTooLarge": 413, "Invalid": 422}
# Kubernetes' CEL libraries (k8s.io/apiserver/pkg/cel/library, cel-go ext) that cel-python lacks.
K8S_LIBRARY = {
    "authorizer", "path", "group", "resource", "subresource", "namespace", "check", "allowed", "reason",
    "errored", "error", "serviceAccount", "fieldSelector", "labelSelector",
    "charAt", "indexOf", "lastIndexOf", "lowerAscii", "upperAscii", "replace", "split", "substring", "trim",
    "join", "quote", "format", "reverse", "strings",
    "isSorted", "sum", "min", "max", "slice", "flatten", "distinct", "sort", "sortBy", "lists", "range",
    "find", "findAll", "url", "isURL", "getScheme", "getHost", "getHostname", "getPort", "getEscapedPath",
    "getQuery", "quantity", "isQuantity", "ip", "isIP", "cidr", "isCIDR", "sets", "optional", "orValue",
    "hasValue", "value", "math", "base64", "escapeSelector", "semver", "isSemver", "format", "jsonpatch",
}


@dataclass(frozen=True)
class Attributes:
    """admission.Attributes of one write, as the policies see it."""

    user: User
    operation: str  # CREATE | UPDATE | DELETE
    rt: ResourceType
    namespace: str  # "" when cluster-scoped; a Namespace's own name for the namespaces resource
    name: str  # "" on a CREATE whose name is generated
    obj: dict | None  # null on DELETE
    old: dict | None  # null on CREATE
    dry_run: bool = False
    subresource: str = ""


@dataclass
class Decision:
    message: str
    reason: str = ""
    evaluation: str = "deny"  # deny | error


class _Failure(Exception):
    """A CEL compile or evaluation error, in the API server's words."""

    def __init__(self, message: str, standin_limit: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.standin_limit = standin_limit  # cel-python cannot do what the real server can: deny always


class _Variables(celtypes.MapType):
    """`variables`: each evaluated on first use, once (upstream composition.go is lazy too); an
    error is returned as a CEL error value, so `false && variables.broken` is false."""

    def __init__(self, evaluate, expressions: dict[str, str]) -> None:
        super().__init__({})
        self._evaluate, self._expressions, self._values = evaluate, expressions, {}

    def __contains__(self, key: object) -> bool:
        return str(key) in self._expressions

    def __getitem__(self, key: Any) -> Any:
        name = str(key)
        if name not in self._expressions:
            raise KeyError(name)
        if name not in self._values:
            try:
                self._values[name] = self._evaluate(self._expressions[name])
            except _Failure as failure:
                self._values[name] = celpy.CELEvalError(failure.message)
        return self._values[name]


_CEL_LOCK = threading.Lock()
_ENVIRONMENT: list[Any] = []  # the cel-python Environment: its parser takes ~0.5 s to build, so one per process
_PROGRAMS: dict[str, Any] = {}  # expression -> program


def _program(expression: str) -> tuple[Any, frozenset[str]]:
    """(program, the variables it names), compiled once per process and shared by every stand-in
    API server (programs are immutable)."""
    with _CEL_LOCK:
        compiled = _PROGRAMS.get(expression)
        if compiled is None:
            if not _ENVIRONMENT:
                _ENVIRONMENT.append(celpy.Environment())
            tree = _ENVIRONMENT[0].compile(expression)
            compiled = _PROGRAMS[expression] = (_ENVIRONMENT[0].program(tree), _free_identifiers(tree))
        return compiled


def _free_identifiers(tree: Any) -> frozenset[str]:
    """The variables an expression reads: identifiers, less those a macro binds (`k` in
    `m.all(k, ...)`). cel-go refuses an undeclared one at compile time; cel-python would let
    `has(typo.x)` be false, so the stand-in checks them itself."""
    used, bound = set(), set()
    for node in tree.iter_subtrees():
        if node.data == "ident":
            used.add(str(node.children[0]))
        elif node.data == "member_dot_arg" and len(node.children) >= 3 and str(node.children[1]) in _MACROS:
            exprlist = node.children[2]
            first = exprlist.children[0] if getattr(exprlist, "children", None) else None
            idents = [str(t.children[0]) for t in first.iter_subtrees() if t.data == "ident"] if first is not None else []
            if len(idents) == 1:
                bound.add(idents[0])
    return frozenset(used - bound)


class ValidatingAdmissionPolicies:
    """The admission plugin: evaluates every policy and binding stored against one write."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._listed: tuple[str, list[dict], list[dict]] | None = None

    def _configuration(self) -> tuple[list[dict], list[dict]]:
        """The policies and bindings stored, listed once per revision (a write's dry run and its
        admission see the same revision)."""
        if POLICIES not in self.store.types:
            return [], []
        revision = self.store.revision
        listed = self._listed
        if listed is None or listed[0] != revision:
            bindings = self.store.list(self.store.types[BINDINGS]) if BINDINGS in self.store.types else []
            listed = self._listed = (revision, self.store.list(self.store.types[POLICIES]), bindings)
        return listed[1], listed[2]

    def active(self) -> bool:
        """Any policy stored (writes skip the admission dry run when there is none)."""
        return bool(self._configuration()[0])

    # --- dispatch ----------------------------------------------------------------------------

    def validate(self, attrs: Attributes) -> None:
        """Dispatch: raise the API server's denial for the first denied decision, else return."""
        if attrs.rt.group == ADMISSION_GROUP and attrs.rt.kind in EXEMPT_KINDS:
            return
        policies, bindings = self._configuration()
        inputs = _Inputs(self.store, attrs)
        with self._lock:
            for policy in policies:
                denied = self._policy(policy, bindings, attrs, inputs)
                if denied is not None:
                    binding, decision = denied
                    raise self._denial(attrs, policy, binding, decision)

    def _policy(self, policy: dict, bindings: list[dict], attrs: Attributes,
                inputs: _Inputs) -> tuple[dict | None, Decision] | None:
        spec = policy.get("spec") or {}
        constraints = spec.get("matchConstraints")
        if constraints is None:
            return None, Decision("failed to configure policy: policy contained no match constraints, a required field")
        if not self._matches(constraints, attrs):
            return None
        for field in ("paramKind", "auditAnnotations"):
            if spec.get(field):
                return None, Decision(f"failed to configure policy: the stand-in does not evaluate {field}")
        for binding in bindings:
            bspec = binding.get("spec") or {}
            if bspec.get("policyName") != policy["metadata"]["name"]:
                continue
            if bspec.get("paramRef"):
                return binding, Decision("failed to configure binding: the stand-in does not evaluate paramRef")
            if bspec.get("matchResources") is not None and not self._matches(bspec["matchResources"], attrs):
                continue
            for decision in self._evaluate(spec, attrs, inputs):
                if "Deny" in (bspec.get("validationActions") or []):
                    return binding, decision
        return None

    @staticmethod
    def _denial(attrs: Attributes, policy: dict, binding: dict | None, decision: Decision) -> ApiError:
        """admission.NewForbidden with the decision's reason and code, the message as a cause."""
        name = policy["metadata"]["name"]
        if binding is not None:
            message = (f"ValidatingAdmissionPolicy '{name}' with binding '{binding['metadata']['name']}' "
                       f"denied request: {decision.message}")
        else:
            message = f"ValidatingAdmissionPolicy '{name}' denied request: {decision.message}"
        meta = (attrs.obj or attrs.old or {}).get("metadata") or {}
        obj_name = attrs.name or meta.get("name") or meta.get("generateName") or "Unknown"
        reason = decision.reason or "Invalid"
        details = attrs.rt.details(obj_name)
        details["causes"] = [{"message": message}]
        return ApiError(REASON_CODES.get(reason, 422), f'{attrs.rt.qualified} "{obj_name}" is forbidden: {message}',
                        reason, details)

    # --- matching ----------------------------------------------------------------------------

    def _matches(self, constraints: dict, attrs: Attributes) -> bool:
        """matching.Matcher.Matches: namespace and object selectors, exclusions, resource rules."""
        if not self._namespace_selected(constraints.get("namespaceSelector") or {}, attrs):
            return False
        selector = constraints.get("objectSelector") or {}
        if not any(label_selector_matches(selector, (o.get("metadata") or {}).get("labels") or {})
                   for o in (attrs.obj, attrs.old) if o is not None):
            return False
        if any(_rule_matches(rule, attrs) for rule in constraints.get("excludeResourceRules") or []):
            return False
        rules = constraints.get("resourceRules") or []
        return not rules or any(_rule_matches(rule, attrs) for rule in rules)

    def _namespace_selected(self, selector: dict, attrs: Attributes) -> bool:
        """A cluster-scoped object other than a Namespace always matches; a Namespace by its own labels."""
        if attrs.rt.plural == "namespaces":
            return any(label_selector_matches(selector, (o.get("metadata") or {}).get("labels") or {})
                       for o in (attrs.obj, attrs.old) if o is not None)
        if not attrs.namespace:
            return True
        namespace = self.store.find(self.store.types["namespaces"], None, attrs.namespace) or {}
        return label_selector_matches(selector, (namespace.get("metadata") or {}).get("labels") or {})

    # --- evaluation --------------------------------------------------------------------------

    def _evaluate(self, spec: dict, attrs: Attributes, inputs: _Inputs) -> list[Decision]:
        """validator.Validate for one binding: the denied decisions, in validation order."""
        fail = spec.get("failurePolicy", "Fail") != "Ignore"
        activation = inputs.base()
        activation["variables"] = _Variables(
            lambda expression: self._run(expression, activation, inputs),
            {v["name"]: v["expression"] for v in spec.get("variables") or []},
        )
        errors = []
        for condition in spec.get("matchConditions") or []:
            try:
                if not self._boolean(condition["expression"], activation, inputs):
                    return []
            except _Failure as failure:
                if failure.standin_limit:
                    return [Decision(failure.message, evaluation="error")]
                errors.append(failure.message)
        if errors:
            if not fail:
                return []
            return [Decision(errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]", evaluation="error")]
        denied = []
        for validation in spec.get("validations") or []:
            try:
                if self._boolean(validation["expression"], activation, inputs):
                    continue
            except _Failure as failure:
                if fail or failure.standin_limit:
                    denied.append(Decision(failure.message, evaluation="error"))
                continue
            denied.append(Decision(self._message(validation, activation, inputs), validation.get("reason") or "Invalid"))
        return denied

    def _message(self, validation: dict, activation: dict, inputs: _Inputs) -> str:
        message = ""
        if validation.get("messageExpression"):
            try:
                value = self._run(validation["messageExpression"], activation, inputs)
            except _Failure:
                value = None  # upstream logs it and falls back
            if isinstance(value, str):
                message = value.strip()
                if len(message.encode()) > MAX_MESSAGE_BYTES or "\n" in message:
                    message = ""
        if not message and validation.get("message"):
            message = validation["message"].strip()
        return message or f"failed expression: {validation['expression'].strip()}"

    def _boolean(self, expression: str, activation: dict, inputs: _Inputs) -> bool:
        value = self._run(expression, activation, inputs)
        if not isinstance(value, celtypes.BoolType):
            raise _Failure(f"compilation error: expression '{expression}' must evaluate to bool, "
                           f"not {type(value).__name__}")
        return bool(value)

    def _run(self, expression: str, activation: dict, inputs: _Inputs) -> Any:
        try:
            program, names = _program(expression)
        except Exception as exc:  # noqa: BLE001 - cel-python's grammar: a parse error is loud
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _Failure(f"compilation error: the stand-in's CEL (cel-python) cannot parse "
                           f"'{expression}': {first}", standin_limit=True) from None
        for name in sorted(names - DECLARED):
            if name in K8S_LIBRARY:
                raise _Failure(f"compilation error: the stand-in's CEL (cel-python) lacks Kubernetes' "
                               f"CEL library variable '{name}' in '{expression}'", standin_limit=True)
            raise _Failure(f"compilation error: undeclared reference to '{name}' in '{expression}'")
        if names & set(_Inputs.OBJECTS) and not inputs.loaded(activation):
            activation.update(inputs.objects())
        try:
            return program.evaluate(activation)
        except celpy.CELEvalError as exc:
            detail, limit = _describe(exc)
            raise _Failure(f"expression '{expression}' resulted in error: {detail}", standin_limit=limit) from None
        except Exception as exc:  # noqa: BLE001 - anything else is the stand-in's limit: loud
            raise _Failure(f"expression '{expression}' resulted in error: the stand-in's CEL (cel-python) "
                           f"failed: {type(exc).__name__}: {exc}", standin_limit=True) from None


class _Inputs:
    """The CEL inputs of one request, each converted once: `request` (and `params`, null) at once;
    `object`, `oldObject` and `namespaceObject` before the first expression that names one of them
    (a variable's expression when that variable is used). Converting a Workflow costs more than the
    matchConditions that skip it, which read `request` only."""

    OBJECTS = ("object", "oldObject", "namespaceObject")

    def __init__(self, store: Store, attrs: Attributes) -> None:
        self.store, self.attrs = store, attrs
        self._base: dict | None = None
        self._objects: dict | None = None

    def base(self) -> dict:
        if self._base is None:
            self._base = {"request": json_to_cel(admission_request(self.attrs)), "params": None}
        return dict(self._base)

    def loaded(self, activation: dict) -> bool:
        return all(name in activation for name in self.OBJECTS)

    def objects(self) -> dict:
        if self._objects is None:
            attrs, namespace = self.attrs, None
            if attrs.namespace and attrs.rt.plural != "namespaces":
                found = self.store.find(self.store.types["namespaces"], None, attrs.namespace)
                if found is not None:
                    namespace = copy.deepcopy(found)
                    namespace["metadata"].pop("managedFields", None)
            self._objects = {"object": _cel(attrs.obj), "oldObject": _cel(attrs.old), "namespaceObject": _cel(namespace)}
        return self._objects


def admission_request(attrs: Attributes) -> dict:
    """cel.CreateAdmissionRequest, as runtime.DefaultUnstructuredConverter renders it: omitempty
    fields with empty values are absent."""
    rt = attrs.rt
    kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    resource = {"group": rt.group, "version": rt.version, "resource": rt.plural}
    user: dict[str, Any] = {"username": attrs.user.name}
    if attrs.user.groups:
        user["groups"] = list(attrs.user.groups)
    request: dict[str, Any] = {"uid": "", "kind": kind, "resource": resource}
    if attrs.subresource:
        request["subResource"] = attrs.subresource
    request["requestKind"] = dict(kind)
    request["requestResource"] = dict(resource)
    if attrs.subresource:
        request["requestSubResource"] = attrs.subresource
    if attrs.name:
        request["name"] = attrs.name
    if attrs.namespace:
        request["namespace"] = attrs.namespace
    request.update({"operation": attrs.operation, "userInfo": user, "dryRun": attrs.dry_run, "options": None})
    return request


def _cel(obj: dict | None) -> Any:
    return None if obj is None else json_to_cel(obj)


def _describe(exc: celpy.CELEvalError) -> tuple[str, bool]:
    """cel-python's error as cel-go words it where they differ; whether it is the stand-in's limit."""
    text = str(exc.args[0]) if exc.args else str(exc)
    if text.startswith("undeclared reference to "):
        name = text.split("'")[1] if "'" in text else text
        if name in K8S_LIBRARY:
            return f"the stand-in's CEL (cel-python) lacks Kubernetes' CEL library function '{name}'", True
        return f"undeclared reference to '{name}'", False
    if text.startswith("no such member in mapping: "):
        return "no such key: " + text.removeprefix("no such member in mapping: ").strip("'"), False
    return text.splitlines()[0], False


def _rule_matches(rule: dict, attrs: Attributes) -> bool:
    """rules.Matcher.Matches plus resourceNames (matching.go matchesResourceRules)."""
    rt = attrs.rt
    scope = rule.get("scope") or "*"
    namespaced = rt.plural != "namespaces" and bool(attrs.namespace)
    if scope == "Namespaced" and not namespaced:
        return False
    if scope == "Cluster" and namespaced:
        return False
    if scope not in ("*", "Namespaced", "Cluster"):
        return False
    if not any(op in ("*", attrs.operation) for op in rule.get("operations") or []):
        return False
    if not any(g in ("*", rt.group) for g in rule.get("apiGroups") or []):
        return False
    if not any(v in ("*", rt.version) for v in rule.get("apiVersions") or []):
        return False
    for item in rule.get("resources") or []:
        res, _, sub = item.partition("/")
        if res in ("*", rt.plural) and sub in ("*", attrs.subresource):
            break
    else:
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names

"""standin.argo.events.sensors: Argo Events v1.9 filter and parameter semantics, on the tricky cases."""

from __future__ import annotations

import hashlib
import json

import pytest

from standin.argo.events import sensors as ss


def _data(body: dict | str, headers: dict | None = None) -> bytes:
    raw = body if isinstance(body, str) else json.dumps(body)
    return ss.webhook_event_data(raw.encode(), headers)


def _dep(data_filters=None, script=None, **extra) -> dict:
    filters: dict = {}
    if data_filters is not None:
        filters["data"] = data_filters
    if script is not None:
        filters["script"] = script
    filters.update(extra.pop("filters_extra", {}))
    return {"name": "d", "eventSourceName": "falco", "eventName": "falco-alert", "filters": filters, **extra}


def _passes(dep: dict, body: dict | str) -> bool:
    root = ss.parse_json(_data(body).decode())
    return ss.evaluate_dependency(dep, root) is None


def _string(path: str, *values: str, comparator: str | None = None) -> dict:
    f = {"path": path, "type": "string", "value": list(values)}
    if comparator is not None:
        f["comparator"] = comparator
    return f


# --- event data as the EventSource publishes it ---------------------------------------------------


def test_event_data_is_go_json_marshal_compact_and_html_escaped():
    body = b'{ "output" : "a <b> & c",\n  "n": 18446744073670260079, "e": "\\u00e9" }'
    data = ss.webhook_event_data(body, {"Content-Type": ["application/json"], "Authorization": ["*** Masked Auth Secret ***"]})
    assert data == (
        b'{"header":{"Authorization":["*** Masked Auth Secret ***"],"Content-Type":["application/json"]},'
        b'"body":{"output":"a \\u003cb\\u003e \\u0026 c","n":18446744073670260079,"e":"\\u00e9"}}'
    )


def test_event_data_refuses_what_go_json_refuses():
    for bad in (b"", b"{", b"{'a': 1}", b'{"a": NaN}', b'{"a": 01}', b'{"a": 1,}', b'{"a": "\x01"}', b"[1] x"):
        with pytest.raises(ss.JSONSyntaxError):
            ss.webhook_event_data(bad)


# --- data filters ----------------------------------------------------------------------------------


def test_string_values_are_unanchored_regexps():
    dep = _dep([_string("body.priority", "Critical")])
    assert _passes(dep, {"priority": "NotCritical"})
    assert _passes(dep, {"priority": "Critical2"})
    assert not _passes(dep, {"priority": "Warning"})
    anchored = _dep([_string("body.priority", "^Critical$")])
    assert not _passes(anchored, {"priority": "NotCritical"})


def test_dollar_is_end_of_text_as_in_re2_not_before_a_final_newline():
    dep = _dep([_string("body.ns", "^default$")])
    assert _passes(dep, {"ns": "default"})
    assert not _passes(dep, {"ns": "default\n"})  # Python's re alone would match here


def test_not_equal_with_several_values_passes_if_any_value_does_not_match():
    dep = _dep([_string("body.ns", "^kube-system$", "^falco$", comparator="!=")])
    # "kube-system" does not match "^falco$": the filter PASSES, a protected namespace slips through
    assert _passes(dep, {"ns": "kube-system"})
    one_regex = _dep([_string("body.ns", "^(?:kube-system|falco)$", comparator="!=")])
    assert not _passes(one_regex, {"ns": "kube-system"})
    assert _passes(one_regex, {"ns": "default"})


def test_several_values_with_equal_pass_if_any_matches():
    dep = _dep([_string("body.p", "^Critical$", "^Warning$")])
    assert _passes(dep, {"p": "Warning"})
    assert not _passes(dep, {"p": "Notice"})


def test_missing_path_rejects_under_and_but_null_reads_as_empty_string():
    dep = _dep([_string("body.output_fields.k8s\\.ns\\.name", "^$")])
    assert _passes(dep, {"output_fields": {"k8s.ns.name": None}})
    assert not _passes(dep, {"output_fields": {}})
    root = ss.parse_json(_data({"output_fields": {}}).decode())
    failure = ss.evaluate_dependency(dep, root)
    assert failure.kind == "data" and "does not exist" in failure.reason


def test_or_operator_tolerates_a_missing_path_when_another_filter_matches():
    dep = _dep([_string("body.missing", "x"), _string("body.rule", "^a$")], filters_extra={"dataLogicalOperator": "or"})
    assert _passes(dep, {"rule": "a"})
    assert not _passes(dep, {"rule": "b"})  # no match, and the error of the missing path rejects


def test_dotted_keys_need_escaped_paths_and_first_duplicate_key_wins():
    body = '{"output_fields": {"k8s.ns.name": "dotted", "k8s": {"ns": {"name": "nested"}}}, "rule": "first", "rule": "second"}'
    root = ss.parse_json(_data(body).decode())
    assert ss.gjson_get(root, "body.output_fields.k8s\\.ns\\.name").string() == "dotted"
    assert ss.gjson_get(root, "body.output_fields.k8s.ns.name").string() == "nested"
    assert ss.gjson_get(root, "body.rule").string() == "first"  # gjson: first key
    assert root.value()["body"]["rule"] == "first"  # gjson Value() (dataTemplate .Input): arrayOrMap keeps the first
    assert ss.go_unmarshal(root)["body"]["rule"] == "second"  # json.Unmarshal into a Go map (Lua's event): the last


def test_bracket_keys_work_escaped_or_not():
    root = ss.parse_json(_data({"output_fields": {"proc.aname[2]": "systemd"}}).decode())
    assert ss.gjson_get(root, "body.output_fields.proc\\.aname\\[2\\]").string() == "systemd"
    assert ss.gjson_get(root, "body.output_fields.proc\\.aname[2]").string() == "systemd"


def test_arrays_read_as_their_json_text():
    dep = _dep([_string("body.tags", '"(?:trigger-checkpoint)"')])
    assert _passes(dep, {"tags": ["a", "trigger-checkpoint"]})
    assert not _passes(dep, {"tags": ["a", "trigger-checkpoint-not"]})
    root = ss.parse_json(_data({"tags": ["<x>", "y"]}).decode())
    assert ss.gjson_get(root, "body.tags").string() == '["\\u003cx\\u003e","y"]'


def test_numbers_and_bools():
    num = _dep([{"path": "body.tty", "type": "number", "value": ["34816"], "comparator": ">="}])
    assert _passes(num, {"tty": 34816}) and _passes(num, {"tty": "40000"}) and not _passes(num, {"tty": 0})
    assert not _passes(num, {"tty": "not a number"})  # Float() of a non-number string is 0
    flag = _dep([{"path": "body.flag", "type": "bool", "value": ["True"]}])
    assert _passes(flag, {"flag": True}) and _passes(flag, {"flag": "1"}) and not _passes(flag, {"flag": "yes"})


def test_invalid_comparator_is_refused_like_the_controller():
    dep = _dep([{"path": "body.tty", "type": "number", "value": ["1"], "comparator": "=="}])
    with pytest.raises(ss.GoError):
        _passes(dep, {"tty": 1})


@pytest.mark.parametrize("kind", ["exprs", "context", "time"])
def test_unsupported_filter_kinds_fail_loudly(kind):
    dep = _dep([], filters_extra={kind: [{"expr": "a == b"}] if kind == "exprs" else {"x": 1}})
    with pytest.raises(ss.Unsupported, match=kind):
        _passes(dep, {"a": 1})


def test_transform_fails_loudly():
    dep = _dep([], transform={"jq": "."})
    with pytest.raises(ss.Unsupported, match="transform"):
        _passes(dep, {})


@pytest.mark.parametrize("regex", ["(?=a)", "(a)\\1", "\\pL", "(?i)a", "[[:^alpha:]]"])
def test_regexps_python_reads_differently_are_refused(regex):
    dep = _dep([_string("body.a", regex)])
    with pytest.raises(ss.Unsupported):
        _passes(dep, {"a": "a"})


def test_invalid_go_regexp_rejects_the_event():
    dep = _dep([_string("body.a", "a{1001}")])
    assert not _passes(dep, {"a": "a"})


# --- Lua script filter -----------------------------------------------------------------------------


def test_lua_sees_nulls_as_nil_and_drops_nested_arrays():
    script = """
    local f = event.body.output_fields
    return f["k8s.pod.name"] == nil and f["k8s.ns.name"] == "default" and #event.body.m == 2
           and type(event.body.n) == "number" and event.header["Content-Type"][1] == "application/json; charset=utf-8"
    """
    body = {"output_fields": {"k8s.pod.name": None, "k8s.ns.name": "default"}, "m": [[1], "a", None, 2], "n": 18446744073670260079}
    assert _passes(_dep(script=script), body)


def test_lua_must_return_exactly_true():
    for script, ok in (("return true", True), ("return 1", False), ('return "true"', False), ("return", False),
                       ("return false, true", True), ("return true, nil", False)):
        assert _passes(_dep(script=script), {"a": 1}) is ok, script


def test_lua_error_rejects():
    root = ss.parse_json(_data({"a": 1}).decode())
    failure = ss.evaluate_dependency(_dep(script="return event.nope.field"), root)
    assert failure.kind == "script" and "error" in failure.reason


# --- trigger parameters ---------------------------------------------------------------------------


def _resolve(src: dict, body: dict | str) -> tuple[str | None, str]:
    root = ss.parse_json(_data(body).decode())
    return ss.resolve_parameter({"dependencyName": "d", **src}, {"d": root})


def test_data_key_gives_raw_json_for_blocks_and_null_and_values_for_scalars():
    body = {"a": {"x": "<1>"}, "n": None, "s": "str", "i": 5, "f": 1.50}
    assert _resolve({"dataKey": "body.a"}, body) == ('{"x":"\\u003c1\\u003e"}', "JSON")
    assert _resolve({"dataKey": "body.n"}, body) == ("null", "Null")
    assert _resolve({"dataKey": "body.s"}, body) == ("str", "String")
    assert _resolve({"dataKey": "body.i"}, body) == ("5", "Number")
    assert _resolve({"dataKey": "body.f"}, body) == ("1.5", "Number")


def test_data_template_falls_back_to_data_key_then_value():
    body = {"rule": "R", "output_fields": {"container.name": None}}
    tpl = '{{ with index .Input.body.output_fields "container.name" }}{{ . }}{{ end }}'
    assert _resolve({"dataTemplate": tpl, "value": "dflt"}, body) == ("dflt", "String")
    assert _resolve({"dataTemplate": tpl, "dataKey": "body.rule", "value": "dflt"}, body) == ("R", "String")
    assert _resolve({"dataTemplate": "{{ .Input.body.nope }}", "value": "v"}, body) == ("v", "String")  # "<no value>"
    with pytest.raises(ss.GoError):
        _resolve({"dataTemplate": "{{ .Input.body.nope }}"}, body)


def test_template_name_hash_and_label_functions():
    body = {"rule": "Redirect STDOUT/STDIN to Network Connection in Container",
            "output_fields": {"k8s.ns.name": "default", "k8s.pod.name": "-web-1-", "container.id": "0123456789ab"}}
    name_tpl = ('falco-response-{{ printf "%s/%s/%s" (index .Input.body.output_fields "k8s.ns.name") '
                '(index .Input.body.output_fields "k8s.pod.name") (index .Input.body.output_fields "container.id") | sha256sum | trunc 16 }}')
    want = "falco-response-" + hashlib.sha256(b"default/-web-1-/0123456789ab").hexdigest()[:16]
    assert _resolve({"dataTemplate": name_tpl}, body)[0] == want
    rule_tpl = '{{ regexReplaceAll "[^A-Za-z0-9_.-]+" .Input.body.rule "-" | trunc 63 | trimAll "-_." }}'
    assert _resolve({"dataTemplate": rule_tpl}, body)[0] == "Redirect-STDOUT-STDIN-to-Network-Connection-in-Container"
    pod_tpl = '{{ (index .Input.body.output_fields "k8s.pod.name") | trunc 63 | trimAll "-." | lower }}'
    assert _resolve({"dataTemplate": pod_tpl}, body)[0] == "web-1"


def test_template_printf_with_null_renders_like_go():
    body = {"output_fields": {"k8s.ns.name": None}}
    out, _ = _resolve({"dataTemplate": '{{ printf "%s/%s" (index .Input.body.output_fields "k8s.ns.name") "x" }}'}, body)
    assert out == "%!s(<nil>)/x"
    # a number reads as float64 in templates
    assert _resolve({"dataTemplate": "{{ .Input.body.n }}"}, {"n": 1234567})[0] == "1.234567e+06"


def test_unknown_template_functions_fail_loudly():
    with pytest.raises(ss.Unsupported, match="toYaml"):
        _resolve({"dataTemplate": "{{ toYaml .Input }}"}, {"a": 1})


def test_sjson_dest_escaped_dots_and_array_indexes():
    obj = {"metadata": {"labels": {}}, "spec": {"arguments": {"parameters": [{"name": "a", "value": ""}]}}}
    out = ss.sjson_set(obj, "metadata.labels.falco-response\\.io/pod", "web")
    out = ss.sjson_set(out, "spec.arguments.parameters.0.value", "x")
    out = ss.sjson_set(out, "spec.arguments.parameters.2.value", "y")
    assert out["metadata"]["labels"] == {"falco-response.io/pod": "web"}
    assert out["spec"]["arguments"]["parameters"] == [{"name": "a", "value": "x"}, None, {"value": "y"}]
    assert obj["spec"]["arguments"]["parameters"][0]["value"] == ""  # the input is untouched
    assert ss.sjson_set({}, "a.1", "v") == {"a": [None, "v"]}
    with pytest.raises(ss.GoError):
        ss.sjson_set({"a": []}, "a.key", "v")
    with pytest.raises(ss.Unsupported):
        ss.sjson_set({}, "a.*", "v")


def test_trigger_labels_and_namespace_like_argo_events():
    sensor = {
        "metadata": {"name": "s", "namespace": "argo-events"},
        "spec": {"dependencies": [_dep([_string("body.rule", "^a$")])], "triggers": [{"template": {"name": "t", "argoWorkflow": {
            "operation": "submit",
            "source": {"resource": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"generateName": "x-"}}},
            "parameters": [{"src": {"dependencyName": "d", "dataKey": "body.rule"}, "dest": "metadata.labels.rule"}],
        }}}]},
    }
    result = ss.evaluate(sensor, _data({"rule": "a"}), now_ms=42)
    assert result.matched
    wf = result.triggers[0].workflow
    assert wf["metadata"]["namespace"] == "argo-events"
    assert wf["metadata"]["labels"] == {"rule": "a", "events.argoproj.io/sensor": "s", "events.argoproj.io/trigger": "t",
                                        "events.argoproj.io/action-timestamp": "42"}
    other = ss.evaluate(sensor, _data({"rule": "a"}), event_source="other")
    assert not other.matched and other.failure.kind == "event"


def test_go_float_formatting():
    assert [ss.go_format_float(v, "g") for v in (1e6, 123456.0, 1.5, 1e-5, 1e21)] == ["1e+06", "123456", "1.5", "1e-05", "1e+21"]
    assert ss.go_marshal(1e-7) == "1e-7" and ss.go_marshal(2.0) == "2" and ss.go_marshal(1e21) == "1e+21"


# --- the webhook EventSource --------------------------------------------------------------------


def _endpoint(max_size: int = 65536):
    from standin.argo.events.webhook import WebhookEndpoint

    spec = ss.WebhookSpec("falco", "falco-alert", "/falco", "POST", 12000, max_size, {"name": "falco-webhook-token", "key": "token"})
    return WebhookEndpoint(spec, "s3cret\n")  # a Secret edited with vim: the trailing newline is dropped


@pytest.mark.parametrize(
    "method,target,headers,body,status,text",
    [
        ("POST", "/other", {}, b"{}", 404, "404 page not found"),
        ("GET", "/health", {}, b"", 200, "OK"),
        ("POST", "/falco", {}, b"{}", 401, "Invalid Authorization Header"),
        ("POST", "/falco", {"Authorization": "Basic s3cret"}, b"{}", 401, "Invalid Authorization Header"),
        ("POST", "/falco", {"Authorization": "Bearer wrong"}, b"{}", 401, "Invalid Auth token"),
        ("PUT", "/falco", {"Authorization": "Bearer s3cret"}, b"{}", 400, "http method does not match"),  # Argo: 400, not 405
        ("POST", "/falco", {"Authorization": "Bearer s3cret"}, b"{" + b" " * 2000 + b"}", 400, "http: request body too large"),
        ("POST", "/falco", {"Authorization": "Bearer s3cret"}, b"not json", 400, "invalid character"),
        ("POST", "/falco", {"Authorization": "Bearer s3cret"}, b"", 400, "unexpected end of JSON input"),
        ("POST", "/falco?x=1", {"authorization": "Bearer s3cret", "content-type": "application/json"}, b'{"a": "<b>"}', 200, "success"),
    ],
)
def test_webhook_answers_like_argo_events(method, target, headers, body, status, text):
    response = _endpoint(max_size=1024).handle(method, target, headers, body)
    assert response.status == status and text in response.text
    assert (response.event_data is not None) is (status == 200 and target != "/health")
    if response.event_data:
        data = json.loads(response.event_data)
        assert data == {"header": {"Authorization": ["*** Masked Auth Secret ***"], "Content-Type": ["application/json"]},
                        "body": {"a": "<b>"}}
        assert b'"\\u003cb\\u003e"' in response.event_data


def test_webhook_over_http(tmp_path):
    import requests

    from standin.argo.events.webhook import WebhookServer

    seen = []
    with WebhookServer(_endpoint(), on_event=seen.append) as server:
        assert requests.post(server.url, json={"rule": "r"}).status_code == 401
        r = requests.post(server.url, json={"rule": "r"}, headers={"Authorization": "Bearer s3cret", "User-Agent": "Falcosidekick"})
        assert (r.status_code, r.text) == (200, "success")
        big = requests.post(server.url, data=b'{"a":"' + b"x" * 70000 + b'"}', headers={"Authorization": "Bearer s3cret"})
        assert big.status_code == 400 and "too large" in big.text
    assert len(seen) == 1 and server.events == seen
    header = json.loads(seen[0])["header"]
    assert header["Authorization"] == ["*** Masked Auth Secret ***"] and header["User-Agent"] == ["Falcosidekick"]
    assert "Host" not in header


# --- GJSON beyond plain keys: what the JSON filters use (gjson v1.19.0, gjson.go) -------------------


def _root(body: str):
    return ss.parse_json(_data(body).decode())


def test_keys_modifier_lists_every_occurrence_as_raw_text():
    """modKeys: ForEach over the raw object, each key's Raw; a dot before a modifier pipes (isDotPiperChar)."""
    root = _root('{"rule": "a", "ru\\u006ce": "b", "rule": "c", "output_fields": {"k<8>s": 1}}')
    assert ss.gjson_get(root, "body.@keys").raw == '["rule","ru\\u006ce","rule","output_fields"]'
    assert ss.gjson_get(root, "body|@keys").raw == ss.gjson_get(root, "body.@keys").raw
    # the event's body is Go-compacted with HTML escapes: so are its keys
    assert ss.gjson_get(root, "body.output_fields.@keys").raw == '["k\\u003c8\\u003es"]'
    assert ss.gjson_get(root, "body.rule").string() == "a"  # a plain path: the first occurrence


def test_keys_modifier_on_missing_and_non_objects():
    """Get pipes c.value (empty when the key is missing) into the modifier: modKeys("") is `[]`;
    on a non-object, ForEach yields `null` per element (one for a scalar)."""
    root = _root('{"s": "x", "a": [1, 2], "o": {}}')
    assert ss.gjson_get(root, "body.missing.@keys").raw == "[]"  # exists: the object holding it was reached
    assert ss.gjson_get(root, "nope.deeper.@keys") is None  # `nope` missing: parseObject never reached the pipe
    assert ss.gjson_get(root, "body.s.@keys").raw == "[null]"
    assert ss.gjson_get(root, "body.a.@keys").raw == "[null,null]"
    assert ss.gjson_get(root, "body.o.@keys").raw == "[]"
    assert ss.gjson_get(root, "body.@this").raw == ss.gjson_get(root, "body").raw


def test_a_path_through_repeated_keys_takes_the_first_that_leads_somewhere():
    """parseObject: the last component returns the first matching key; a component with more path
    after it goes on scanning when the rest is not found under the first match."""
    root = _root('{"a": 1, "a": 2, "o": {}, "o": {"k": "second"}, "s": "x", "s": {"k": "under-second"}}')
    assert ss.gjson_get(root, "body.a").raw == "1"
    assert ss.gjson_get(root, "body.o.k").string() == "second"
    assert ss.gjson_get(root, "body.s.k").string() == "under-second"
    assert root.value()["body"]["o"] == {}  # Value() (templates) keeps the first object: the paths and templates differ


def test_sub_selector_collects_the_values_that_exist():
    """Get's `[` branch (parseSubSelectors): `[` + the Raw of each sub-path that exists + `]`."""
    assert ss.gjson_get(_root('{"tags": ["a", "b"]}'), "body.[tags]").raw == '[["a","b"]]'
    assert ss.gjson_get(_root('{"rule": "r"}'), "body.[tags]").raw == "[]"
    assert ss.gjson_get(_root('{"tags": null}'), "body.[tags]").raw == "[null]"
    assert ss.gjson_get(_root('{"tags": {"t": false}, "rule": "r"}'), "body.[tags,rule]").raw == '[{"t":false},"r"]'


@pytest.mark.parametrize("path", ["body.ru*e", "body.tags.#", "body.tags.#(==\"a\")", "body.{tags}", "body.@reverse",
                                  "body.@keys:{}", "!true", "..0"])
def test_gjson_features_not_implemented_fail_loudly(path):
    with pytest.raises(ss.Unsupported):
        ss.gjson_get(_root('{"rule": "r", "tags": ["a"]}'), path)


def test_sprig_list_functions_and_go_comparisons():
    """sprig v3.3.0 splitList (strings.Split), uniq (first of each, reflect.DeepEqual); text/template lt/gt."""
    tpl = '{{ len (splitList "," .Input) }}/{{ len (uniq (splitList "," .Input)) }}/{{ gt (len .Input) 3 }}'
    assert ss.go_template(tpl).execute({"Input": "a,b,a"}) == "3/2/true"
    assert ss.go_template(tpl).execute({"Input": ""}) == "1/1/false"
    with pytest.raises(ss.GoError, match="incompatible types"):
        ss.go_template('{{ gt 1 "a" }}').execute({})
    with pytest.raises(ss.GoError, match="uniq"):
        ss.go_template("{{ uniq .Input }}").execute({"Input": "abc"})


# --- the JSON filters the generator puts in every Sensor ---------------------------------------


@pytest.mark.parametrize(
    "body,ok,why",
    [
        ('{"rule": "r", "output_fields": {"a": 1}}', True, None),
        ('{"rule": "r"}', True, None),  # no output_fields: `[]` (the namespace filter refuses it later)
        ('{"rule": "r", "priority": "x", "rule": "s"}', False, "repeated-key"),
        ('{"output_fields": {"k8s.ns.name": "a", "x": 1, "k8s.ns.name": "b"}}', False, "repeated-key"),
        ('{"rule": "r", "ru\\u006ce": "s"}', False, "escaped-key"),
        ('{"a\\"b": 1}', False, "escaped-key"),
        ('{"a,b": 1, "a": 2, "b": 3}', True, None),  # a comma inside a key is not a separator
        ("{" + ",".join(f'"k{i}": {i}' for i in range(257)) + "}", False, "over-256-keys"),
    ],
)
def test_keys_filter_refuses_repeated_and_escaped_keys(body, ok, why):
    """filterData with a template: .Input is the @keys text, the result is matched against ^unique$."""
    from sensors import policies

    dep = _dep([f.model_dump(exclude_none=True) for f in policies.json_filters()[:2]])
    failure = ss.evaluate_dependency(dep, _root(body))
    assert (failure is None) is ok, failure and failure.describe()
    if why:
        assert f"'{why}' does not match ^unique$" in failure.reason


@pytest.mark.parametrize(
    "tags,shape_ok,tagged",
    [
        (["container", "trigger-checkpoint"], True, True),
        (["trigger-checkpoint"], True, True),
        (["trigger-checkpoint-not", "not-trigger-checkpoint"], True, False),
        ([], True, False),
        (None, True, False),
        (['"trigger-checkpoint'], False, False),  # raw "\"trigger-checkpoint": a different tag
        ({"trigger-checkpoint": False}, False, False),
        ("trigger-checkpoint", False, False),
        ([None, "trigger-checkpoint"], False, False),
        ([["trigger-checkpoint"]], False, False),
        (["<x>", "trigger-checkpoint"], False, False),  # \\u003c: not a plain string
    ],
)
def test_tag_filters_match_whole_array_elements_only(tags, shape_ok, tagged):
    """body.[tags] must be absent, null or an array of plain strings (every Sensor); body.tags must hold the tag."""
    from sensors import policies

    shape = _dep([{"path": "body.[tags]", "type": "string", "value": [policies.RE_TAGS_SHAPE]}])
    tag = _dep([_string("body.tags", policies.tags_regex(["trigger-checkpoint"]))])
    assert _passes(shape, {"tags": tags}) is shape_ok
    assert _passes(tag, {"tags": tags}) is tagged
    assert _passes(shape, {"rule": "no tags"})


def test_else_if_chains_take_the_first_branch_that_holds():
    """text/template parse.go parseControl: `{{else if p}}` is an `else` holding one `if` that
    shares the outer `end` (the trigger's first-match templates, sensors.policies.first_match)."""
    tpl = ss.go_template('{{ if eq .Input 1.0 }}one{{ else if gt .Input 1.0 }}big{{ else if true }}other{{ end }}')
    assert [tpl.execute({"Input": v}) for v in (1.0, 5.0, 0.0)] == ["one", "big", "other"]
    assert ss.go_template("{{ if false }}a{{ else if false }}b{{ end }}").execute({}) == ""
    with pytest.raises(ss.Unsupported):
        ss.go_template("{{ with .Input }}a{{ else with .X }}b{{ end }}")


def test_and_or_short_circuit_like_go_1_18():
    """text/template funcs.go and/or (Go 1.18+): arguments are evaluated only until the result is
    known, so a guard such as kindIs keeps a later eq from a type error; eq (funcs.go) errors on
    different basic kinds unless one side is nil."""
    guarded = '{{ if and (kindIs "float64" .Input) (eq .Input 1.0) }}y{{ else }}n{{ end }}'
    assert [ss.go_template(guarded).execute({"Input": v}) for v in ("1", 1.0, None, True)] == ["n", "y", "n", "n"]
    with pytest.raises(ss.GoError, match="incompatible types"):
        ss.go_template("{{ eq .Input 1.0 }}").execute({"Input": "1"})
    with pytest.raises(ss.GoError, match="incompatible types"):
        ss.go_template("{{ eq .Input 1 }}").execute({"Input": 1.0})  # an int constant against a float64
    assert ss.go_template("{{ eq .Input 1.0 }}").execute({"Input": None}) == "false"
    assert ss.go_template("{{ or 0 .Input }}").execute({"Input": "x"}) == "x"
    assert ss.go_template("{{ and 1 0 .Missing.Deeper }}").execute({}) == "0"  # never evaluates the third


def test_sprig_has_list_and_kind_is():
    """sprig list.go mustHas: reflect.DeepEqual against each element; a nil haystack is false,
    anything but a slice panics (a template error); reflect.go kindIs: reflect Kind names, nil is
    "invalid"."""
    has = ss.go_template('{{ has .Input (list "a" "1") }}')
    assert [has.execute({"Input": v}) for v in ("a", "b", 1.0, None)] == ["true", "false", "false", "false"]
    tags = ss.go_template('{{ has "t" .Input }}')
    assert [tags.execute({"Input": v}) for v in (["t"], ["u"], None)] == ["true", "false", "false"]
    with pytest.raises(ss.GoError, match="Cannot find has"):
        tags.execute({"Input": {"t": True}})
    kinds = ss.go_template('{{ kindIs "string" .Input }}/{{ kindIs "float64" .Input }}/{{ kindIs "invalid" .Input }}/{{ kindIs "bool" .Input }}')
    assert kinds.execute({"Input": "x"}) == "true/false/false/false"
    assert kinds.execute({"Input": 2.0}) == "false/true/false/false"
    assert kinds.execute({"Input": None}) == "false/false/true/false"
    assert kinds.execute({"Input": False}) == "false/false/false/true"


def test_a_sensor_too_large_for_its_pod_is_refused():
    """pkg/reconciler/sensor/resource.go: SENSOR_OBJECT = base64(json.Marshal(name, namespace,
    spec)); a string over MAX_ARG_STRLEN (131072) fails the container's exec (argo-events #2146)."""
    sensor = {"metadata": {"name": "big", "namespace": "argo-events"},
              "spec": {"dependencies": [_dep(script="return true -- " + "x" * 99000)], "triggers": []}}
    with pytest.raises(ss.GoError, match="argument list too long"):
        ss.evaluate(sensor, _data({"rule": "r"}))
    sensor["spec"]["dependencies"][0]["filters"]["script"] = "return true -- " + "x" * 97000
    assert ss.evaluate(sensor, _data({"rule": "r"})).failure is None  # under the limit: evaluated


def test_template_variables_follow_text_template_scoping():
    """text/template parse.go (Tree.pipeline: a declaration is `$x :=`, an assignment `$x =`;
    Tree.useVar: "undefined variable" at parse time; parseControl: defer t.popVars) and exec.go
    (state.push, setVar: `=` sets the nearest $x, walkIfOrWith: defer s.pop(s.mark())): a
    declaration prints nothing, `=` reaches a variable declared outside the `if`/`with`, and `$`
    is the data whatever `.` is."""
    tpl = ('{{ $p := list }}{{ with .Input.body }}{{ if eq .rule "a" }}{{ $p = list "x" "1" }}'
           '{{ else if eq .rule "b" }}{{ $p = list "y" "2" }}{{ end }}{{ end }}'
           '{{ index $p 0 }}/{{ index $p 1 }}/{{ $.Input.body.rule }}')
    assert _resolve({"dataTemplate": tpl}, {"rule": "b"}) == ("y/2/b", "String")
    # no branch taken: `index` of the empty list fails, so the parameter cannot be resolved
    with pytest.raises(ss.GoError):
        _resolve({"dataTemplate": tpl}, {"rule": "c"})
    from standin.argo.events.sensors.gotemplate import GoTemplate

    for undefined in ("{{ $q = 1 }}", "{{ $q }}", "{{ if true }}{{ $z := 1 }}{{ end }}{{ $z }}"):
        with pytest.raises(ss.GoError, match="undefined variable"):
            GoTemplate(undefined)
    # a declaration inside a branch shadows; the outer variable is untouched after `end`
    shadow = '{{ $v := "outer" }}{{ if true }}{{ $v := "inner" }}{{ $v }}{{ end }}-{{ $v }}'
    assert _resolve({"dataTemplate": shadow}, {})[0] == "inner-outer"


def _inline_sensor(choice: str) -> dict:
    text = choice + '{"apiVersion":"argoproj.io/v1alpha1","kind":"Workflow","metadata":{"name":"wf-{{ index $p 0 }}",' \
                    '"annotations":{"d":"policy {{ index $p 0 }}."}}}'
    return {
        "metadata": {"name": "s", "namespace": "argo-events"},
        "spec": {"dependencies": [_dep([_string("body.rule", "^.+$")])], "triggers": [{
            "parameters": [{"src": {"dependencyName": "d", "dataTemplate": text}, "dest": "argoWorkflow.source.inline"}],
            "template": {"name": "t", "argoWorkflow": {
                "operation": "submit",
                "source": {"inline": "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  name: placeholder\n"},
                "parameters": [{"src": {"dependencyName": "d", "dataTemplate": "{{ .Input.body.rule }}: "},
                                "dest": "metadata.annotations.d", "operation": "prepend"}],
            }},
        }]},
    }


def test_a_template_parameter_writes_the_inline_workflow_then_resource_parameters_apply():
    """listener.go triggerOne: ApplyTemplateParameters (params.go, sjson on the trigger template)
    before FetchResource; artifacts/inline.go returns source.inline as is and store.go
    decodeAndUnstructure reads it with ghodss/yaml; then ApplyResourceParameters, where `prepend`
    puts the value before the resource's current one (params.go ApplyParams). A template that
    cannot be resolved fails the trigger: nothing is submitted."""
    choice = '{{ $p := list }}{{ if eq .Input.body.rule "a" }}{{ $p = list "one" }}{{ end }}'
    result = ss.evaluate(_inline_sensor(choice), _data({"rule": "a"}), now_ms=1)
    wf = result.triggers[0].workflow
    assert wf["metadata"]["name"] == "wf-one" and wf["metadata"]["annotations"] == {"d": "a: policy one."}
    failed = ss.evaluate(_inline_sensor(choice), _data({"rule": "b"}), now_ms=1)
    assert failed.matched and failed.triggers[0].workflow is None
    assert "failed to apply template parameters" in failed.triggers[0].error
    broken = ss.evaluate(_inline_sensor('{{ $p := list "x" }}['), _data({"rule": "a"}), now_ms=1)
    assert broken.triggers[0].workflow is None and "trigger resource" in broken.triggers[0].error

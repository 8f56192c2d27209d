"""Sensor generation: one Sensor for any number of policies, anchored regexes, escaped GJSON paths, Lua that runs."""

from __future__ import annotations

import re

import lupa
import pytest

from engine import config
from sensors import policies


def _cfg(*policy_list: dict) -> config.ResponseConfig:
    return config.parse({"policies": list(policy_list)})


def test_quote_meta_escapes_exactly_re2_metacharacters():
    assert policies.quote_meta("Redirect STDOUT/STDIN (x) a.b+c*?|[]{}^$\\") == (
        "Redirect STDOUT/STDIN \\(x\\) a\\.b\\+c\\*\\?\\|\\[\\]\\{\\}\\^\\$\\\\"
    )


def test_every_string_filter_is_anchored():
    cfg = config.load("response.yaml")
    for f in policies.sensor(cfg)["spec"]["dependencies"][0]["filters"]["data"]:
        for value in f["value"]:
            re.compile(value)
            assert value.startswith("^") and value.endswith("$"), value  # the tags shape too: the whole array
    assert policies.tags_regex(["a"]).startswith("^") and policies.tags_regex(["a"]).endswith("$")


def _many(n: int, *extra: dict) -> config.ResponseConfig:
    pipelines = ["checkpoint-and-quarantine", "checkpoint-and-delete", "checkpoint-only", "quarantine", "delete"]
    return _cfg(*extra, *[
        {"name": f"p{i}", "match": {"rules": [f"Rule {i}", "Terminal shell in container"], "tags": [f"t{i}"],
                                   "namespaces": [f"ns-{i}"], "output_fields": {"proc.name": [f"bin{i}", str(i)]},
                                   "priority": ">= Notice"},
         "response": pipelines[i % 5], "dry_run": i % 7 == 0}
        for i in range(n)
    ])


def test_one_sensor_whose_size_is_linear_in_the_policies():
    """One Sensor for 8 or 24 policies, and the size per policy does not grow: the Lua and every
    first-match template hold each policy once (the previous generator's Sensor k repeated
    policies 1..k-1 in its Lua)."""
    from engine.yamlout import dump

    sizes = {}
    for n in (8, 24):
        objs = policies.sensors(_many(n))
        assert len(objs) == 1 and objs[0]["metadata"]["name"] == "falco-response"
        assert len(objs[0]["spec"]["dependencies"]) == 1 and len(objs[0]["spec"]["triggers"]) == 1
        sizes[n] = len(dump(objs[0]))
    assert sizes[24] < 3.3 * sizes[8], sizes  # quadratic would be about 9x


def test_a_sensor_never_outgrows_the_sensor_object_environment_variable():
    """argo-events pkg/reconciler/sensor/resource.go puts base64(json.Marshal(name, namespace,
    spec)) in the pod's SENSOR_OBJECT variable; over 128 KiB Linux refuses to start the pod
    (issue #2146). 150 policies: a few Sensors, each under the limit, each after the previous
    one's policies (policy-order annotation), and every policy in exactly one Sensor."""
    import base64
    import json

    cfg = _many(150)
    objs = policies.sensors(cfg)
    assert 1 < len(objs) < 10
    listed = []
    for number, obj in enumerate(objs, 1):
        wire = json.dumps({"metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]},
                           "spec": obj["spec"]}, separators=(",", ":")).encode()
        assert len("SENSOR_OBJECT=") + len(base64.b64encode(wire)) + 1 <= 131072
        assert obj["metadata"]["annotations"]["falco-response.io/policy-order"] == str(number)
        listed += [row[0] for row in json.loads(obj["metadata"]["annotations"]["falco-response.io/policies"])]
    assert listed == [p.name for p in cfg.policies]
    second = objs[1]["spec"]["dependencies"][0]["filters"]["script"]
    first_policies = json.loads(objs[0]["metadata"]["annotations"]["falco-response.io/policies"])
    assert second.count("then return false end -- p") == len(first_policies)  # refuses what the first takes


def test_first_match_wins_across_sensors():
    """Several Sensors (policies split by size), a catch-all policy last: an alert p0 (first
    Sensor) matches fires only the first Sensor, whose templates pick p0; one only p149 and the
    catch-all match fires only the last Sensor, for p149; anything else the catch-all."""
    import json

    from standin.argo.events import sensors as ss

    cfg = _cfg(*[{"name": p.name, "match": p.match.model_dump(exclude_none=True), "response": p.response}
                 for p in _many(150).policies], {"name": "anything", "response": "delete"})
    objs = policies.sensors(cfg)
    assert len(objs) >= 2
    alert = {"rule": "Terminal shell in container", "priority": "Critical", "time": "2023-05-25T13:44:05.123456789Z",
             "source": "syscall", "tags": ["t149"], "hostname": "node-1",
             "output_fields": {"k8s.ns.name": "ns-149", "k8s.pod.name": "pod", "container.id": "0123456789ab",
                               "proc.name": "bin149"}}
    def fired(body):
        results = [ss.evaluate(s, ss.webhook_event_data(json.dumps(body).encode()), now_ms=1) for s in objs]
        return [(r.sensor, r.triggers[0].workflow["metadata"]["labels"]["falco-response.io/policy"]) for r in results if r.matched]
    assert fired(alert) == [(objs[-1]["metadata"]["name"], "p149")]
    first = {**alert, "tags": ["t0"], "output_fields": {**alert["output_fields"], "k8s.ns.name": "ns-0", "proc.name": "bin0"}}
    assert fired(first) == [("falco-response", "p0")]
    assert fired({**alert, "tags": []}) == [(objs[-1]["metadata"]["name"], "anything")]


def test_one_of_matches_whole_values_only():
    rx = re.compile(policies.one_of(["Critical", "Redirect STDOUT/STDIN to Network Connection in Container"]))
    assert rx.search("Critical") and not rx.search("NotCritical") and not rx.search("Critical2")
    assert rx.search("Redirect STDOUT/STDIN to Network Connection in Container")


def test_gjson_paths_escape_dots_and_brackets():
    assert policies.gjson_path("proc.aname[2]") == "body.output_fields.proc\\.aname\\[2\\]"
    assert policies.gjson_path("k8s.pod.name") == "body.output_fields.k8s\\.pod\\.name"


def test_lua_strings_escape_quotes_backslashes_and_control_characters():
    assert policies.lua_string('a"b\\c\n') == '"a\\"b\\\\c\\010"'
    runtime = lupa.LuaRuntime()
    assert runtime.execute("return " + policies.lua_string('q"\\\n]]--')) == 'q"\\\n]]--'


def _lua(script: str, body: dict) -> object:
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)

    def table(value):
        if isinstance(value, dict):
            return runtime.table_from({k: table(v) for k, v in value.items() if v is not None})
        if isinstance(value, list):
            return runtime.table_from([table(v) for v in value])
        return value

    runtime.globals().event = table({"body": body})
    return runtime.execute(script)


def test_lua_passes_alerts_some_policy_takes():
    tricky = "Backdoored library loaded into SSHD (CVE-2024-3094)"
    cfg = _cfg(
        {"name": "first", "match": {"rules": [tricky], "priority": ">= Error"}, "response": "delete"},
        {"name": "second", "match": {"tags": ["container"]}, "response": "quarantine"},
    )
    script = policies.lua_script(cfg)
    base = {"output_fields": {"k8s.ns.name": "shop"}, "hostname": "node-1"}
    assert _lua(script, {**base, "rule": tricky, "priority": "Critical"}) is True  # first
    assert _lua(script, {**base, "rule": tricky, "priority": "Warning", "tags": ["container"]}) is True  # second
    assert _lua(script, {**base, "rule": tricky, "priority": "Warning", "tags": ["other"]}) is False  # none
    assert script.count(tricky) == 1  # each policy once


@pytest.mark.parametrize(
    "body,ok",
    [
        ({"output_fields": {}}, True),  # optional fields absent
        ({"output_fields": {"container.name": "app"}, "hostname": "node-1"}, True),
        ({"output_fields": {}, "hostname": "{{workflow.name}}"}, False),
        ({"output_fields": {"container.name": "a;rm -rf /"}}, False),
        ({"output_fields": {}, "hostname": 7}, False),
        ({"output_fields": "not a table"}, False),
    ],
)
def test_lua_checks_optional_fields(body, ok):
    cfg = _cfg({"name": "only", "response": "delete"})
    assert _lua(policies.lua_script(cfg), body) is ok


@pytest.mark.parametrize(
    "body",
    [
        {"output_fields": {}, "rule": 7},
        {"output_fields": {}, "priority": True},
        {"output_fields": {"k8s.ns.name": 12}},
        {"output_fields": {"container.id": ["0123456789ab"]}},
        {"output_fields": {"proc.name": {"nc": True}}},  # an output field a policy matches on
    ],
)
def test_lua_refuses_values_the_data_filters_would_read_as_text(body):
    """What the data filters read through gjson String() must be a string in Lua too (policy output
    fields: not a table), or the two would disagree on which policy matches."""
    cfg = _cfg({"name": "nc", "match": {"output_fields": {"proc.name": ["nc"]}}, "response": "delete"},
               {"name": "rest", "response": "quarantine"})
    assert _lua(policies.lua_script(cfg), body) is False
    assert _lua(policies.lua_script(cfg), {"output_fields": {"proc.name": "sh"}, "rule": "r"}) is True


def test_the_policy_is_chosen_once_and_alert_text_never_enters_the_workflow_text():
    """The trigger's one template parameter renders the Workflow with the first matching policy's
    values (sensors.policies.choose); every other value comes from resource parameters (sjson
    escapes them). An alert whose fields hold JSON and template syntax changes no key of the
    Workflow: only parameter values carry it."""
    import json

    from standin.argo.events import sensors as ss

    sensor = policies.sensor(config.load("response.yaml"))
    trigger = sensor["spec"]["triggers"][0]
    assert [p["dest"] for p in trigger["parameters"]] == [policies.INLINE]
    assert not any("$p" in (p["src"].get("dataTemplate") or "") for p in trigger["template"]["argoWorkflow"]["parameters"])
    plain = {"rule": "Terminal shell in container", "priority": "Warning", "time": "2023-05-25T13:44:05.123456789Z",
             "source": "syscall", "hostname": "node-1",
             "output_fields": {"k8s.ns.name": "shop", "k8s.pod.name": "web-1", "container.id": "0123456789ab",
                               "proc.cmdline": "sh"}}
    hostile = {**plain, "output_fields": {**plain["output_fields"],
                                          "proc.cmdline": '"}],"spec":{"x":1},"a":[{"{{ $p }}": "{{ index $p 9 }}'}}

    def workflow(body):
        result = ss.evaluate(sensor, ss.webhook_event_data(json.dumps(body).encode()), now_ms=1)
        return result.triggers[0].workflow

    a, b = workflow(plain), workflow(hostile)

    def shape(obj):
        if isinstance(obj, dict):
            return {k: shape(v) for k, v in obj.items() if k != "value"}
        return [shape(v) for v in obj] if isinstance(obj, list) else None

    assert shape(a) == shape(b) and a["metadata"]["labels"][policies.names.LABEL_POLICY] == "interactive-intrusion"
    alert = {p["name"]: p["value"] for p in b["spec"]["arguments"]["parameters"]}["alert"]
    assert json.loads(alert)["output_fields"]["proc.cmdline"] == hostile["output_fields"]["proc.cmdline"]


def test_a_hundred_policies_fit_one_sensor():
    """Issue 9: the Sensor count does not grow with the policies (bench_sensors measures 5 to 100);
    the per-policy cost is one Lua condition, one template condition and five values."""
    objs = policies.sensors(_many(100))
    assert len(objs) == 1
    assert policies.sensor_object_bytes(objs[0]) < policies.SENSOR_OBJECT_MAX_JSON


def test_policy_values_written_into_the_workflow_text_must_be_plain_names():
    with pytest.raises(config.ConfigError, match="cannot be written"):
        policies.policy_tuple('x","y', "delete", False, "isolate-first")

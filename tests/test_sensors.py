"""Sensor generation: anchored regexes, escaped GJSON paths, Lua first-match-wins that runs."""

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
    for index in range(len(cfg.policies)):
        for f in policies.sensor(cfg, index)["spec"]["dependencies"][0]["filters"]["data"]:
            for value in f["value"]:
                re.compile(value)
                assert value.startswith("^") and value.endswith("$"), value  # the tags too: the whole array


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


def test_lua_rejects_alerts_an_earlier_policy_takes():
    tricky = "Backdoored library loaded into SSHD (CVE-2024-3094)"
    cfg = _cfg(
        {"name": "first", "match": {"rules": [tricky], "priority": ">= Error"}, "response": "delete"},
        {"name": "second", "match": {"tags": ["container"]}, "response": "quarantine"},
    )
    script = policies.lua_script(cfg, 1)
    base = {"output_fields": {"k8s.ns.name": "shop"}, "tags": ["container"], "hostname": "node-1"}
    assert _lua(script, {**base, "rule": tricky, "priority": "Critical"}) is False  # first policy's
    assert _lua(script, {**base, "rule": tricky, "priority": "Warning"}) is True  # first does not match
    assert _lua(script, {**base, "rule": "other", "priority": "Critical"}) is True
    assert _lua(policies.lua_script(cfg, 0), {**base, "rule": tricky, "priority": "Critical"}) is True


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
    assert _lua(policies.lua_script(cfg, 0), body) is ok


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
    assert _lua(policies.lua_script(cfg, 1), body) is False
    assert _lua(policies.lua_script(cfg, 1), {"output_fields": {"proc.name": "sh"}, "rule": "r"}) is True

"""The Falcosidekick side, checked against the real charts in ../shared/charts (issue 7, finding 1).

The stand-in (standin/falcosidekick.py) reads the charts at run time: the falco chart hands
`falcosidekick.*` to the falcosidekick subchart (falco/Chart.yaml), whose templates/secrets.yaml
exports `config.webhook.customHeaders` (a string) as WEBHOOK_CUSTOMHEADERS, and whose
templates/deployment.yaml loads `config.existingSecret` after its own Secret with envFrom.
Falcosidekick's config.go (getConfig) splits WEBHOOK_CUSTOMHEADERS on "," then ":" and keeps only
two-part entries; outputs/webhook.go (WebhookPost) sets them with Header.Set.
build/create-secrets.sh is run for real, with `sh`, against a stand-in kubectl the test puts on PATH.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from engine import names
from standin import falcosidekick
from standin.falcosidekick import ChartError

try:  # the webhook EventSource stand-in moved from engine/ to standin/argo/events/ (issue 7, layout)
    from standin.argo.events.sensors import load_eventsource
    from standin.argo.events.webhook import WebhookEndpoint, WebhookServer
except ImportError:  # pragma: no cover - before the move
    from engine.sensorsim import load_eventsource
    from engine.webhook import WebhookEndpoint, WebhookServer

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
SCRIPT = BUILD / "create-secrets.sh"
VALUES = yaml.safe_load((BUILD / "falcosidekick-values.yaml").read_text())
ALERT = json.dumps({"rule": "Terminal shell in container", "priority": "Notice", "output": "x",
                    "time": "2023-05-25T13:44:05.123456789Z", "output_fields": {}}).encode()

# build/falcosidekick-values.yaml before issue 7: a map the chart never reads, with a ${VAR} Helm never expands.
OLD_VALUES = {"falcosidekick": {"enabled": True, "config": {"webhook": {
    "address": "http://falco-eventsource-svc.argo-events.svc.cluster.local:12000/falco",
    "method": "POST",
    "customheaders": {"Authorization": "Bearer ${FALCO_WEBHOOK_TOKEN}"},
    "minimumpriority": "debug",
}}}}
# What Helm renders from OLD_VALUES: the ignored key is simply gone.
OLD_RENDERED = {"falcosidekick": {"enabled": True, "config": {"webhook": {
    k: v for k, v in OLD_VALUES["falcosidekick"]["config"]["webhook"].items() if k != "customheaders"}}}}
INPUTS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret/with+chars="}


def _inputs(tmp_path: Path, **extra: str) -> dict[str, str]:
    ca = tmp_path / "kubelet-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n")
    return {**INPUTS, names.KUBELET_CA_FILE_ENV: str(ca), **extra}


def _secret(run, namespace: str, name: str) -> dict[str, str]:
    obj = run.get("Secret", namespace, name)
    assert obj is not None, f"create-secrets.sh made no Secret {namespace}/{name}"
    return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}


def _settings() -> dict:
    return yaml.safe_load((ROOT / "response.yaml").read_text())["settings"]


# --- (a) every key our values set exists in the charts -------------------------------------------


def test_every_key_of_our_values_exists_in_the_charts():
    """Walks build/falcosidekick-values.yaml under `falcosidekick` through falco/values.yaml and
    falcosidekick/values.yaml (standin.falcosidekick.unknown_keys). On the values before issue 7
    (OLD_VALUES, the customheaders map) it failed with:
    falcosidekick.config.webhook.customheaders: no such key in falcosidekick's values.yaml (0.12.1) nor
    under falcosidekick in the falco chart's values.yaml (9.1.0): Helm ignores it silently"""
    problems = falcosidekick.unknown_keys(VALUES)
    assert not problems, problems[0]


def test_the_old_values_are_refused_naming_the_key():
    problems = falcosidekick.unknown_keys(OLD_VALUES)
    assert len(problems) == 1 and problems[0].startswith("falcosidekick.config.webhook.customheaders: no such key")
    with pytest.raises(ChartError, match=r"^falcosidekick\.config\.webhook\.customheaders: "):
        falcosidekick.container_env(OLD_VALUES)


def test_a_map_where_the_chart_reads_a_string_and_unknown_top_level_keys_are_refused():
    """customHeaders exists but is a string (secrets.yaml pipes it into b64enc): a map fails the render."""
    values = {"falcosidekick": {"enabled": True, "config": {"webhook": {"customHeaders": {"Authorization": "x"}}}},
              "falcosidekik": {"enabled": True}}
    assert falcosidekick.unknown_keys(values) == [
        "falcosidekick.config.webhook.customHeaders: a map, but the chart's values.yaml has a string there "
        "(the templates read that, not a map)",
        "falcosidekik: no such key in the falco chart's values.yaml (9.1.0): Helm ignores it silently",
    ]


def test_our_values_carry_no_token_and_name_the_secret():
    def leaves(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, f"{path}.{key}" if path else key)
        else:
            yield path, node

    for path, value in leaves(VALUES):
        assert "customheaders" not in path.lower(), path
        assert not any(s in str(value) for s in ("Bearer", "${")), path
    assert VALUES["falcosidekick"]["config"]["existingSecret"] == names.FALCOSIDEKICK_WEBHOOK_SECRET


# --- (b) the header reaches the webhook -----------------------------------------------------------


def test_custom_headers_split_as_config_go_does():
    """config.go getConfig: split on ',' then ':'; an entry that is not exactly key:value is dropped."""
    split = falcosidekick.custom_headers
    assert split({"WEBHOOK_CUSTOMHEADERS": "Authorization:Bearer abc"}) == {"Authorization": "Bearer abc"}
    assert split({"WEBHOOK_CUSTOMHEADERS": "Authorization:Bearer a:b"}) == {}
    assert split({"WEBHOOK_CUSTOMHEADERS": "Authorization:Bearer a,b"}) == {"Authorization": "Bearer a"}
    assert split({"WEBHOOK_CUSTOMHEADERS": "X-A:1,X-B:2"}) == {"X-A": "1", "X-B": "2"}
    assert split({"WEBHOOK_CUSTOMHEADERS": ""}) == {} and split({}) == {}
    headers = falcosidekick.request_headers({"WEBHOOK_CUSTOMHEADERS": "authorization: Bearer abc"})
    assert headers["Authorization"] == "Bearer abc"  # Header.Set canonicalises; the wire value is trimmed


def test_the_existing_secret_overrides_the_charts_own_secret_and_must_exist():
    """deployment.yaml: envFrom the chart's Secret (WEBHOOK_CUSTOMHEADERS "" from customHeaders), then
    config.existingSecret; a missing one keeps the pod from starting."""
    with pytest.raises(ChartError, match="CreateContainerConfigError"):
        falcosidekick.container_env(VALUES, [])
    secret = {"kind": "Secret", "metadata": {"name": names.FALCOSIDEKICK_WEBHOOK_SECRET, "namespace": "falco"},
              "data": {"WEBHOOK_CUSTOMHEADERS": base64.b64encode(b"Authorization:Bearer t").decode()}}
    assert falcosidekick.container_env(VALUES, [secret])["WEBHOOK_CUSTOMHEADERS"] == "Authorization:Bearer t"
    with pytest.raises(ChartError, match="does not exist"):
        falcosidekick.container_env(VALUES, [secret], namespace="elsewhere")
    no_secret = {"falcosidekick": {"enabled": True, "config": {"webhook": {"address": "http://x"}}}}
    assert falcosidekick.container_env(no_secret, [secret])["WEBHOOK_CUSTOMHEADERS"] == ""


def test_the_header_reaches_the_webhook(tmp_path):
    """build/create-secrets.sh (token generated) + build/falcosidekick-values.yaml: the stand-in computes
    exactly {"Authorization": "Bearer <token>"}, and the EventSource from build/eventsources, holding
    the token of the Secret the same script made (and serving TLS with its certificate), answers 200;
    the headers of the values before issue 7 carry no Authorization header and get 401 Invalid
    Authorization Header (over the same TLS: tests/test_eventsource_tls.py covers their plain HTTP)."""
    import dataclasses

    from standin.argo.events.webhook import serving_tls

    run = falcosidekick.run_create_secrets(SCRIPT, _inputs(tmp_path), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    settings = _settings()["eventsource"]
    auth = settings.get("auth_secret") or {"name": "falco-webhook-token", "key": "token"}
    token = _secret(run, settings.get("namespace", "argo-events"), auth["name"])[auth["key"]]
    secrets = [o for o in run.objects if o["kind"] == "Secret"]
    env = falcosidekick.container_env(VALUES, secrets, settings.get("falcosidekick_namespace", "falco"))
    assert falcosidekick.custom_headers(env) == {"Authorization": f"Bearer {token}"}
    new = falcosidekick.deployed(VALUES, run.objects, settings.get("falcosidekick_namespace", "falco"))
    assert new.headers == falcosidekick.webhook_output(env).headers and new.ca_pem
    old_env = falcosidekick.container_env(OLD_RENDERED, secrets)
    assert falcosidekick.custom_headers(old_env) == {}
    spec = load_eventsource(BUILD)
    with WebhookServer(WebhookEndpoint(spec, token), tls=serving_tls(BUILD, run.objects)) as server:
        accepted = falcosidekick.send(new, ALERT, dial=server.address)
        refused = falcosidekick.send(dataclasses.replace(new, headers=falcosidekick.request_headers(old_env)), ALERT,
                                     dial=server.address)
    assert (accepted.status_code, accepted.text) == (200, "success")
    assert (refused.status_code, refused.text) == (401, "Invalid Authorization Header")


def test_old_values_give_falcosidekick_no_authorization_header():
    """What the chart renders from OLD_VALUES once the ignored key is dropped: customHeaders stays ""."""
    env = falcosidekick.container_env(OLD_RENDERED)
    assert env["WEBHOOK_CUSTOMHEADERS"] == "" and "Authorization" not in falcosidekick.request_headers(env)


# --- create-secrets.sh, for real --------------------------------------------------------------------


def test_create_secrets_can_be_rerun_and_reuses_the_token(tmp_path):
    """Twice against the same stand-in cluster: the second run reuses the stored token (EventSource and
    Falcosidekick stay in step), every call is `apply` or `create --dry-run=client -o yaml` piped into
    `apply -f -` (a bare create would fail with AlreadyExists), and both runs succeed."""
    first = falcosidekick.run_create_secrets(SCRIPT, _inputs(tmp_path), tmp_path / "1")
    assert first.returncode == 0, first.stderr
    second = falcosidekick.run_create_secrets(SCRIPT, _inputs(tmp_path), tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    assert "reused" in second.stdout and "generated" in first.stdout
    es = _settings()["eventsource"]
    token_at = (es.get("namespace", "argo-events"), "falco-webhook-token")
    sidekick_at = (es.get("falcosidekick_namespace", "falco"), names.FALCOSIDEKICK_WEBHOOK_SECRET)
    token = _secret(first, *token_at)["token"]
    assert token and ":" not in token and "," not in token
    for run in (first, second):
        assert _secret(run, *token_at)["token"] == token
        assert _secret(run, *sidekick_at) == {names.FALCOSIDEKICK_HEADERS_ENV: f"Authorization:Bearer {token}"}
    calls = second.calls[len(first.calls):]
    assert all(c["exit"] == 0 for c in first.calls + calls), [c for c in calls if c["exit"]]
    for i, call in enumerate(calls):
        words, flags = falcosidekick.parse_args(call["argv"])
        if words[0] == "create":
            assert flags.get("dry-run") == "client" and flags.get("output") == "yaml", call["argv"]
            applied = calls[i + 1]
            assert applied["argv"] == ["apply", "-f", "-"] and applied["stdin"] == call["stdout"], call["argv"]
        else:
            assert words[0] in ("apply", "get"), call["argv"]
    # the stored token, and the EventSource's certificate: tls.crt, ca.crt and a cert-manager owner
    assert [falcosidekick.parse_args(c["argv"])[0][0] for c in calls].count("get") == 4
    tls_at = (es.get("namespace", "argo-events"), "falco-eventsource-tls")
    assert _secret(second, *tls_at) == _secret(first, *tls_at), "the certificate is reused, not replaced"
    assert "EventSource TLS certificate reused" in second.stdout and "certificate generated" in first.stdout


def test_a_bare_create_would_fail_on_the_second_run(tmp_path):
    """The stand-in kubectl is as strict as the real one: the pre-issue-7 line fails when re-run."""
    script = tmp_path / "old.sh"
    script.write_text("set -eu\nkubectl -n argo-events create secret generic falco-webhook-token "
                      '--from-literal=token="$FALCO_WEBHOOK_TOKEN"\n')
    env = {"FALCO_WEBHOOK_TOKEN": "t"}
    first = falcosidekick.run_create_secrets(script, env, tmp_path / "1")
    second = falcosidekick.run_create_secrets(script, env, tmp_path / "2", state=first.state)
    assert first.returncode == 0 and second.returncode == 1
    assert second.stderr.strip() == 'Error from server (AlreadyExists): secrets "falco-webhook-token" already exists'


def test_a_given_token_replaces_the_stored_one_everywhere(tmp_path):
    first = falcosidekick.run_create_secrets(SCRIPT, _inputs(tmp_path), tmp_path / "1")
    second = falcosidekick.run_create_secrets(SCRIPT, _inputs(tmp_path, FALCO_WEBHOOK_TOKEN="n3w-T0ken_x"),
                                              tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    assert _secret(second, "argo-events", "falco-webhook-token") == {"token": "n3w-T0ken_x"}
    assert _secret(second, "falco", names.FALCOSIDEKICK_WEBHOOK_SECRET) == {
        names.FALCOSIDEKICK_HEADERS_ENV: "Authorization:Bearer n3w-T0ken_x"}


@pytest.mark.parametrize("token", ["a:b", "a,b", "a b"])
def test_a_token_falcosidekick_would_split_is_refused_before_any_kubectl_call(tmp_path, token):
    run = falcosidekick.run_create_secrets(SCRIPT, _inputs(tmp_path, FALCO_WEBHOOK_TOKEN=token), tmp_path / "r")
    assert run.returncode == 2 and run.stdout == "" and len(run.stderr.strip().splitlines()) == 1
    assert "FALCO_WEBHOOK_TOKEN must not contain ':', ','" in run.stderr
    assert run.calls == []


def test_missing_inputs_are_refused_before_any_kubectl_call(tmp_path):
    run = falcosidekick.run_create_secrets(SCRIPT, {}, tmp_path / "r")
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and run.calls == []
    assert run.stderr.startswith("create-secrets.sh: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


def test_the_falco_namespace_is_created_and_secrets_need_their_namespace(tmp_path):
    """Step 3 runs before Falco's Helm install: the script must make the Falco namespace itself (the
    stand-in kubectl refuses a Secret in a missing namespace, like the API server)."""
    state = falcosidekick.new_state(["argo-events"])
    code, _, _ = falcosidekick.kubectl(["-n", "falco", "get", "secret", "x", "-o", "jsonpath={.data.a}",
                                        "--ignore-not-found"], "", state)
    assert code == 0
    with pytest.raises(Exception, match='namespaces "falco" not found'):
        falcosidekick.kubectl(["apply", "-f", "-"], json.dumps(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "falco"}}), state)
    run = falcosidekick.run_create_secrets(SCRIPT, _inputs(tmp_path), tmp_path / "r")
    assert run.returncode == 0 and run.get("Namespace", None, "falco") is not None


def test_nothing_create_secrets_makes_is_pruned_by_the_readme_apply(tmp_path):
    """The README's apply prunes objects labelled part-of=falco-response that build/ lacks: the script's
    objects must not carry that label unless build/ has them too (the response Namespace)."""
    run = falcosidekick.run_create_secrets(SCRIPT, _inputs(tmp_path), tmp_path / "r")
    built = {(o["kind"], o["metadata"]["name"]) for o in (yaml.safe_load(p.read_text()) for p in BUILD.rglob("*.yaml"))
             if isinstance(o, dict) and "metadata" in o}
    labelled = [(o["kind"], o["metadata"]["name"]) for o in run.objects
                if (o["metadata"].get("labels") or {}).get(names.PART_OF) == names.APP]
    assert labelled and all(ref in built for ref in labelled), labelled


def test_the_kubelet_ca_configmap_is_made_only_for_a_custom_bundle(tmp_path):
    """kube-root-ca.crt is in every namespace already; another ConfigMap must be filled from KUBELET_CA_FILE."""
    from engine import build, config

    def script_for(tls: dict) -> str:
        doc = yaml.safe_load((ROOT / "response.yaml").read_text())
        doc["settings"]["checkpoint"]["kubelet_tls"] = tls
        path = tmp_path / f"response-{len(tls)}-{sorted(tls)[0]}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return build.secret_commands(config.load(path))

    assert "create configmap kubelet" not in script_for({"ca_bundle_configmap": names.KUBE_ROOT_CA_CONFIGMAP})
    assert "create configmap kube-root-ca.crt" not in script_for({"ca_bundle_configmap": names.KUBE_ROOT_CA_CONFIGMAP})
    assert "create configmap kubelet-serving-ca --from-file=ca.crt=" in script_for(
        {"ca_bundle_configmap": "kubelet-serving-ca", "ca_bundle_key": "ca.crt"})


# --- (c) the demo's POST carries exactly that header ----------------------------------------------


def test_the_demo_posts_exactly_the_header_falcosidekick_would_send(tmp_path):
    """engine.demo.Demo.post builds its headers through standin.falcosidekick from build/: the request the
    stand-in EventSource received carries Authorization "Bearer <the demo's token>" and nothing else of
    ours (beyond what net/http adds: Host, Content-Length, Accept-Encoding)."""
    from engine.demo import Demo

    transport = {"Host", "Content-Length", "Accept-Encoding"}
    with Demo(BUILD, workdir=tmp_path / "demo") as demo:
        accepted = demo.post(ALERT, demo.token)
        denied = demo.post(ALERT, None)
        expected = falcosidekick.from_build(BUILD, demo.token, tmp_path / "check").headers
        received = [dict(headers) for headers in demo.webhook.requests]
        assert demo.webhook.url.startswith("https://")  # and verified: tests/test_eventsource_tls.py
    assert (accepted.status_code, denied.status_code) == (200, 401)
    assert {k: v for k, v in received[0].items() if k not in transport} == expected
    assert received[0]["Authorization"] == f"Bearer {demo.token}"
    assert {k for k in expected if k not in ("Content-Type", "User-Agent")} == {"Authorization"}
    assert "Authorization" not in received[1]


def test_the_demo_posts_what_build_says_even_when_it_is_wrong(tmp_path):
    """A build/ whose create-secrets.sh writes another scheme makes the demo's POST fail: the header
    comes from build/, not from the demo's own idea of it."""
    import shutil

    from engine.demo import Demo

    copy = tmp_path / "build"
    shutil.copytree(BUILD, copy)
    script = copy / "create-secrets.sh"
    text = script.read_text()
    assert "Authorization:Bearer $token" in text
    script.write_text(text.replace("Authorization:Bearer $token", "Authorization:Token $token"))
    with Demo(copy, workdir=tmp_path / "demo") as demo:
        answer = demo.post(ALERT, demo.token)
        assert demo.falcosidekick(demo.token).headers["Authorization"] == f"Token {demo.token}"
    assert (answer.status_code, answer.text) == (401, "Invalid Authorization Header")

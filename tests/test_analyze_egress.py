"""The analyze step's egress NetworkPolicy (engine/egress.py, issue 10 item 2).

Upstream: Argo copies a template's `metadata.labels` onto the Pod it creates
(workflow/controller/workflowpod.go createWorkflowPod -> podBuilder.build -> addMetadata, after the
workflow's podMetadata), as the stand-in's standin/argo/workflows/pods.py build_pod does; a
NetworkPolicy's podSelector is a metav1.LabelSelector (standin.kube.selectors.label_selector_matches).
argoexec's wait container writes outputs as a WorkflowTaskResult through the API server
(workflow/executor/taskresult.go), so the API server's endpoints stay reachable.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from engine import build as build_mod, cli, config, names
from engine.demo import Demo, default_event
from standin.argo import workflows
from standin.kube.selectors import label_selector_matches

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
POLICY = BUILD / "network" / f"networkpolicy-{names.ANALYZE_EGRESS_NETWORKPOLICY}.yaml"


def _policy() -> dict:
    return yaml.safe_load(POLICY.read_text())


def _settings(**evidence) -> config.Settings:
    data = yaml.safe_load((ROOT / "response.yaml").read_text())
    data["settings"]["evidence"].update(evidence)
    return config.parse(data).settings


def _pods_of_every_template() -> list[tuple[str, dict]]:
    """(template name, Pod) for every step template of every WorkflowTemplate in build/, built as
    the stand-in controller builds them (pods.build_pod), the WorkflowTemplate's spec as the workflow's."""
    out = []
    for path in sorted((BUILD / "pipelines").glob("workflowtemplate-*.yaml")):
        wt = yaml.safe_load(path.read_text())
        wf = workflows.WorkflowContext(name="wf", namespace=wt["metadata"]["namespace"], uid="u-1", spec=wt["spec"])
        for t in wt["spec"]["templates"]:
            if "container" in t:
                pod = workflows.build_pod(wf, f"wf.{t['name']}", "wf-1", t, t, False, 0, lambda account: f"{account}.token")
                out.append((t["name"], pod))
    return out


def test_policy_selects_exactly_the_analyze_pods():
    policy = _policy()
    pods = _pods_of_every_template()
    selected = {name for name, pod in pods if label_selector_matches(policy["spec"]["podSelector"], pod["metadata"]["labels"])}
    assert selected == {"analyze"}
    assert {name for name, _ in pods} > {"analyze", "copy", "verify", "checkpoint", "quarantine", "delete", "report"}
    assert policy["metadata"]["namespace"] == config.load(ROOT / "response.yaml").settings.namespace
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and policy["spec"]["ingress"] == []


def test_policy_selects_the_analyze_pod_of_a_response_run(tmp_path):
    """A whole response on the stand-in cluster: the analyze pod the runner created, and no other."""
    out = io.StringIO()
    with Demo(BUILD, workdir=tmp_path, out=out) as demo:
        demo.run(default_event().read_bytes(), source="test")
        pods = {p["metadata"]["annotations"]["workflows.argoproj.io/node-name"].rpartition(".")[2].split("(")[0]: p
                for p in demo.kube.list("pods", demo_namespace())}
    selector = _policy()["spec"]["podSelector"]
    assert "analyze" in pods and len(pods) > 2, out.getvalue()
    assert {n for n, p in pods.items() if label_selector_matches(selector, p["metadata"]["labels"])} == {"analyze"}


def demo_namespace() -> str:
    return config.load(ROOT / "response.yaml").settings.namespace


def test_egress_only_dns_store_and_apiserver_and_metadata_is_cut_out():
    dns, store, apiserver = _policy()["spec"]["egress"]
    assert dns == {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    assert store["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(names.EGRESS_EXCEPT_DEFAULT)}}]
    assert "169.254.0.0/16" in store["to"][0]["ipBlock"]["except"]
    assert store["ports"] == [{"protocol": "TCP", "port": 443}]
    assert all("except" not in peer["ipBlock"] for peer in apiserver["to"])
    assert {p["port"] for p in apiserver["ports"]} == {443, 6443}


def test_endpoint_port_and_an_in_cluster_store():
    from engine import egress

    minio = egress.analyze_networkpolicy(_settings(endpoint="http://minio.storage.svc:9000", egress_cidrs=["10.244.0.0/16"]))
    store = minio["spec"]["egress"][1]
    assert store["ports"] == [{"protocol": "TCP", "port": 9000}]
    assert store["to"] == [{"ipBlock": {"cidr": "10.244.0.0/16"}}]  # 10.0.0.0/8 is not inside it: not an except
    assert egress.analyze_networkpolicy(_settings(endpoint="http://minio:80"))["spec"]["egress"][1]["ports"][0]["port"] == 80
    assert egress.analyze_networkpolicy(_settings(endpoint="https://s3.example"))["spec"]["egress"][1]["ports"][0]["port"] == 443
    assert egress.analyze_networkpolicy(_settings(endpoint="https://s3.example:9000", egress_port=8443))[
        "spec"]["egress"][1]["ports"][0]["port"] == 8443
    assert len(egress.analyze_networkpolicy(_settings(apiserver_cidrs=[]))["spec"]["egress"]) == 2


@pytest.mark.parametrize("key, value, why", [
    ("egress_cidrs", ["10.0.0.1/8"], "'10.0.0.1/8' is not a CIDR"),
    ("egress_except", ["169.254.0.0/33"], "'169.254.0.0/33' is not a CIDR"),
    ("apiserver_cidrs", ["apiserver"], "'apiserver' is not a CIDR"),
    ("egress_cidrs", [], "egress_cidrs needs at least one CIDR"),
])
def test_a_bad_cidr_is_one_line_naming_the_key(tmp_path, capsys, key, value, why):
    data = yaml.safe_load((ROOT / "response.yaml").read_text())
    data["settings"]["evidence"][key] = value
    bad = tmp_path / "response.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    assert cli.main(["build", "--policy-file", str(bad), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "settings.evidence" in err and why in err, err
    assert key in err or why.startswith(key)
    assert not (tmp_path / "b").exists()


def test_openshift_dns_is_its_own_namespace_and_port():
    from engine import egress

    settings = _settings()
    dns = egress.analyze_networkpolicy(settings.model_copy(update={"platform": "openshift"}))["spec"]["egress"][0]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-dns"}}}]
    assert {p["port"] for p in dns["ports"]} == {5353}


def test_policy_is_in_the_build():
    cfg = config.load(ROOT / "response.yaml")
    assert f"network/networkpolicy-{names.ANALYZE_EGRESS_NETWORKPOLICY}.yaml" in build_mod.manifests(cfg)

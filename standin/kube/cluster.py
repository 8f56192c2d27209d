"""FakeKube: the facade tests and the demo use, tying store, API server, kubelets and faults together."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from standin.kube.admission import ensure_default_service_account, populate_token_secrets
from standin.kube.apiserver import ApiServer
from standin.kube.auth import ADMIN, Tokens, User
from standin.kube.faults import Faults, api_fault, kubelet_fault
from standin.kube.kubelet import CHECKPOINT_BEHAVIOURS, KUBELET_CHECKPOINT_DIR, Kubelet, NodeState
from standin.kube.manifests import node_addresses, node_manifest, owner_reference, pod_manifest
from standin.kube.pki import KubeletPki, publish_root_ca, write_private
from standin.kube.podstart import Kubelet as PodStarter
from standin.kube.podstart import PodStart
from standin.kube.resources import ADMIN_NETWORK_POLICY, ResourceType
from standin.kube.serving import Server
from standin.kube.stamps import hex64, timestamp
from standin.kube.store import Store


class FakeKube:
    """The stand-in cluster: API server, kubelets, state helpers and fault injection.

    Direct helpers (add_*, get, list, delete) change state without HTTP, for test setup and for
    events the code under test must survive (a pod vanishing); everything the code under test
    does goes over HTTP and is logged in `requests`.
    """

    def __init__(self, workdir: Path, token: str = "standin-token") -> None:
        self.workdir = Path(workdir)
        self.token = token  # the cluster admin's (system:masters): test set-up and Argo's controller
        self.tokens = Tokens()
        self.tokens.add(token, ADMIN)
        self.store = Store()
        self.faults = Faults()
        self.deletions: list[dict] = []  # every API DELETE: plural, namespace, name, gracePeriodSeconds, ...
        self._nodes: dict[str, NodeState] = {}
        self._kubelets: dict[str, Kubelet] = {}
        self._api: Server | None = None
        self._pki: KubeletPki | None = None
        self._ips = itertools.count(2)
        self._logs: dict[str, bytes] = {}  # container id -> its output (pods/log: standin/kube/logs.py)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeKube:
        if self._api is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pki = KubeletPki(self.workdir / "pki")
        self._pods = PodStarter(self.store, self.tokens, self._host_paths)
        api = ApiServer(self.store, self.tokens, self._kubelets, self.deletions, self._after_write, self._logs)
        self._api = Server(lambda request: self.faults.serve(request, api.handle, api_fault)).launch()
        self._write_kubeconfig()
        return self

    def stop(self) -> None:
        servers = [n.server for n in self._nodes.values() if n.server] + ([self._api] if self._api else [])
        for server in servers:
            server.halt()
        for node in self._nodes.values():
            node.server = None
        self._api = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _running(self) -> Server:
        if self._api is None:
            raise RuntimeError("FakeKube is not started: call start() first")
        return self._api

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._running().port}"

    @property
    def kubeconfig(self) -> Path:
        self._running()
        return self.workdir / "kubeconfig"

    @property
    def kubelet_ca(self) -> Path:
        self._running()
        assert self._pki is not None
        return self._pki.ca_path

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request served, API server and kubelets alike."""
        return self.faults.requests

    def env(self, token: str | None = None) -> dict[str, str]:
        """KUBECONFIG for a subprocess: the admin's, or one presenting `token`."""
        return {"KUBECONFIG": str(self.kubeconfig if token is None else self.kubeconfig_for(token))}

    def kubeconfig_for(self, token: str) -> Path:
        """A kubeconfig presenting `token` (written once per token, 0600)."""
        self._running()
        path = self.workdir / "kubeconfigs" / hashlib.sha256(token.encode()).hexdigest()[:32]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write_kubeconfig(path, token)
        return path

    def _write_kubeconfig(self, path: Path | None = None, token: str | None = None) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": token or self.token}}],
            "contexts": [
                {"name": "standin", "context": {"cluster": "standin", "user": "standin", "namespace": "default"}}
            ],
            "current-context": "standin",
        }
        # JSON, which is YAML too (kubectl and the kubernetes client read it): the steps parse
        # kubeconfigs as JSON only, to keep a YAML parser off their start-up (steps/kube.py).
        write_private(path or self.workdir / "kubeconfig", json.dumps(config, indent=2).encode())

    # --- identities --------------------------------------------------------------------------

    def service_account_token(self, namespace: str, name: str) -> str:
        """A token for an existing ServiceAccount (TokenRequest), valid while the account exists."""
        return self._pods.token_for(namespace, name)

    def identity(self, token: str) -> User | None:
        """Whom the API server takes `token` for (a TokenReview)."""
        return self.tokens.authenticate(token)

    def _after_write(self, plural: str, namespace: str | None) -> None:
        """The controllers that react to writes: default ServiceAccount, kube-root-ca.crt, token Secrets.
        The root-ca-cert-publisher (rootcacertpublisher/publisher.go) syncs a ConfigMap's own namespace
        (configMapUpdated/configMapDeleted) and a Namespace's (namespaceAdded)."""
        if plural == "namespaces":
            for ns in self.store.list(self.store.types["namespaces"]):
                ensure_default_service_account(self.store, ns["metadata"]["name"])
                publish_root_ca(self.store, ns["metadata"]["name"], self._cluster_ca_pem())
        if plural == "configmaps" and namespace:
            publish_root_ca(self.store, namespace, self._cluster_ca_pem())
        if plural in ("secrets", "serviceaccounts"):
            populate_token_secrets(self.store, self.tokens, self._cluster_ca_pem)

    def _cluster_ca_pem(self) -> str:
        assert self._pki is not None
        return self._pki.ca_pem

    # --- state helpers -----------------------------------------------------------------------

    def _type(self, plural: str) -> ResourceType:
        return self.store.resource_type(plural)

    def create(self, plural: str, obj: dict) -> dict:
        """Store any served object as given (status kept), with the API's names, defaults, checks."""
        rt = self._type(plural)
        namespace = (obj.get("metadata") or {}).get("namespace") if rt.namespaced else None
        return self.store.create(rt, namespace, obj, from_api=False)

    def add_namespace(self, name: str) -> dict:
        existing = self.get("namespaces", None, name)
        created = existing or self.create("namespaces", {"metadata": {"name": name}})
        self._after_write("namespaces", None)
        return created

    def apply(self, objects: list[dict]) -> list[dict]:
        """`kubectl apply` as the cluster admin: create, or replace what is there (no admission).
        A namespaced object's namespace is created first if missing (Helm's --create-namespace)."""
        out = []
        for obj in objects:
            rt = next((t for t in self.store.types.values() if t.kind == obj.get("kind")), None)
            if rt is None:
                raise KeyError(f"the stand-in serves no kind {obj.get('kind')!r}")
            meta = obj.get("metadata") or {}
            namespace = meta.get("namespace") if rt.namespaced else None
            if rt.namespaced:
                namespace = namespace or "default"
                self.add_namespace(namespace)
            current = self.store.find(rt, namespace, meta.get("name", ""))
            if current is None:
                body = {**obj, "metadata": {**meta, "namespace": namespace} if rt.namespaced else dict(meta)}
                out.append(self.store.create(rt, namespace, body, from_api=False))
            else:
                body = {**obj, "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}}
                out.append(self.store.update(rt, namespace, meta["name"], body))
            self._after_write(rt.plural, namespace)
        return out

    def apply_build(
        self, build_dir: str | Path, folders: tuple[str, ...] = ("namespaces", "rbac", "admission")
    ) -> list[dict]:
        """Apply the generated objects of build/ that the stand-in serves (namespaces, RBAC, and the
        ValidatingAdmissionPolicies the API server then evaluates on every write, as a real install has)."""
        objects = []
        for folder in folders:
            for path in sorted((Path(build_dir) / folder).glob("*.yaml")):
                objects += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        # kustomize's legacy order (api/resid/gvk.go orderFirst): accounts before their token Secrets.
        order = ["Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
                 "ConfigMap", "Secret"]
        objects.sort(key=lambda o: order.index(o["kind"]) if o.get("kind") in order else len(order))
        return self.apply(objects)

    def add_node(
        self, name: str, tls: str = "cluster-ca", tcp_established: bool = False, runtime: str = "containerd"
    ) -> dict:
        """A Ready node with its own HTTPS kubelet (InternalIP 127.0.0.1, kubeletEndpoint port).

        `tls`: "cluster-ca" (serverTLSBootstrap: a certificate from the cluster CA naming the
        node's hostname and addresses) or "self-signed" (the kubeadm/kind default: its own
        throwaway CA, only the hostname); see standin.kube.pki. `tcp_established`: the node's
        /etc/criu/runc.conf says `tcp-established`, so CRIU dumps established TCP connections.
        `runtime`: "containerd" (2.0) or "cri-o" (1.31), both with runc: the texts of the
        runtime's checkpoint refusals and nodeInfo.containerRuntimeVersion (standin.kube.kubelet).
        """
        self._running()
        if name in self._nodes:
            raise ValueError(f"node {name!r} already exists")
        assert self._pki is not None
        directory = self.workdir / "nodes" / name / "checkpoints"
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        node = NodeState(name, directory, tls=tls, tcp_established=bool(tcp_established), runtime=runtime)
        kubelet = Kubelet(self.store, node, self.tokens)
        app = lambda request: self.faults.serve(request, kubelet.handle, kubelet_fault)  # noqa: E731
        node.server = Server(app, self._pki.server_context(name, tls, node_addresses(name))).launch()
        self._nodes[name], self._kubelets[name] = node, kubelet
        return self.create("nodes", node_manifest(name, node.port, len(self._nodes), node.runtime))

    def add_pod(
        self,
        namespace: str,
        name: str,
        node: str,
        containers: list[dict] | None = None,
        labels: dict | None = None,
        owner: dict | None = None,
        host_network: bool = False,
    ) -> dict:
        """A Running pod on `node`; each container {"name", "image", "id"?} gets a containerd id.

        `"tcp_established": True` in a container: its processes hold an established TCP
        connection (a reverse shell), which CRIU refuses to dump unless the node allows it.
        `host_network`: spec.hostNetwork true (the pod shares its node's network namespace)."""
        given = containers or [{"name": "app", "image": "nginx:1.27"}]
        connected = [c["name"] for c in given if c.get("tcp_established")]
        containers = [self._container(c) for c in given]
        if owner and not owner.get("uid"):
            owner = {**owner, "uid": self._owner_uid(namespace, owner)}
        ip = next(self._ips)
        runtime = self._nodes[node].runtime if node in self._nodes else "containerd"
        manifest = pod_manifest(
            namespace, name, node, containers, labels or {}, owner, f"10.244.{ip // 250}.{ip % 250 + 1}", runtime,
            host_network=host_network,
        )
        created = self.create("pods", manifest)
        for container in connected:
            self.set_tcp_connection(namespace, name, container)
        return created

    @staticmethod
    def _container(container: dict) -> dict:
        cid = container.get("id") or hex64()
        if not re.fullmatch(r"[0-9a-f]{64}", cid):
            raise ValueError(f"container id must be 64 lowercase hex characters, got {cid!r}")
        return {"name": container["name"], "image": container.get("image", "nginx:1.27"), "id": cid}

    def _owner_uid(self, namespace: str, owner: dict) -> str:
        plural = {"ReplicaSet": "replicasets", "Deployment": "deployments", "Workflow": "workflows",
                  "StatefulSet": "statefulsets", "DaemonSet": "daemonsets", "Job": "jobs", "CronJob": "cronjobs"}.get(owner["kind"])
        existing = self.get(plural, namespace, owner["name"]) if plural else None
        return existing["metadata"]["uid"] if existing else str(uuid.uuid4())

    def add_replicaset(
        self, namespace: str, name: str, selector: dict, labels: dict | None = None, owner: dict | None = None
    ) -> dict:
        labels = dict(labels or selector)
        metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
        if owner:
            metadata["ownerReferences"] = [
                owner_reference({**owner, "uid": owner.get("uid") or self._owner_uid(namespace, owner)})
            ]
        return self.create(
            "replicasets",
            {
                "metadata": metadata,
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": dict(selector)},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
                    },
                },
                "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1},
            },
        )

    def add_service(self, namespace: str, name: str, selector: dict) -> dict:
        return self.create(
            "services",
            {
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "selector": dict(selector),
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}],
                },
            },
        )

    def add_resource_type(self, group: str, version: str, plural: str, kind: str, namespaced: bool = True) -> None:
        """Serve one more custom resource (CRD-like: no strategic merge, PUT needs resourceVersion)."""
        self.store.register(
            ResourceType(group, version, plural, kind, namespaced, builtin=False, unconditional_update=False)
        )

    def serve_admin_network_policies(self) -> None:
        """Install network-policy-api's AdminNetworkPolicy CRD: the API server serves it from now on
        (validated as its OpenAPI schema says, standin.kube.validation); before, a request is a 404."""
        self.store.register(ADMIN_NETWORK_POLICY)

    def get(self, plural: str, namespace: str | None, name: str) -> dict | None:
        return self.store.find(self._type(plural), namespace, name)

    def list(self, plural: str, namespace: str | None = None) -> list[dict]:
        return self.store.list(self._type(plural), namespace)

    def delete(self, plural: str, namespace: str | None, name: str) -> bool:
        """Make an object vanish (no API rules, not logged); True if it existed."""
        return self.store.remove(self._type(plural), namespace, name)

    # --- pods --------------------------------------------------------------------------------

    def start_pod(self, namespace: str, name: str, node: str | None = None) -> PodStart:
        """Bind the pod to `node` and start it as the kubelet would (raises PodPending)."""
        return self._pods.start(namespace, name, node)

    def set_pod_phase(self, namespace: str, name: str, phase: str) -> None:
        self._pods.set_phase(namespace, name, phase)

    def restart_container(self, namespace: str, pod: str, container: str) -> str:
        """The container's PID 1 died (killed: exit 137) and the kubelet started a new container
        in its place: a new containerID, restartCount + 1, lastState.terminated naming the old id
        (pkg/kubelet/kuberuntime/kuberuntime_container.go, the status the kubelet converts). The
        new container holds no TCP connection of the old one. Returns the new full id."""
        found, entry = self._container_status(namespace, pod, container)
        status = found["status"]
        runtime, _, old_id = entry["containerID"].partition("://")
        new_id, now = hex64(), timestamp()
        entry["lastState"] = {
            "terminated": {
                "exitCode": 137,
                "reason": "Error",
                "startedAt": ((entry.get("state") or {}).get("running") or {}).get("startedAt") or now,
                "finishedAt": now,
                "containerID": entry["containerID"],
            }
        }
        entry.update(containerID=f"{runtime}://{new_id}", restartCount=int(entry.get("restartCount") or 0) + 1,
                     state={"running": {"startedAt": now}}, ready=True, started=True)  # fmt: skip
        self.store.put_status(self._type("pods"), namespace, pod, status)
        node = (found.get("spec") or {}).get("nodeName")
        if node in self._nodes:
            self._nodes[node].connected.discard(old_id)
        return new_id

    def write_log(self, namespace: str, pod: str, container: str, text: str | bytes, previous: bool = False) -> None:
        """The container (its current instance, or with `previous` the one lastState.terminated
        names) wrote `text` to stdout/stderr: appended to what GET pods/<pod>/log serves."""
        _, entry = self._container_status(namespace, pod, container)
        source = ((entry.get("lastState") or {}).get("terminated") or {}) if previous else entry
        cid = (source.get("containerID") or "").partition("://")[2]
        if not cid:
            raise KeyError(f"container {container!r} of {namespace}/{pod} has no {'previous ' if previous else ''}instance")
        data = text.encode() if isinstance(text, str) else bytes(text)
        self._logs[cid] = self._logs.get(cid, b"") + data

    def replace_pod(self, namespace: str, name: str) -> dict:
        """The pod was deleted and its controller made a new one with the same name (a StatefulSet
        does; a bare pod re-applied does): same node, containers, labels and owner, a new UID and
        new container ids. Returns the new pod."""
        old = self.get("pods", namespace, name)
        if old is None:
            raise KeyError(f"no pod {namespace}/{name}")
        self.delete("pods", namespace, name)
        meta, spec = old["metadata"], old.get("spec") or {}
        refs = meta.get("ownerReferences") or []
        owner = {k: refs[0][k] for k in ("apiVersion", "kind", "name", "uid")} if refs else None
        containers = [{"name": c["name"], "image": c.get("image", "nginx:1.27")} for c in spec.get("containers") or []]
        return self.add_pod(namespace, name, spec.get("nodeName"), containers, meta.get("labels"), owner)

    def _container_status(self, namespace: str, pod: str, container: str) -> tuple[dict, dict]:
        """The pod and its container's entry in status.containerStatuses (KeyError if either is missing)."""
        found = self.get("pods", namespace, pod)
        if found is None:
            raise KeyError(f"no pod {namespace}/{pod}")
        statuses = (found.get("status") or {}).get("containerStatuses") or []
        entry = next((s for s in statuses if s.get("name") == container), None)
        if entry is None:
            raise KeyError(f"pod {namespace}/{pod} has no container {container!r}")
        return found, entry

    def _host_paths(self, node: str) -> dict[str, Path]:
        return {KUBELET_CHECKPOINT_DIR: self._node(node).checkpoint_dir}

    # --- nodes and checkpoints ---------------------------------------------------------------

    def _node(self, node: str) -> NodeState:
        try:
            return self._nodes[node]
        except KeyError:
            raise KeyError(f"no node {node!r}; add_node() first") from None

    def checkpoint_dir(self, node: str) -> Path:
        return self._node(node).checkpoint_dir

    def kubelet_url(self, node: str) -> str:
        return f"https://127.0.0.1:{self._node(node).port}"

    def set_checkpoint_behaviour(self, node: str, behaviour: str) -> None:
        """ok; gate-off (404: ContainerCheckpoint feature gate off); unsupported (500: runtime)."""
        if behaviour not in CHECKPOINT_BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {CHECKPOINT_BEHAVIOURS}, got {behaviour!r}")
        self._node(node).behaviour = behaviour

    def set_checkpoint_padding(self, node: str, nbytes: int) -> None:
        """Add `nbytes` of random data (checkpoint/pages-2.img) to every archive from that node."""
        self._node(node).padding = max(0, int(nbytes))

    def set_tcp_connection(self, namespace: str, pod: str, container: str, connected: bool = True) -> None:
        """The container's processes open (or close) an established TCP connection."""
        found, status = self._container_status(namespace, pod, container)
        container_id = status["containerID"].partition("://")[2]
        ids = self._node(found["spec"]["nodeName"]).connected
        (ids.add if connected else ids.discard)(container_id)

    def set_criu_tcp_established(self, node: str, enabled: bool) -> None:
        """Add (or remove) the line `tcp-established` in the node's /etc/criu/runc.conf."""
        self._node(node).tcp_established = bool(enabled)

    def node_ca(self, node: str) -> Path:
        """The throwaway CA of a self-signed kubelet (kubelet.crt's second certificate)."""
        self._node(node)
        assert self._pki is not None
        return self._pki.node_ca_path(node)

    # --- fault injection ---------------------------------------------------------------------

    def fail_next(self, status: int, count: int = 1, method: str | None = None, path: str | None = None) -> None:
        """The next `count` requests matching method and `path` (a regex searched in the URL
        path) get `status`: a Status body from the API server, plain text from a kubelet."""
        self.faults.fail_next(status, count, method, path)

    def set_latency(self, seconds: float, path: str | None = None) -> None:
        """Delay requests whose path matches (`None`: all); 0 removes that rule."""
        self.faults.set_latency(seconds, path)

    def on_request(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        """Run `callback(method, path)` before each request; returns a function that removes it."""
        return self.faults.on_request(callback)

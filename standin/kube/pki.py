"""Certificates: the cluster CA and each kubelet's serving certificate, made the two ways real
clusters make it.

- `cluster-ca` (kubelet `serverTLSBootstrap: true`, EKS/GKE, kubeadm with a CSR approver): the
  kubelet's certificate manager (pkg/kubelet/certificate/kubelet.go,
  NewKubeletServerCertificateManager) asks for an ECDSA P-256 key's certificate with subject
  `system:node:<node>` / `system:nodes`, DNS names from the node's Hostname/InternalDNS/ExternalDNS
  addresses and IPs from its InternalIP/ExternalIP addresses (addressesToHostnamesAndIPs); the
  `kubernetes.io/kubelet-serving` signer of kube-controller-manager signs it with the cluster CA.
- `self-signed` (the kubeadm and kind default: no serverTLSBootstrap, no tlsCertFile): at start-up
  the kubelet (cmd/kubelet/app/server.go, InitializeTLS) calls client-go's
  `certutil.GenerateSelfSignedCertKey(hostName, nil, nil)` (k8s.io/client-go/util/cert/cert.go):
  a throwaway RSA CA `<host>-ca@<unix time>` and a certificate `<host>@<unix time>` whose only
  subject alternative name is the host (a DNS name, or an IP if the host parses as one; no
  `localhost`, no addresses: the kubelet passes no alternates). kubelet.crt holds the certificate
  then that CA, and the kubelet serves both. No shared CA exists, and an IP does not verify.

The cluster CA is also what kube-controller-manager's root-ca-cert-publisher puts in every
namespace as ConfigMap `kube-root-ca.crt` (pkg/controller/certificates/rootcacertpublisher/
publisher.go): `publish_root_ca` does that here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from standin.kube.stamps import utcnow

KUBELET_TLS_MODES = ("cluster-ca", "self-signed")
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"  # rootcacertpublisher.RootCACertConfigMapName; data key ca.crt
ROOT_CA_DESCRIPTION = (  # publisher.go's DescriptionAnnotation value, as the real ConfigMap carries it
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as "
    "the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of "
    "Kubernetes clusters."
)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    # digitalSignature, keyEncipherment (+ keyCertSign for a CA), as both Go templates set them.
    return x509.KeyUsage(True, False, True, False, False, cert_sign, False, False, False)


def _ca(common_name: str, key, not_before: dt.datetime, lifetime: dt.timedelta, serial: int) -> x509.Certificate:
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _serving(
    subject: x509.Name,
    key,
    issuer: x509.Certificate,
    issuer_key,
    names: list[x509.GeneralName],
    not_before: dt.datetime,
    lifetime: dt.timedelta,
    serial: int,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )


def _host_name(host: str) -> x509.GeneralName:
    """A host is an IP SAN if it parses as one, else a DNS SAN (GenerateSelfSignedCertKey)."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def addresses_to_names(addresses: list[dict]) -> list[x509.GeneralName]:
    """addressesToHostnamesAndIPs: Hostname (DNS, or IP if it is one), Internal/ExternalDNS as DNS
    names, Internal/ExternalIP as IPs; duplicates once."""
    dns: dict[str, None] = {}
    ips: dict[str, None] = {}
    for entry in addresses:
        kind, value = entry.get("type"), entry.get("address") or ""
        if not value:
            continue
        if kind == "Hostname":
            (ips if isinstance(_host_name(value), x509.IPAddress) else dns)[value] = None
        elif kind in ("InternalIP", "ExternalIP"):
            try:
                ipaddress.ip_address(value)
            except ValueError:
                continue
            ips[value] = None
        elif kind in ("InternalDNS", "ExternalDNS"):
            dns[value] = None
    return [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]


def _server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)  # every certificate in the file is served
    return context


class KubeletPki:
    """The cluster CA (kubeadm's /etc/kubernetes/pki/ca.crt) and each kubelet's serving certificate.

    `ca_path` is the cluster CA, the one published as ConfigMap kube-root-ca.crt. A node in
    `cluster-ca` mode serves a certificate it signed; a node in `self-signed` mode serves one from
    its own throwaway CA (`node_ca_path(node)`), which nothing else trusts.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        # kubeadm's CA is RSA 2048 "kubernetes"; an EC key here keeps every test's start-up cheap and
        # changes nothing a client can observe beyond the signature algorithm.
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._ca_cert = _ca("kubernetes", self._ca_key, utcnow() - dt.timedelta(hours=1), dt.timedelta(days=3650), x509.random_serial_number())
        self.ca_path = directory / "ca.crt"
        self.ca_path.write_bytes(_pem(self._ca_cert))
        self._node_cas: dict[str, Path] = {}

    @property
    def ca_pem(self) -> str:
        """The cluster CA certificate as written to `ca_path` (kept in memory: the controllers ask often)."""
        return _pem(self._ca_cert).decode()

    def node_ca_path(self, node: str) -> Path:
        """The throwaway CA of a self-signed kubelet (what an administrator would copy off the node)."""
        try:
            return self._node_cas[node]
        except KeyError:
            raise KeyError(f"node {node!r} has no CA of its own (it is not in self-signed mode)") from None

    def server_context(self, node: str, mode: str, addresses: list[dict]) -> ssl.SSLContext:
        """A TLS server context presenting the kubelet's certificate, made as `mode` makes it."""
        if mode not in KUBELET_TLS_MODES:
            raise ValueError(f"kubelet TLS mode must be one of {KUBELET_TLS_MODES}, got {mode!r}")
        directory = self.directory / node
        directory.mkdir(parents=True, exist_ok=True)
        if mode == "self-signed":
            return self._self_signed(node, directory)
        key = ec.generate_private_key(ec.SECP256R1())
        now = utcnow()
        cert = _serving(
            _name(f"system:node:{node}", "system:nodes"),
            key,
            self._ca_cert,
            self._ca_key,
            addresses_to_names(addresses),
            now - dt.timedelta(minutes=5),
            dt.timedelta(days=365),  # --cluster-signing-duration's default
            x509.random_serial_number(),
        )
        cert_path, key_path = directory / "kubelet-server-current.pem", directory / "kubelet-server.key"
        cert_path.write_bytes(_pem(cert))
        write_private(key_path, _pem_key(key))
        return _server_context(cert_path, key_path)

    def _self_signed(self, host: str, directory: Path) -> ssl.SSLContext:
        """GenerateSelfSignedCertKey(host, nil, nil): RSA 2048 both, serials 1 and 2, one year."""
        valid_from = utcnow() - dt.timedelta(hours=1)
        year = dt.timedelta(days=365)
        stamp = int(time.time())
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca = _ca(f"{host}-ca@{stamp}", ca_key, valid_from, year, 1)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _serving(_name(f"{host}@{stamp}"), key, ca, ca_key, [_host_name(host)], valid_from, year, 2)
        cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
        cert_path.write_bytes(_pem(cert) + _pem(ca))  # the certificate, then its CA
        write_private(key_path, _pem_key(key))
        ca_path = directory / "kubelet-ca.crt"
        ca_path.write_bytes(_pem(ca))
        self._node_cas[host] = ca_path
        return _server_context(cert_path, key_path)


def publish_root_ca(store, namespace: str, ca_pem: str) -> None:
    """The root-ca-cert-publisher's syncNamespace: ConfigMap kube-root-ca.crt with data ca.crt and
    the description annotation, created when missing, rewritten when the data differ or the
    annotation is empty."""
    rt = store.types["configmaps"]
    wanted = {"ca.crt": ca_pem}
    current = store.find(rt, namespace, ROOT_CA_CONFIGMAP)
    if current is None:
        body = {
            "metadata": {
                "name": ROOT_CA_CONFIGMAP,
                "namespace": namespace,
                "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION},
            },
            "data": wanted,
        }
        store.create(rt, namespace, body, from_api=False)
        return
    annotations = current["metadata"].get("annotations") or {}
    if current.get("data") == wanted and annotations.get("kubernetes.io/description"):
        return
    current["data"] = wanted
    current["metadata"]["annotations"] = {**annotations, "kubernetes.io/description": ROOT_CA_DESCRIPTION}
    store.update(rt, namespace, ROOT_CA_CONFIGMAP, current)

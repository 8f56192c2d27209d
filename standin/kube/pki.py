"""Kubelet certificates: a CA made for the run, so callers must pass the right bundle to verify."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from standin.kube.stamps import utcnow


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class KubeletPki:
    """A CA made for this run and one serving certificate per node (SAN IP 127.0.0.1).

    Real kubelet serving certs are often not signed by the cluster CA; a separate CA here makes
    callers prove they pass the right bundle instead of disabling verification.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._ca_cert = self._self_signed_ca()
        self.ca_path = directory / "kubelet-ca.crt"
        self.ca_path.write_bytes(self._ca_cert.public_bytes(serialization.Encoding.PEM))

    def _self_signed_ca(self) -> x509.Certificate:
        now = utcnow()
        public = self._ca_key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(_name("standin-kubelet-ca"))
            .issuer_name(_name("standin-kubelet-ca"))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )

    def _serving_cert(self, node: str, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        now = utcnow()
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName(node), x509.DNSName("localhost")]
        return (
            x509.CertificateBuilder()
            .subject_name(_name(f"system:node:{node}"))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()), critical=False
            )
            .sign(self._ca_key, hashes.SHA256())
        )

    def server_context(self, node: str) -> ssl.SSLContext:
        """A TLS server context presenting the node's certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert_path, key_path = self.directory / f"{node}.crt", self.directory / f"{node}.key"
        cert_path.write_bytes(self._serving_cert(node, key).public_bytes(serialization.Encoding.PEM))
        write_private(key_path, _pem_key(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_path, key_path)
        return context

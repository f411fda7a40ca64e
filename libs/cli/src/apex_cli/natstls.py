"""A development CA and a NATS server certificate signed by it, for docker compose and
a first Kubernetes install (production: your own CA, or cert-manager).

The files are named as a Kubernetes TLS Secret (and cert-manager) names them, so the
same folder feeds compose's secrets and the ``nats-tls`` Secret: ``ca.crt`` (the CA the
services verify the server with: ``APEX_NATS_CA``), ``tls.crt`` and ``tls.key`` (the
servers' certificate and key; 0600). The certificate is valid for clients and for the
cluster routes (server and client authentication: routes verify each other with it)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The names clients and routes reach NATS by: compose's service, the host's published
# port, and k8s/ (namespace apex): the client Service and each StatefulSet pod.
DEFAULT_HOSTS = (
    "nats",
    "localhost",
    "127.0.0.1",
    "nats.apex.svc",
    "nats.apex.svc.cluster.local",
    "*.nats-headless.apex.svc.cluster.local",
    "nats-headless.apex.svc.cluster.local",
)
CA_DAYS = 3650
SERVER_DAYS = 825


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def tls_files(folder: Path) -> TlsFiles:
    return TlsFiles(folder / "ca.crt", folder / "tls.crt", folder / "tls.key")


def ensure_dev_tls(folder: Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> TlsFiles:
    """The CA and the server certificate in ``folder``, made when missing and kept
    otherwise (the services keep trusting the same CA across runs). The CA's key is not
    kept: a new server certificate means a new CA, given again to every service."""
    files = tls_files(folder)
    if files.ca.exists() and files.cert.exists() and files.key.exists():
        return files
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Apex NATS development CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(host) for host in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(
        server.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return files


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def server_tls_block(files: TlsFiles, *, routes: bool = False) -> str:
    """The server's ``tls`` block for clients (TLS required; clients authenticate with
    their JWT, not a certificate), or with ``routes`` the one inside ``cluster``: the nodes
    present the same certificate and verify each other's against the CA."""
    verify = f'\n  ca_file: "{files.ca}"\n  verify: true' if routes else ""
    return f"""tls {{
  cert_file: "{files.cert}"
  key_file: "{files.key}"{verify}
  timeout: 5
}}
"""

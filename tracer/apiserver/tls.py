"""The stand-in's TLS: a CA made for one start of the server, and a certificate for 127.0.0.1.

kubectl sends a bearer token only over HTTPS and verifies the server against the kubeconfig's
`certificate-authority-data`, as with a real cluster; this module makes both keys (ECDSA P-256),
writes them mode 0600 into the server's own directory and returns an `ssl.SSLContext`. The CA's
key is not kept: nothing else is ever signed with it. No HTTP, no sockets.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from tracer.rundir import write_private

# A day is plenty for a lab that lives as long as its `lab up`; a real cluster's CA lives years.
VALIDITY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class ServingCert:
    ca_pem: bytes
    cert_path: Path
    key_path: Path

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_path, self.key_path)
        # HTTP/1.1 only: kubectl would otherwise try HTTP/2, which this server does not speak.
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


def make_serving_cert(directory: Path, host: str = "127.0.0.1") -> ServingCert:
    """A fresh CA and a server certificate for `host` (IP SAN), written under `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + VALIDITY
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pathtrace-lab-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        san.insert(0, x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        san.insert(0, x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pathtrace-lab-api")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    cert_path = write_private(
        directory / "apiserver.crt", (cert.public_bytes(pem) + ca_pem).decode()
    )
    key_path = write_private(
        directory / "apiserver.key",
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )
    write_private(directory / "ca.crt", ca_pem.decode())
    return ServingCert(ca_pem, cert_path, key_path)

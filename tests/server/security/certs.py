"""Test credentials made on the spot with ``cryptography``: CAs, server and client certificates,
EC signing keys, JWKS files and JWTs. Nothing is checked in; every test makes its own."""

from __future__ import annotations

import datetime
import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM


def key_pem(key) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class Pair:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(PEM)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        return cert, key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_ca(name: str = "test CA") -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return Pair(key, cert)


def issue(
    ca: Pair, common_name: str, *, server: bool = True, sans: list[x509.GeneralName] | None = None
) -> Pair:
    """A leaf certificate signed by ``ca``: a server's (for localhost and 127.0.0.1) or a client's."""
    key = ec.generate_private_key(ec.SECP256R1())
    if sans is None:
        sans = (
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] if server else []
        )
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Pair(key, builder.sign(ca.key, hashes.SHA256()))


def client_cert(ca: Pair, name: str, spiffe: str | None = None) -> Pair:
    sans = [x509.UniformResourceIdentifier(spiffe)] if spiffe else []
    return issue(ca, name, server=False, sans=sans)


class Issuer:
    """A JWT issuer with an RSA key; ``write_jwks`` publishes its public key for the server."""

    def __init__(self, url: str = "https://login.test", kid: str = "k1") -> None:
        self.url, self.kid = url, kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()))
        return path

    def token(
        self,
        sub: str = "alice",
        roles: list[str] | None = None,
        *,
        audience: str = "ortserve",
        expires_in: float = 300,
        issuer: str | None = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "sub": sub,
            "iss": issuer or self.url,
            "aud": audience,
            "iat": now,
            "exp": now + int(expires_in),
            "roles": roles if roles is not None else ["client"],
        }
        return jwt.encode(claims, key_pem(self.key), algorithm="RS256", headers={"kid": self.kid})

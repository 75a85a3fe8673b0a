"""The auth file (``--auth-file auth.toml``): roles, and the principals that hold them.

    [roles.fraud-team]                      # a role: RPC groups -> model name patterns
    inference = ["fraud-*"]
    metadata = ["fraud-*"]

    [[keys]]                                # API keys: only the sha256 of each key is stored
    name = "ci-bot"
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    roles = ["operator"]

    [[certificates]]                        # mTLS clients, by SAN, common name or subject
    name = "ingest"
    san = "spiffe://acme/ingest"
    roles = ["client"]

    [jwt]                                   # JWTs checked against a local JWKS file
    jwks = "jwks.json"                      # relative to this file
    issuer = "https://login.acme.example"
    audience = "ortserve"
    roles_claim = "roles"                   # the token's claim that lists role names

    [roles.scraper]                         # e.g. a Prometheus key that may scrape and nothing else
    metrics = ["*"]

Built-in roles (the README's table): ``reader`` (metadata), ``client`` (inference and metadata),
``operator`` (also model-repository and flags), ``admin`` (every group). Every role also gets
health, reflection and metrics (the metrics port: ``/metrics`` and the status page). A grant on the
``admin`` group covers every group.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.schema import SchemaError, from_table

__all__ = [
    "ALL",
    "BUILTIN_ROLES",
    "GROUP_NAMES",
    "AuthConfig",
    "AuthFile",
    "AuthFileError",
    "CertEntry",
    "Grants",
    "JwtSettings",
    "KeyEntry",
    "load_auth_file",
    "parse_auth_text",
]

GROUP_NAMES = (
    "inference",
    "metadata",
    "model-repository",
    "flags",
    "admin",
    "health",
    "reflection",
    "metrics",  # the metrics port over HTTP: /metrics and the status page (ortserve.ops.metrics_auth)
)
ALL = ("*",)
_OPEN = {"health": ALL, "reflection": ALL, "metrics": ALL}
BUILTIN_ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    "reader": {"metadata": ALL, **_OPEN},
    "client": {"inference": ALL, "metadata": ALL, **_OPEN},
    "operator": {"inference": ALL, "metadata": ALL, "model-repository": ALL, "flags": ALL, **_OPEN},
    "admin": {"admin": ALL},
}
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}")


class AuthFileError(ValueError):
    """The auth file (or its JWKS file) is refused; the message says where and why."""


def _instant(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected an RFC 3339 time such as 2027-01-31T00:00:00Z") from None
    else:
        raise ValueError("expected an RFC 3339 time such as 2027-01-31T00:00:00Z")
    if when.tzinfo is None:
        raise ValueError("expected a time with its offset (Z or +hh:mm)")
    return when


def _digest(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return value
    raise ValueError("expected the sha256 of the key as 64 lowercase hex digits")


def _name(value: Any) -> str:
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    raise ValueError("expected a name of letters, digits and _ . @ : - (at most 128)")


@dataclass(frozen=True)
class KeyEntry:
    name: str = field(metadata={"parse": _name, "help": "who holds the key (audit logs name it)"})
    sha256: str = field(metadata={"parse": _digest, "help": "sha256 of the key, hex"})
    roles: tuple[str, ...] = field(metadata={"min_items": 1})
    created: str = ""
    expires: datetime.datetime | None = field(default=None, metadata={"parse": _instant})


@dataclass(frozen=True)
class CertEntry:
    name: str = field(metadata={"parse": _name})
    roles: tuple[str, ...] = field(metadata={"min_items": 1})
    san: str = field(default="", metadata={"help": "a subject alternative name: URI, DNS name, email"})
    common_name: str = ""
    subject: str = field(default="", metadata={"help": "the subject as RFC 4514 writes it: CN=ingest,O=Acme"})

    def __post_init__(self) -> None:
        given = [k for k in ("san", "common_name", "subject") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"certificate {self.name!r}: give exactly one of san, common_name, subject")


@dataclass(frozen=True)
class JwtSettings:
    jwks: Path
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = field(
        default=("RS256", "ES256", "PS256", "EdDSA"), metadata={"choices": JWT_ALGORITHMS, "min_items": 1}
    )
    roles_claim: str = "roles"
    subject_claim: str = "sub"
    leeway: float = field(default=30.0, metadata={"ge": 0, "le": 600, "help": "clock skew allowed, s"})


@dataclass(frozen=True)
class AuthFile:
    roles: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    keys: tuple[KeyEntry, ...] = ()
    certificates: tuple[CertEntry, ...] = ()
    jwt: JwtSettings | None = None

    def __post_init__(self) -> None:
        for role, grants in self.roles.items():
            _name(role)
            if role in BUILTIN_ROLES:
                raise ValueError(f"role {role!r} is built in: pick another name")
            for group, patterns in grants.items():
                if group not in GROUP_NAMES:
                    raise ValueError(
                        f"role {role!r}: unknown group {group!r}; groups: {', '.join(GROUP_NAMES)}"
                    )
                if not patterns or not all(patterns):
                    raise ValueError(f"role {role!r}: group {group!r} needs model name patterns, e.g. ['*']")
        known = set(BUILTIN_ROLES) | set(self.roles)
        seen: set[str] = set()
        for kind, entries in (("key", self.keys), ("certificate", self.certificates)):
            for e in entries:
                if (kind, e.name) in seen:  # type: ignore[comparison-overlap]
                    raise ValueError(f"{kind} name {e.name!r} is used twice")
                seen.add((kind, e.name))  # type: ignore[arg-type]
                for r in e.roles:
                    if r not in known:
                        raise ValueError(
                            f"{kind} {e.name!r}: unknown role {r!r}; roles: {', '.join(sorted(known))}"
                        )
        digests = [k.sha256 for k in self.keys]
        if len(set(digests)) != len(digests):
            raise ValueError("two keys have the same sha256")


class Grants:
    """What a set of roles allows: per group, every model (``ALL``) or some name patterns."""

    __slots__ = ("_models", "scopes")

    def __init__(self, scopes: dict[str, tuple[str, ...]]) -> None:
        self.scopes = scopes
        self._models: dict[tuple[str, str], bool] = {}

    @classmethod
    def of(cls, roles: tuple[str, ...], table: dict[str, dict[str, tuple[str, ...]]]) -> Grants:
        merged: dict[str, set[str]] = {}
        for role in roles:
            for group, patterns in table.get(role, {}).items():
                for g in GROUP_NAMES if group == "admin" else (group,):
                    merged.setdefault(g, set()).update(patterns)
        return cls({g: ALL if "*" in p else tuple(sorted(p)) for g, p in merged.items()})

    def scope(self, group: str) -> tuple[str, ...] | None:
        """``ALL``, the model patterns, or None when the group is not granted."""
        return self.scopes.get(group)

    def allows_model(self, group: str, model: str) -> bool:
        key = (group, model)
        hit = self._models.get(key)
        if hit is None:
            patterns = self.scopes.get(group) or ()
            hit = any(fnmatch.fnmatchcase(model, p) for p in patterns)
            if len(self._models) > 4096:  # bounded: clients choose the names
                self._models.clear()
            self._models[key] = hit
        return hit


@dataclass
class AuthConfig:
    """A loaded, checked auth file: what the authenticator and the policy read."""

    path: Path
    file: AuthFile
    roles: dict[str, dict[str, tuple[str, ...]]]
    jwks: dict[str, Any] | None  # the JWKS document, when [jwt] is set
    digest: str  # sha256 of the auth file's bytes (audit records it)

    def grants(self, roles: tuple[str, ...]) -> Grants:
        return Grants.of(roles, self.roles)


def parse_auth_text(text: str, where: str) -> AuthFile:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise AuthFileError(f"{where}: not valid TOML: {e}") from None
    try:
        return from_table(AuthFile, table, where)
    except SchemaError as e:
        raise AuthFileError(str(e)) from None


def load_auth_file(path: Path) -> AuthConfig:
    """Read and check the auth file and its JWKS file; AuthFileError says what is wrong."""
    import hashlib

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AuthFileError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise AuthFileError(f"{path}: not UTF-8 text") from None
    file = parse_auth_text(text, str(path))
    jwks = None
    if file.jwt is not None:
        jwks_path = Path(path).parent / file.jwt.jwks
        try:
            jwks = json.loads(jwks_path.read_text())
        except (OSError, ValueError) as e:
            raise AuthFileError(f"{path} [jwt] jwks: cannot read {jwks_path}: {e}") from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
            raise AuthFileError(f"{jwks_path}: expected a JWKS document with a non-empty 'keys' list")
        if any(isinstance(k, dict) and k.get("kty") == "oct" for k in jwks["keys"]):
            raise AuthFileError(f"{jwks_path}: symmetric ('oct') keys are refused: use public keys")
    roles = {**BUILTIN_ROLES, **file.roles}
    return AuthConfig(Path(path), file, roles, jwks, hashlib.sha256(data).hexdigest())

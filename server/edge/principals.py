"""Who is calling: credentials -> a :class:`Principal`, against the loaded auth file.

- **API key** (``authorization: Bearer <key>`` or ``x-api-key: <key>``): the sha256 of the key is
  compared, in constant time, with every stored hash. A fast hash is enough because the keys are
  random (``ortserve auth add-key`` makes 256-bit ones): a slow KDF protects guessable passwords
  from offline guessing, and nothing guesses a 256-bit preimage; it would cost milliseconds on
  every request for nothing.
- **JWT** (``authorization: Bearer <jwt>``): PyJWT against the JWKS file's public keys, with the
  issuer, audience and expiry required; a verified token is cached by its sha256 until it expires.
- **Client certificate** (mTLS): gRPC has verified it against ``--tls-client-ca``; its SANs,
  common name or subject are matched against the file's ``[[certificates]]``.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ortserve.edge.authfile import AuthConfig, Grants
from ortserve.errors import Unauthenticated

__all__ = ["KEY_PREFIX", "Authenticator", "Principal", "hash_key", "new_key"]

KEY_PREFIX = "ortsk_"
_JWT_CACHE = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # "key:ci-bot", "jwt:alice", "cert:ingest"
    roles: tuple[str, ...]
    grants: Grants


def new_key() -> str:
    """A new random API key (256 bits), with a prefix secret scanners can find."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    """Turns a call's credentials into a Principal; one per loaded auth file."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        now = datetime.datetime.now(datetime.UTC)
        self._keys = [
            (bytes.fromhex(k.sha256), k.expires, Principal(f"key:{k.name}", k.roles, config.grants(k.roles)))
            for k in config.file.keys
        ]
        self._expired_at_load = sum(1 for _, exp, _ in self._keys if exp is not None and exp <= now)
        self._certs = [
            (c, Principal(f"cert:{c.name}", c.roles, config.grants(c.roles)))
            for c in config.file.certificates
        ]
        self._jwt = _JwtVerifier(config) if config.file.jwt is not None else None

    def from_metadata(self, metadata: Sequence[tuple[str, Any]] | None) -> Principal | None:
        """The principal of the call's ``authorization`` / ``x-api-key`` metadata; None when it has
        neither. Unauthenticated when one is given and does not verify."""
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, credential = value.partition(" ")
                if scheme.lower() != "bearer" or not credential.strip():
                    raise Unauthenticated("authorization metadata: expected 'Bearer <API key or JWT>'")
                return self.from_bearer(credential.strip())
            if key == "x-api-key" and isinstance(value, str):
                return self.from_key(value.strip())
        return None

    def from_bearer(self, credential: str) -> Principal:
        """A bearer credential: a JWT (three dot-separated parts) or an API key."""
        if not credential.startswith(KEY_PREFIX) and credential.count(".") == 2:
            return self.from_jwt(credential)
        return self.from_key(credential)

    def from_key(self, key: str) -> Principal:
        digest = hashlib.sha256(key.encode()).digest()
        found: tuple | None = None
        for stored, expires, principal in self._keys:  # every entry: no early exit on a match
            if hmac.compare_digest(stored, digest):
                found = (expires, principal)
        if found is None:
            raise Unauthenticated("API key not recognised")
        expires, principal = found
        if expires is not None and expires <= datetime.datetime.now(datetime.UTC):
            raise Unauthenticated(f"API key {principal.name[4:]!r} expired at {expires.isoformat()}")
        return principal

    def from_jwt(self, token: str) -> Principal:
        if self._jwt is None:
            raise Unauthenticated("a JWT was sent but the auth file has no [jwt] section")
        return self._jwt.verify(token)

    def from_certificate(self, auth_context: Mapping[str, Sequence[bytes]]) -> Principal | None:
        """The principal of a verified client certificate; None when there is none (plaintext, or
        TLS without a client certificate)."""
        if not auth_context.get("x509_subject") and not auth_context.get("x509_common_name"):
            return None
        sans = {v.decode(errors="replace") for v in auth_context.get("x509_subject_alternative_name", ())}
        cns = {v.decode(errors="replace") for v in auth_context.get("x509_common_name", ())}
        subjects = {v.decode(errors="replace") for v in auth_context.get("x509_subject", ())}
        for entry, principal in self._certs:
            if (
                (entry.san and entry.san in sans)
                or (entry.common_name and entry.common_name in cns)
                or (entry.subject and entry.subject in subjects)
            ):
                return principal
        shown = next(iter(subjects), "") or next(iter(cns), "?")
        raise Unauthenticated(f"client certificate {shown!r} matches no [[certificates]] entry")


class _JwtVerifier:
    def __init__(self, config: AuthConfig) -> None:
        import jwt  # PyJWT, a dependency; imported here so that --help stays light

        self._jwt = jwt
        settings = config.file.jwt
        assert settings is not None and config.jwks is not None
        self.settings = settings
        self.roles = config.roles
        self.config = config
        try:
            self.keys = jwt.PyJWKSet.from_dict(config.jwks)
        except jwt.PyJWTError as e:
            from ortserve.edge.authfile import AuthFileError

            raise AuthFileError(f"{settings.jwks}: not a usable JWKS: {e}") from None
        self._by_kid = {k.key_id: k for k in self.keys.keys if k.key_id}
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        # The event loop and the metrics port's HTTP threads verify tokens: the pruning below walks
        # the cache, which another thread must not change meanwhile.
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal, expires = self._decode(token)
        with self._lock:
            if len(self._cache) >= _JWT_CACHE:
                self._cache = {d: e for d, e in self._cache.items() if e[0] > now}
                if len(self._cache) >= _JWT_CACHE:
                    self._cache.clear()
            self._cache[digest] = (expires, principal)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        jwt, s = self._jwt, self.settings
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            if kid is not None:
                key = self._by_kid.get(kid)
                if key is None:
                    raise Unauthenticated(f"JWT refused: key id {kid!r} is not in the JWKS file")
            elif len(self.keys.keys) == 1:
                key = self.keys.keys[0]
            else:
                raise Unauthenticated("JWT refused: no 'kid' header and the JWKS file has several keys")
            algorithms = [a for a in s.algorithms if getattr(key, "algorithm_name", a) in (a, None)]
            claims = jwt.decode(
                token,
                key=key,
                algorithms=algorithms or list(s.algorithms),
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway,
                options={"require": ["exp", "iss", "aud", s.subject_claim]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("JWT refused: expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"JWT refused: audience is not {s.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"JWT refused: issuer is not {s.issuer!r}") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("JWT refused: signature does not verify with the JWKS key") from None
        except jwt.PyJWTError as e:
            raise Unauthenticated(f"JWT refused: {e}") from None
        claimed = claims.get(s.roles_claim, ())
        if isinstance(claimed, str):
            claimed = claimed.split()
        roles = tuple(r for r in claimed if isinstance(r, str) and r in self.roles)
        subject = str(claims[s.subject_claim])
        return Principal(f"jwt:{subject}", roles, self.config.grants(roles)), float(claims["exp"])

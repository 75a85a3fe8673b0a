"""Signed versions: ``<repo>/<model>/<version>/model.sig``, an OpenSSF model signature.

The signature is a Sigstore bundle (DSSE envelope, in-toto statement) made by the ``model-signing``
package with a local elliptic-curve key, fully offline: no transparency log, no certificate
authority. It covers every file of the version folder (the model, its external data and
``manifest.json``) but itself, so a changed, added or removed file fails verification. The
manifest names the signature (``"signature": "model.sig"``) and is itself signed.

    signer = Signer(Path("key.pem"))                    # checks the key at once
    publish_version(repo, "digits", files, sign=signer.sign)
    Verifier(Path("trusted/")).verify(version_dir)      # SignatureError(reason, message)

``model-signing`` is heavy (sigstore, tuf, pydantic): it is the ``ortserve[signing]`` extra and is
imported only here, only when a signer or verifier is made.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["SIGNATURE", "SignatureError", "Signer", "Verifier"]

SIGNATURE = "model.sig"
_INSTALL = "install ortserve[signing] (pip install 'ortserve[signing]') to sign or verify model versions"


class SignatureError(Exception):
    """A version refused by signature verification. ``reason``: unsigned, tampered, untrusted,
    unreadable or unavailable (model-signing not installed)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _model_signing() -> Any:
    try:
        import model_signing.hashing
        import model_signing.signing
        import model_signing.verifying
    except ImportError as e:
        raise SignatureError("unavailable", f"{_INSTALL} ({e})") from None
    return model_signing


def _hashing(ms: Any) -> Any:
    return ms.hashing.Config().set_ignored_paths(paths=[SIGNATURE])


def _key_hint(pem: bytes) -> tuple[str, Any]:
    """The key's identifier as model-signing writes it in bundles (sha256 of its PEM), and the key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve public key")
    canonical = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(canonical).hexdigest(), key


class Signer:
    """Signs version folders with a PEM EC private key (P-256, P-384 or P-521)."""

    def __init__(self, key: Path, password: str | None = None) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.key = Path(key)
        try:
            private = serialization.load_pem_private_key(
                self.key.read_bytes(), password.encode() if password else None
            )
        except (OSError, ValueError, TypeError) as e:
            raise SignatureError("unreadable", f"signing key {key}: cannot load it: {e}") from None
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise SignatureError("unreadable", f"signing key {key}: expected an elliptic-curve private key")
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_sha256 = _key_hint(public)[0]
        self._password = password
        self._ms = _model_signing()

    def sign(self, folder: Path) -> Path:
        """Write ``folder/model.sig`` over every other file of the folder; returns its path."""
        ms = self._ms
        target = Path(folder) / SIGNATURE
        config = ms.signing.Config().set_hashing_config(_hashing(ms))
        config.use_elliptic_key_signer(private_key=self.key, password=self._password).sign(
            Path(folder), target
        )
        return target


class Verifier:
    """Verifies version folders against trusted EC public keys: a PEM file, or a folder of them
    (``*.pem``; the bundle's key hint picks the key, so signing keys can be rotated)."""

    def __init__(self, trusted: Path) -> None:
        trusted = Path(trusted)
        files = sorted(trusted.glob("*.pem")) if trusted.is_dir() else [trusted]
        self.keys: dict[str, Path] = {}
        for path in files:
            try:
                hint, _ = _key_hint(path.read_bytes())
            except (OSError, ValueError) as e:
                raise SignatureError("unreadable", f"trusted key {path}: {e}") from None
            self.keys[hint] = path
        if not self.keys:
            raise SignatureError("unreadable", f"trusted keys {trusted}: no *.pem public key found")
        self._ms = _model_signing()

    def verify(self, folder: Path) -> str:
        """Check ``folder``'s signature; returns the trusted key file that verified it."""
        folder = Path(folder)
        sig = folder / SIGNATURE
        if not sig.is_file():
            raise SignatureError("unsigned", f"{folder}: no {SIGNATURE}, and versions must be signed")
        try:
            bundle = json.loads(sig.read_text())
            hint = bundle["verificationMaterial"]["publicKey"].get("hint", "")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise SignatureError("unreadable", f"{sig}: not a signature bundle: {e}") from None
        candidates = [self.keys[hint]] if hint in self.keys else [] if hint else list(self.keys.values())
        if not candidates:
            raise SignatureError(
                "untrusted", f"{sig}: signed by a key that is not trusted (key sha256 {hint[:16]}…)"
            )
        problem = ""
        for key in candidates:
            config = self._ms.verifying.Config().set_hashing_config(_hashing(self._ms))
            try:
                config.use_elliptic_key_verifier(public_key=key).verify(folder, sig)
                return str(key)
            except Exception as e:  # model-signing raises ValueError, InvalidSignature, parse errors
                problem = _explain(str(e)) or type(e).__name__
        # A trusted key named by the bundle that does not verify it: files or bundle were changed.
        reason = "tampered" if hint in self.keys else "untrusted"
        raise SignatureError(reason, f"{folder}: signature does not verify: {problem}")


def _explain(message: str) -> str:
    """model-signing's mismatch report (digests as byte reprs) as the files concerned."""
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)", message)
    extra = re.findall(r"Extra files found in model \\?'[^']*\\?': ([^\]\"'\\]+)", message)
    missing = re.findall(r"Missing files in model \\?'[^']*\\?': ([^\]\"'\\]+)", message)
    parts = [f"{', '.join(changed)} changed"] if changed else []
    parts += [f"not signed: {', '.join(extra)}"] if extra else []
    parts += [f"missing: {', '.join(missing)}"] if missing else []
    return "; ".join(parts) if parts else message[:300]

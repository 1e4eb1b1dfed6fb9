"""Access tokens (JWT), opaque secrets, and their hashes."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from tablehouse.config import Settings
from tablehouse.errors import NotAuthenticated, SettingsError

ACCESS = "access"
OPAQUE_TOKEN_BYTES = 32  # 256 bits
_REQUIRED_CLAIMS = ["sub", "sid", "jti", "iat", "exp", "type", "aud", "iss"]


def new_opaque_token() -> str:
    return secrets.token_urlsafe(OPAQUE_TOKEN_BYTES)


def hash_token(token: str) -> str:
    """SHA-256, hex. Enough for high-entropy random tokens, which cannot be brute-forced."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID


class TokenCodec:
    """Signs and checks access tokens with one fixed algorithm (``alg`` is never trusted)."""

    def __init__(self, settings: Settings, secret: SecretStr | None) -> None:
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.lifetime = timedelta(minutes=settings.access_token_ttl_minutes)
        if self.algorithm.startswith("HS"):
            assert secret is not None, "HS* algorithms sign with the JWT secret"
            self._signing_key: Any = secret.get_secret_value()
            self._verifying_key: Any = self._signing_key
        else:
            # Settings refuse an asymmetric algorithm without both keys.
            assert settings.jwt_private_key is not None
            assert settings.jwt_public_key is not None
            self._signing_key = _load_key(
                self.algorithm, settings.jwt_private_key.get_secret_value(), "JWT_PRIVATE_KEY"
            )
            self._verifying_key = _load_key(
                self.algorithm, settings.jwt_public_key, "JWT_PUBLIC_KEY"
            )

    def issue(self, *, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime) -> str:
        claims = {
            "sub": str(user_id),
            "sid": str(session_id),
            "jti": uuid.uuid4().hex,
            "type": ACCESS,
            "iat": now,
            "exp": now + self.lifetime,
            "iss": self.issuer,
            "aud": self.audience,
        }
        return jwt.encode(claims, self._signing_key, algorithm=self.algorithm)

    def decode(self, token: str, *, now: datetime) -> AccessClaims:
        """The claims of a token valid at ``now``; anything else is ``NotAuthenticated``."""
        try:
            claims = jwt.decode(
                token,
                self._verifying_key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                # The times are checked below, at the caller's clock rather than PyJWT's.
                options={
                    "require": _REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
            _check_times(claims, now.timestamp())
            if claims["type"] != ACCESS:
                raise NotAuthenticated("not an access token", code="invalid_token")
            return AccessClaims(uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]))
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("access token expired", code="token_expired") from None
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError, OverflowError):
            raise NotAuthenticated("invalid access token", code="invalid_token") from None


def _check_times(claims: dict[str, Any], now: float) -> None:
    """PyJWT's rules for ``exp``, ``iat`` and ``nbf`` (no leeway), at ``now``."""
    if int(claims["exp"]) <= now:
        raise jwt.ExpiredSignatureError("Signature has expired")
    if int(claims["iat"]) > now:
        raise jwt.ImmatureSignatureError("The token is not yet valid (iat)")
    if "nbf" in claims and int(claims["nbf"]) > now:
        raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")


def _load_key(algorithm: str, pem: str, variable: str) -> Any:
    """Parse a PEM key now, so a bad one stops start-up instead of failing the first login."""
    try:
        return jwt.get_algorithm_by_name(algorithm).prepare_key(pem)
    except (ValueError, TypeError, jwt.InvalidKeyError) as exc:
        raise SettingsError(
            f"{variable}: not a usable {algorithm} key in PEM form ({exc})"
        ) from None


def seal(payload: dict[str, Any], *, key_material: str, context: bytes) -> bytes:
    """Encrypt ``payload`` so that only a holder of ``key_material`` can read it back.

    Used to keep the current token pair for a refresh replayed within the grace window
    without storing any token in plaintext: the key is derived from the replayed token.
    """
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(_derive_key(key_material)).encrypt(nonce, orjson.dumps(payload), context)


def unseal(sealed: bytes, *, key_material: str, context: bytes) -> dict[str, Any]:
    nonce, ciphertext = sealed[:12], sealed[12:]
    plaintext = AESGCM(_derive_key(key_material)).decrypt(nonce, ciphertext, context)
    value = orjson.loads(plaintext)
    assert isinstance(value, dict)
    return value


def _derive_key(key_material: str) -> bytes:
    return hashlib.sha256(b"tablehouse-seal\x00" + key_material.encode()).digest()

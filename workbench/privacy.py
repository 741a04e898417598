"""Masking of personal identifiers for display (reference/domain.md §6.3): lists and logs never show them whole."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os


def mask_mobile(mobile: str | None) -> str | None:
    """`13812345678` → `138****5678`; keeps a country prefix such as `+86-`."""
    if not mobile:
        return None
    prefix, _, number = mobile.rpartition("-")
    if len(number) < 7:
        return prefix + ("-" if prefix else "") + "*" * len(number)
    return f"{prefix}{'-' if prefix else ''}{number[:3]}{'*' * (len(number) - 7)}{number[-4:]}"


def mask_id_number(id_number: str | None) -> str | None:
    """`330102199003071234` → `330***********1234` (the DESIGN.md pattern: region prefix and last four)."""
    if not id_number:
        return None
    if len(id_number) < 8:
        return "*" * len(id_number)
    return id_number[:3] + "*" * (len(id_number) - 7) + id_number[-4:]


# -- encryption at rest and keyed lookup hashes (reference/domain.md §6) -----------------------------------------
# Resident ID numbers and phones are sensitive personal information: stored encrypted (AES-256-GCM) so a database
# dump does not reveal them, plus a keyed hash (HMAC-SHA256) so equality lookups and uniqueness work without
# decrypting. Both keys are derived from the app's SECRET_KEY with HKDF under different labels, so one never
# serves as the other and neither is the SECRET_KEY itself (which also signs tokens).

_FIELD_PREFIX = "v1:"


@functools.lru_cache(maxsize=8)
def _derived_key(secret: str, label: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"workbench.privacy", info=label).derive(secret.encode())


@functools.lru_cache(maxsize=8)
def _aead(secret: str):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(_derived_key(secret, b"field-encryption:v1"))


def encrypt_field(plaintext: str | None, secret: str, *, context: str = "") -> str | None:
    """AES-GCM with a random 96-bit nonce: `v1:<base64(nonce + ciphertext + tag)>`. `context` (e.g. the column
    name) is bound as associated data, so a value copied into another column does not decrypt there."""
    if plaintext is None:
        return None
    nonce = os.urandom(12)
    sealed = _aead(secret).encrypt(nonce, plaintext.encode(), context.encode())
    return _FIELD_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")


def decrypt_field(token: str | None, secret: str, *, context: str = "") -> str | None:
    """The plaintext of `encrypt_field`; raises `ValueError` when the token was altered or the key differs."""
    if token is None:
        return None
    if not token.startswith(_FIELD_PREFIX):
        raise ValueError("unknown field-encryption format")
    from cryptography.exceptions import InvalidTag

    raw = base64.b64decode(token[len(_FIELD_PREFIX) :])
    try:
        return _aead(secret).decrypt(raw[:12], raw[12:], context.encode()).decode()
    except InvalidTag as exc:
        raise ValueError("field does not decrypt with this key") from exc


def lookup_hash(value: str, secret: str, *, context: str = "") -> str:
    """HMAC-SHA256 (hex) of `value` under a key derived for lookups: equal values, equal hashes; no key, no
    dictionary attack on the 10^10-ish space of ID numbers."""
    key = _derived_key(secret, b"lookup-hash:v1")
    return hmac.new(key, f"{context}\x00{value}".encode(), hashlib.sha256).hexdigest()

"""Masking of personal identifiers for display (reference/domain.md §6.3): lists and logs never show them whole."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa


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


def mask_name(name: str) -> str:
    """`张三` → `张*`, `张三丰` → `张*丰`, `欧阳娜娜` → `欧**娜`: enough for a person to know it is them, for group
    contexts where others read along."""
    name = name.strip()
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


# -- encryption at rest and keyed lookup hashes (reference/domain.md §6) -----------------------------------------
# ID numbers, phones, clinical summaries and documents are sensitive personal information: stored encrypted
# (AES-256-GCM) so a database dump does not reveal them, plus a keyed hash (HMAC-SHA256) of ID numbers so equality
# lookups and uniqueness work without decrypting. The keys form a `FieldKeyring` (settings FIELD_KEYS and
# LOOKUP_KEYS): the first field key encrypts, every one decrypts, so a key is rotated by putting a new one first and
# re-encrypting (`flask rekey`, `rekey_table`); lookups try every lookup key, so hashes can be recomputed under a
# new one while the app runs. Without
# those settings both keys are derived from SECRET_KEY with HKDF under their own labels (the v1 format).

_V1 = "v1:"  # v1:<base64(nonce + ciphertext + tag)>, the SECRET_KEY-derived key
_V2 = "v2:"  # v2:<kid>:<base64(nonce + ciphertext + tag)>, a FIELD_KEYS key
LEGACY_KID = "v1"


@functools.lru_cache(maxsize=8)
def _derived_key(secret: str, label: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"workbench.privacy", info=label).derive(secret.encode())


@dataclass(frozen=True)
class FieldKeyring:
    """Field-encryption keys `(kid, 32 bytes)`, the first encrypting, and lookup-hash keys, the first hashing."""

    field_keys: tuple[tuple[str, bytes], ...]
    lookup_keys: tuple[tuple[str, bytes], ...]

    @classmethod
    def build(
        cls,
        secret_key: str,
        field_keys: Sequence[tuple[str, bytes]] = (),
        lookup_keys: Sequence[tuple[str, bytes]] = (),
    ) -> FieldKeyring:
        """The configured keys, each list followed by the SECRET_KEY-derived one (`v1`), which still reads and
        finds what was stored before FIELD_KEYS / LOOKUP_KEYS were set."""
        legacy_field = (LEGACY_KID, _derived_key(secret_key, b"field-encryption:v1"))
        legacy_lookup = (LEGACY_KID, _derived_key(secret_key, b"lookup-hash:v1"))
        return cls((*field_keys, legacy_field), (*lookup_keys, legacy_lookup))

    @property
    def current_kid(self) -> str:
        return self.field_keys[0][0]

    def field_key(self, kid: str) -> bytes:
        for key_id, key in self.field_keys:
            if key_id == kid:
                return key
        raise ValueError(f"no field key {kid!r} configured")


def keyring() -> FieldKeyring:
    """The application's keyring (settings SECRET_KEY, FIELD_KEYS, LOOKUP_KEYS), built once per app."""
    from flask import current_app

    ring = current_app.extensions.get("workbench.field_keyring")
    if ring is None:
        settings = current_app.config["SETTINGS"]
        ring = FieldKeyring.build(settings.secret_key, settings.field_keys, settings.lookup_keys)
        current_app.extensions["workbench.field_keyring"] = ring
    return ring


def _keyring(keys: FieldKeyring | str) -> FieldKeyring:
    return keys if isinstance(keys, FieldKeyring) else _legacy_keyring(keys)


@functools.lru_cache(maxsize=8)
def _legacy_keyring(secret: str) -> FieldKeyring:
    return FieldKeyring.build(secret)


@functools.lru_cache(maxsize=16)
def _aead(key: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def encrypt_field(plaintext: str | None, keys: FieldKeyring | str, *, context: str = "") -> str | None:
    """AES-GCM with a random 96-bit nonce under the current key. `context` (e.g. the column name) is bound as
    associated data, so a value copied into another column does not decrypt there. `keys` may be a bare secret
    (the SECRET_KEY-derived v1 key)."""
    if plaintext is None:
        return None
    ring = _keyring(keys)
    kid, key = ring.field_keys[0]
    nonce = os.urandom(12)
    sealed = base64.b64encode(nonce + _aead(key).encrypt(nonce, plaintext.encode(), context.encode())).decode()
    return _V1 + sealed if kid == LEGACY_KID else f"{_V2}{kid}:{sealed}"


def field_kid(token: str) -> str:
    """Which key a stored value was encrypted with."""
    if token.startswith(_V1):
        return LEGACY_KID
    if token.startswith(_V2):
        return token[len(_V2) :].partition(":")[0]
    raise ValueError("unknown field-encryption format")


def decrypt_field(token: str | None, keys: FieldKeyring | str, *, context: str = "") -> str | None:
    """The plaintext of `encrypt_field`; raises `ValueError` when the token was altered or its key is missing."""
    if token is None:
        return None
    kid = field_kid(token)
    sealed = token[len(_V1) :] if kid == LEGACY_KID else token[len(_V2) + len(kid) + 1 :]
    from cryptography.exceptions import InvalidTag

    raw = base64.b64decode(sealed)
    try:
        return _aead(_keyring(keys).field_key(kid)).decrypt(raw[:12], raw[12:], context.encode()).decode()
    except InvalidTag as exc:
        raise ValueError("field does not decrypt with this key") from exc


def encrypt_bytes(data: bytes, keys: FieldKeyring | str, *, context: str = "") -> bytes:
    """`encrypt_field` for documents (referral attachments): the same key and AES-GCM, raw bytes without base64,
    `v1:` or `v2:<kid>:` then nonce, ciphertext and tag."""
    kid, key = _keyring(keys).field_keys[0]
    nonce = os.urandom(12)
    prefix = _V1.encode() if kid == LEGACY_KID else f"{_V2}{kid}:".encode()
    return prefix + nonce + _aead(key).encrypt(nonce, data, context.encode())


def decrypt_bytes(token: bytes, keys: FieldKeyring | str, *, context: str = "") -> bytes:
    """The plaintext of `encrypt_bytes`; raises `ValueError` when altered or its key is missing."""
    from cryptography.exceptions import InvalidTag

    if token.startswith(_V1.encode()):
        kid, raw = LEGACY_KID, token[len(_V1) :]
    elif token.startswith(_V2.encode()):
        kid_bytes, _, raw = token[len(_V2) :].partition(b":")
        kid = kid_bytes.decode()
    else:
        raise ValueError("unknown field-encryption format")
    try:
        return _aead(_keyring(keys).field_key(kid)).decrypt(raw[:12], raw[12:], context.encode())
    except InvalidTag as exc:
        raise ValueError("document does not decrypt with this key") from exc


def bytes_kid(token: bytes) -> str:
    """Which key a stored document was encrypted with."""
    return field_kid(token[:40].decode("ascii", errors="replace"))


def lookup_hashes(value: str, keys: FieldKeyring | str, *, context: str = "") -> list[str]:
    """HMAC-SHA256 (hex) of `value` under every lookup key, the current one first: a lookup matches any, so rows
    hashed under a previous key are still found while `rekey` recomputes them. No key, no dictionary attack on
    the 10^10-ish space of ID numbers."""
    message = f"{context}\x00{value}".encode()
    return [hmac.new(key, message, hashlib.sha256).hexdigest() for _kid, key in _keyring(keys).lookup_keys]


def lookup_hash(value: str, keys: FieldKeyring | str, *, context: str = "") -> str:
    """The hash under the current lookup key: what is stored."""
    return lookup_hashes(value, keys, context=context)[0]


# -- rotation -----------------------------------------------------------------------------------------------------


def rekey_table(model: type, rekey_row: Callable[[Any, FieldKeyring], bool], batch_size: int = 500) -> dict[str, int]:
    """Bring a table's encrypted columns to the current keys: rows in batches by id, each batch locked and committed
    (`flask rekey` can be stopped and run again); `rekey_row(row, ring)` changes what is stale and says whether it
    changed anything. Returns rows seen and rows changed."""
    from workbench import db

    ring = keyring()
    session = db.session()
    seen = changed = after = 0
    while rows := session.scalars(
        sa.select(model).where(model.id > after).order_by(model.id).limit(batch_size).with_for_update()
    ).all():
        for row in rows:
            seen += 1
            changed += bool(rekey_row(row, ring))
        after = rows[-1].id
        session.commit()
    return {"rows": seen, "rekeyed": changed}


def rekey_field(token: str | None, ring: FieldKeyring, context: str) -> str | None:
    """`token` re-encrypted under the current key, or unchanged when it already is (None stays None)."""
    if token is None or field_kid(token) == ring.current_kid:
        return token
    return encrypt_field(decrypt_field(token, ring, context=context), ring, context=context)

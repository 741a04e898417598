"""DingTalk's callback crypto, written from reference/dingtalk.md §3.3 (not shared with the product).

HTTP push: AES-256-CBC with IV = key[:16] over `random16 || uint32_be(len) || msg || owner_key`, padded to a
32-byte block, plus a sha1 signature over the sorted four strings. Also the two HMAC signatures DingTalk uses:
custom-robot 加签 (§4.1) and card callback `x-ddpaas-signature` (§5.3).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_ALPHANUM = string.ascii_letters + string.digits
BLOCK = 32


class CryptoError(ValueError):
    """The ciphertext, padding or owner key does not check out."""


def random_text(length: int) -> str:
    """Random ASCII letters and digits, as DingTalk uses for random16 and nonces."""
    return "".join(secrets.choice(_ALPHANUM) for _ in range(length))


def _key(aes_key: str) -> bytes:
    key = base64.b64decode(aes_key + "=")
    if len(key) != 32:
        raise CryptoError("illegal aes key")
    return key


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """sha1 hex over the lexicographically sorted concatenation of the four strings."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()


def encrypt(aes_key: str, message: str, owner_key: str, random16: str | None = None) -> str:
    """Encrypt `message` for the receiver; `random16` is fixed only to reproduce the official vectors."""
    key = _key(aes_key)
    prefix = (random16 or random_text(16)).encode()
    body = message.encode()
    raw = prefix + struct.pack(">I", len(body)) + body + owner_key.encode()
    pad = BLOCK - len(raw) % BLOCK
    raw += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(raw) + encryptor.finalize()).decode()


def decrypt(aes_key: str, encrypted: str, owner_key: str) -> str:
    """Decrypt and check the trailing owner key; raises CryptoError on any mismatch."""
    key = _key(aes_key)
    try:
        data = base64.b64decode(encrypted, validate=True)
    except ValueError as exc:
        raise CryptoError("not base64") from exc
    if not data or len(data) % 16:
        raise CryptoError("bad ciphertext length")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= BLOCK or len(plain) < pad + 20:
        raise CryptoError("bad padding")
    plain = plain[:-pad]
    (length,) = struct.unpack(">I", plain[16:20])
    if 20 + length > len(plain):
        raise CryptoError("bad length")
    if plain[20 + length :] != owner_key.encode():
        raise CryptoError("owner key mismatch")
    try:
        return plain[20 : 20 + length].decode()
    except UnicodeDecodeError as exc:
        raise CryptoError("message is not UTF-8") from exc


def robot_sign(secret: str, timestamp: str) -> str:
    """Custom-robot 加签: base64(HMAC_SHA256(secret, f"{timestamp}\\n{secret}")) (not URL-encoded)."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def ddpaas_signature(api_secret: str, timestamp: str) -> str:
    """Card HTTP callback signature: base64(HMAC_SHA256(apiSecret, timestamp))."""
    digest = hmac.new(api_secret.encode(), timestamp.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()

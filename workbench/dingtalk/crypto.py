"""DingTalk's HTTP-callback crypto (reference/dingtalk.md §3.3): sha1 signature, AES-256-CBC with IV = key[:16],
plaintext `random16 || uint32_be(len) || message || owner key`, padded to a 32-byte block."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import string
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32


class CallbackCryptoError(ValueError):
    """The callback cannot be trusted: bad signature, undecryptable body or wrong owner key."""


class CallbackCrypto:
    def __init__(self, token: str, aes_key: str, owner_key: str) -> None:
        self.token = token
        self.owner_key = owner_key.encode()
        self.key = base64.b64decode(aes_key + "=")
        if len(self.key) != 32:
            raise ValueError("the AES key must decode to 32 bytes")

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return hashlib.sha1("".join(sorted([self.token, timestamp, nonce, encrypted])).encode()).hexdigest()

    def verify(self, signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        if not hmac.compare_digest(self.signature(timestamp, nonce, encrypted), signature.lower()):
            raise CallbackCryptoError("signature mismatch")

    def decrypt(self, encrypted: str) -> str:
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise CallbackCryptoError("body is not base64") from None
        if not data or len(data) % 16:
            raise CallbackCryptoError("body is not whole AES blocks")
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise CallbackCryptoError("bad padding")
        plain = plain[:-pad]
        if len(plain) < 20:
            raise CallbackCryptoError("too short")
        (length,) = struct.unpack(">I", plain[16:20])
        message, owner = plain[20 : 20 + length], plain[20 + length :]
        if len(message) != length:
            raise CallbackCryptoError("length field does not match")
        if not hmac.compare_digest(owner, self.owner_key):
            raise CallbackCryptoError("owner key mismatch")
        try:
            return message.decode()
        except UnicodeDecodeError:
            raise CallbackCryptoError("message is not UTF-8") from None

    def encrypt(self, message: str, random16: bytes | None = None) -> str:
        random16 = random16 or os.urandom(16)
        raw = random16 + struct.pack(">I", len(message.encode())) + message.encode() + self.owner_key
        pad = BLOCK - len(raw) % BLOCK
        raw += bytes([pad]) * pad
        encryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).encryptor()
        return base64.b64encode(encryptor.update(raw) + encryptor.finalize()).decode()

    def reply(self, message: str, timestamp: str) -> dict[str, str]:
        """The encrypted reply DingTalk expects (`success` for events and check_url)."""
        nonce = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))
        encrypted = self.encrypt(message)
        return {
            "msg_signature": self.signature(timestamp, nonce, encrypted),
            "timeStamp": timestamp,
            "nonce": nonce,
            "encrypt": encrypted,
        }

"""The callback crypto against the official test vectors of reference/dingtalk.md §3.3."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workbench.dingtalk.crypto import CallbackCrypto, CallbackCryptoError

VECTORS = [
    # token, aes_key, owner_key, timestamp, nonce, signature, encrypt, plaintext, random16
    (
        "123456",
        "1234567890123456789012345678901234567890123",
        "dingsnotzck6pm5veliw",
        "1614767836",
        "A7Co0cJLMzIDtMMI",
        "9a95a004dd16f5c307e849b994173f76aa26e5eb",
        "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA==",
        "success",
        "dICkEDLj0eb6yAbc",
    ),
    (
        "mryue",
        "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
        "ding6ccabc44d2c8d38b",
        "1608001896814",
        "WL4PK6yA",
        "03044561471240d4a14bb09372dfcfd4fd0e40cb",
        "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3",
        '{"EventType":"check_url"}',
        "l7Y3EcX2CU5w8av3",
    ),
    (
        "tokenxxxx",
        "o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus",
        "dingxxxxxx",
        "1605695694141",
        "WelUQl6bCqcBa2fM",
        "f36f4ba5337d426c7d4bca0dbcb06b3ddc1388fc",
        "X1VSe9cTJUMZu60d3kyLYTrBq5578ZRJtteU94wG0Q4Uk6E/wQYeJRIC0/UFW5Wkya1Ihz9oXAdLlyC9TRaqsQ==",
        "success",
        "WelUQl6bCqcBa2fM",
    ),
    (
        "123456",
        "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij",
        "suite4xxxxxxxxxxxxxxx",
        "1445827045067",
        "nEXhMP4r",
        "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0",
        "1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JVYa9VrYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ==",
        '{"EventType":"check_create_suite_url","Random":"LPIdSnlF","TestSuiteKey":"suite4xxxxxxxxxxxxxxx"}',
        "hU3bEfGZZewzhG5a",
    ),
]


@pytest.mark.parametrize("vector", VECTORS, ids=["V1-official", "V2", "V3", "V4"])
def test_official_vectors(vector):
    token, aes_key, owner, timestamp, nonce, signature, encrypted, plaintext, random16 = vector
    crypto = CallbackCrypto(token, aes_key, owner)
    assert crypto.signature(timestamp, nonce, encrypted) == signature
    crypto.verify(signature, timestamp, nonce, encrypted)
    assert crypto.decrypt(encrypted) == plaintext
    # With the recovered random prefix, encryption reproduces DingTalk's ciphertext byte for byte.
    assert crypto.encrypt(plaintext, random16.encode()) == encrypted


def test_wrong_owner_key_is_refused():
    token, aes_key, _owner, _ts, _nonce, _sig, encrypted, _plain, _rnd = VECTORS[0]
    with pytest.raises(CallbackCryptoError, match="owner"):
        CallbackCrypto(token, aes_key, "dingsomeoneelse00000").decrypt(encrypted)


def test_tampered_signature_and_body_are_refused():
    token, aes_key, owner, ts, nonce, sig, encrypted, _plain, _rnd = VECTORS[0]
    crypto = CallbackCrypto(token, aes_key, owner)
    with pytest.raises(CallbackCryptoError):
        crypto.verify(sig.replace("9", "8", 1), ts, nonce, encrypted)
    flipped = base64.b64encode(bytes([base64.b64decode(encrypted)[0] ^ 1]) + base64.b64decode(encrypted)[1:])
    with pytest.raises(CallbackCryptoError):
        crypto.verify(sig, ts, nonce, flipped.decode())
    for garbage in ("not base64!", "AAAA", base64.b64encode(b"x" * 48).decode()):
        with pytest.raises(CallbackCryptoError):
            crypto.decrypt(garbage)


@given(message=st.text(max_size=3000))
def test_round_trip_any_message(message):
    crypto = CallbackCrypto("tok", "c2FuZGJveC1jYWxsYmFjay1hZXMta2V5LTMyYnl0ZXM", "dingsandboxappkey001")
    assert crypto.decrypt(crypto.encrypt(message)) == message

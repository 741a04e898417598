import pytest
from hypothesis import given
from hypothesis import strategies as st

from workbench.privacy import (
    FieldKeyring,
    decrypt_field,
    encrypt_field,
    field_kid,
    lookup_hash,
    lookup_hashes,
    mask_id_number,
    mask_mobile,
    mask_name,
)


def test_mobile_masking():
    assert mask_mobile("13812345678") == "138****5678"
    assert mask_mobile("+86-13812345678") == "+86-138****5678"
    assert mask_mobile("12345") == "*****"
    assert mask_mobile("") is None


def test_name_masking():
    names = ("张三", "张三丰", "欧阳娜娜", "王", " 李四 ")
    assert [mask_name(n) for n in names] == ["张*", "张*丰", "欧**娜", "王", "李*"]


def test_id_number_masking():
    assert mask_id_number("330102199003071234") == "330***********1234"
    assert mask_id_number("33010219900307123X") == "330***********123X"
    assert mask_id_number(None) is None


@given(st.text(alphabet="0123456789", min_size=8, max_size=20))
def test_masks_never_reveal_the_middle(number):
    masked = mask_id_number(number)
    assert len(masked) == len(number)
    assert masked[3:-4] == "*" * (len(number) - 7)


def test_field_keyring_rotation_reads_every_key_and_writes_the_first():
    secret = "a-secret-key-0123456789"
    old = encrypt_field("330102199003071234", secret, context="resident.id_number")  # v1, from SECRET_KEY
    ring = FieldKeyring.build(secret, [("k2", b"2" * 32), ("k1", b"1" * 32)], [("h2", b"h" * 32)])
    new = encrypt_field("330102199003071234", ring, context="resident.id_number")
    assert old.startswith("v1:") and new.startswith("v2:k2:")
    assert field_kid(old) == "v1" and field_kid(new) == "k2"
    for token in (old, new):
        assert decrypt_field(token, ring, context="resident.id_number") == "330102199003071234"
    # Once rekeyed under configured keys, SECRET_KEY no longer matters; a key dropped from the ring is unreadable.
    other_secret = FieldKeyring.build("another-secret-entirely", [("k2", b"2" * 32)])
    assert decrypt_field(new, other_secret, context="resident.id_number") == "330102199003071234"
    with pytest.raises(ValueError, match="k2"):
        decrypt_field(new, FieldKeyring.build(secret, [("k3", b"3" * 32)]), context="resident.id_number")
    # Lookups hash under every lookup key, the current first; the SECRET_KEY-derived hash stays findable.
    hashes = lookup_hashes("330102199003071234", ring, context="resident.id_number")
    assert hashes[0] == lookup_hash("330102199003071234", ring, context="resident.id_number")
    assert hashes[1] == lookup_hash("330102199003071234", secret, context="resident.id_number")
    assert hashes[0] != hashes[1]

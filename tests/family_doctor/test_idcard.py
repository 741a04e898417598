"""GB 11643 ID numbers and the field encryption helpers: no database needed."""

from __future__ import annotations

from datetime import date

import pytest

from mini_apps.family_doctor import idcard
from workbench import privacy

TODAY = date(2026, 11, 23)


def test_a_valid_number_gives_birth_date_and_sex():
    parsed = idcard.parse("11010519491231002X", TODAY)  # the GB 11643 standard's own example
    assert parsed == idcard.IdNumber("11010519491231002X", date(1949, 12, 31), "F")
    male = idcard.make("330102", date(1990, 3, 7), 123)
    assert idcard.parse(male, TODAY).sex == "M"  # odd 17th digit


def test_lower_case_x_is_normalised():
    assert idcard.parse(" 11010519491231002x ", TODAY).number == "11010519491231002X"


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("110105194912310021", "校验码错误"),
        ("11010519491231002", "18位"),
        ("1101051949123100X2", "18位"),
        (idcard.make("330102", date(1990, 1, 1), 1)[:10] + "0230" + "0011", "出生日期"),  # 30 February
        (idcard.make("330102", date(2027, 1, 1), 5), "出生日期"),  # in the future
        (idcard.make("330102", date(1890, 1, 1), 5), "出生日期"),
        (idcard.make("990102", date(1990, 1, 1), 5), "行政区划"),
        (idcard.make("330102", date(1990, 1, 1), 0), "顺序码"),
        ("", "不能为空"),
    ],
)
def test_invalid_numbers_are_refused_with_a_reason(number, reason):
    with pytest.raises(idcard.InvalidIdNumber, match=reason):
        idcard.parse(number, TODAY)


def test_field_encryption_round_trips_and_binds_key_and_context():
    secret = "a-secret-key-of-enough-length"
    token = privacy.encrypt_field("330102199003071234", secret, context="resident.id_number")
    assert "330102199003071234" not in token and token.startswith("v1:")
    assert privacy.encrypt_field("330102199003071234", secret, context="resident.id_number") != token  # random nonce
    assert privacy.decrypt_field(token, secret, context="resident.id_number") == "330102199003071234"
    with pytest.raises(ValueError):
        privacy.decrypt_field(token, "another-secret-key-entirely", context="resident.id_number")
    with pytest.raises(ValueError):
        privacy.decrypt_field(token, secret, context="resident.phone")


def test_lookup_hash_is_keyed_and_stable():
    one = privacy.lookup_hash("330102199003071234", "secret-one-0123456")
    assert one == privacy.lookup_hash("330102199003071234", "secret-one-0123456")
    assert one != privacy.lookup_hash("330102199003071234", "secret-two-0123456")
    assert len(one) == 64

from hypothesis import given
from hypothesis import strategies as st

from workbench.privacy import mask_id_number, mask_mobile


def test_mobile_masking():
    assert mask_mobile("13812345678") == "138****5678"
    assert mask_mobile("+86-13812345678") == "+86-138****5678"
    assert mask_mobile("12345") == "*****"
    assert mask_mobile("") is None


def test_id_number_masking():
    assert mask_id_number("330102199003071234") == "330***********1234"
    assert mask_id_number("33010219900307123X") == "330***********123X"
    assert mask_id_number(None) is None


@given(st.text(alphabet="0123456789", min_size=8, max_size=20))
def test_masks_never_reveal_the_middle(number):
    masked = mask_id_number(number)
    assert len(masked) == len(number)
    assert masked[3:-4] == "*" * (len(number) - 7)

"""Resident ID numbers (居民身份证号码, GB 11643-1999; reference/domain.md §6.4): structure and checksum."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK = "10X98765432"
SHAPE = re.compile(r"^\d{17}[\dX]$")
# First two digits of the address code: provinces, plus 81/82/83 (HK, Macau, Taiwan residence permits).
PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 81, 82, 83}
)


@dataclass(frozen=True)
class IdNumber:
    number: str  # normalised: 18 characters, upper-case X
    birth_date: date
    sex: str  # M | F


class InvalidIdNumber(ValueError):
    """`str(exc)` is the reason, in Chinese, for the person who typed it."""


def check_digit(first17: str) -> str:
    return CHECK[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def parse(raw: str, today: date | None = None) -> IdNumber:
    """Validate and normalise (`x` → `X`, spaces trimmed); derive birth date and sex."""
    number = (raw or "").strip().upper()
    if not number:
        raise InvalidIdNumber("身份证号不能为空")
    if not SHAPE.match(number):
        raise InvalidIdNumber("身份证号须为18位：17位数字加1位校验码（数字或X）")
    if int(number[:2]) not in PROVINCES:
        raise InvalidIdNumber("身份证号前6位行政区划代码无效")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidIdNumber("身份证号中的出生日期无效") from None
    if born < date(1900, 1, 1) or born > (today or date.today()):
        raise InvalidIdNumber("身份证号中的出生日期无效")
    if number[14:17] == "000":
        raise InvalidIdNumber("身份证号顺序码无效")
    if check_digit(number[:17]) != number[17]:
        raise InvalidIdNumber("身份证号校验码错误")
    return IdNumber(number, born, "M" if int(number[16]) % 2 else "F")


def make(address: str, born: date, sequence: int) -> str:
    """A valid number (for tests and fixtures): 6-digit address code, birth date, 3-digit sequence."""
    first17 = f"{address}{born:%Y%m%d}{sequence:03d}"
    return first17 + check_digit(first17)

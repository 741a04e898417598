"""The ICD-10 diagnosis list with simplified-Chinese names: validate a code, search by code, name, alias or 拼音首字母.

The data is data/icd10_zh.csv (WHO ICD-10, 12,172 active codes, GNU Health's Chinese names, GPL-3.0-or-later; see
data/README.md), built by scripts/build-icd10.py. It is read once into memory; a query scans the whole list, which is
fast enough without an index: measured on the full list (CPython 3.11, one core), a query takes about 1–2 ms
(Chinese, pinyin) to 2–3.5 ms (a code prefix or a single letter, which match thousands of rows); loading the file takes
70–130 ms, once per process.

Codes: WHO codes are three characters (I10) or four with a dot (I63.9). The 医保版/临床版 2.0 codes extend them
(I10.x00x002, E11.900x001): such a code is accepted when its WHO part is in the list, and kept as given, since that is
what the hospital's HIS records.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent / "data" / "icd10_zh.csv"

# An extended code after upper-casing and dropping the dot: category, a 4th character (X = "none"), two more
# characters and an optional x-extension, e.g. I10X00X002, E11900X001, E11900.
_EXTENDED = re.compile(r"([A-Z]\d\d)([0-9X])([0-9X]{2})(X\d{3})?")
_STRIP = re.compile(r"[\s.†*]")


@dataclass(frozen=True)
class Diagnosis:
    code: str
    name: str


@dataclass(frozen=True)
class _Entry:
    diagnosis: Diagnosis
    key: str  # the code upper-cased without the dot: I639
    initials: str
    aliases: tuple[str, ...]
    alias_initials: tuple[str, ...]
    # Everything a text query can match, joined, so that most entries are rejected by one substring test.
    haystack: str


def _key(code: str) -> str:
    return _STRIP.sub("", code).upper()


@cache
def _entries() -> tuple[_Entry, ...]:
    with open(DATA_FILE, encoding="utf-8", newline="") as f:
        return tuple(
            _Entry(
                diagnosis=Diagnosis(row["code"], row["name"]),
                key=_key(row["code"]),
                initials=row["initials"],
                aliases=tuple(row["aliases"].split("|")) if row["aliases"] else (),
                alias_initials=tuple(row["alias_initials"].split("|")) if row["alias_initials"] else (),
                haystack="\n".join((row["name"], row["initials"], row["aliases"], row["alias_initials"])),
            )
            for row in csv.DictReader(f)
        )


@cache
def _by_key() -> dict[str, _Entry]:
    return {entry.key: entry for entry in _entries()}


def lookup(code: str) -> Diagnosis | None:
    """The diagnosis for a WHO code in any spelling (i10, I63.9, i639) or for a 医保版/临床版 extension of a known WHO
    code (returned with the extended code, its name taken from the WHO code); None when unknown."""
    key = _key(code or "")
    by_key = _by_key()
    entry = by_key.get(key)
    if entry is not None:
        return entry.diagnosis
    m = _EXTENDED.fullmatch(key)
    if m is None:
        return None
    category, fourth, rest, extension = m.groups()
    # Prefer the WHO subcategory; fall back to the category, since the national editions add 4th characters of
    # their own under WHO categories.
    entry = (by_key.get(category + fourth) if fourth != "X" else None) or by_key.get(category)
    if entry is None:
        return None
    given = f"{category}.{fourth}{rest}{extension or ''}".replace("X", "x")
    return Diagnosis(given, entry.diagnosis.name)


# Ranks, best first.
_EXACT_CODE, _CODE_PREFIX, _EXACT_NAME, _NAME_PREFIX, _SUBSTRING = range(5)


def _text_rank(query: str, names: tuple[str, ...]) -> tuple[int, int] | None:
    """(rank, length of the matching name): the best match of the query among the names, or None."""
    best = None
    for name in names:
        if name == query:
            rank = _EXACT_NAME
        elif name.startswith(query):
            rank = _NAME_PREFIX
        elif query in name:
            rank = _SUBSTRING
        else:
            continue
        if best is None or (rank, len(name)) < best:
            best = (rank, len(name))
    return best


def search(query: str, limit: int = 20) -> list[Diagnosis]:
    """Diagnoses matching a code prefix (i63, I63.9), a Chinese substring of the name or of an everyday alias
    (冠心病, 慢阻肺), or a substring of the 拼音首字母 (gxy). Ranked: exact code, code prefix, exact name or alias,
    name or alias prefix, substring; ties go to aliases, then categories before subcategories, then shorter names."""
    text = (query or "").strip()
    if not text or limit < 1:
        return []
    key = _key(text)
    code_like = bool(re.fullmatch(r"[A-Z][0-9X]*", key))
    letters = text.lower() if re.fullmatch(r"[A-Za-z0-9]+", text) else None
    hits: list[tuple[int, int, int, int, Diagnosis]] = []
    for entry in _entries():
        if code_like and entry.key.startswith(key):
            # Code hits keep code order (the sort is stable), categories first.
            rank = _EXACT_CODE if entry.key == key else _CODE_PREFIX
            hits.append((rank, 0, 0, len(entry.key), entry.diagnosis))
            continue
        if text not in entry.haystack and (letters is None or letters not in entry.haystack):
            continue
        matches = []  # (rank, alias first, length of the matching text)
        for via_alias, names, spelled in (
            (0, entry.aliases, entry.alias_initials),
            (1, (entry.diagnosis.name,), (entry.initials,)),
        ):
            for found in (_text_rank(text, names), _text_rank(letters, spelled) if letters else None):
                if found is not None:
                    matches.append((found[0], via_alias, found[1]))
        if matches:
            rank, via_alias, length = min(matches)
            # An alias given to several codes (糖尿病: E11.9, E14.9) lists them in code order.
            hits.append((rank, via_alias, length, len(entry.key), entry.diagnosis))
    hits.sort(key=lambda hit: hit[:4])
    return [hit[4] for hit in hits[:limit]]

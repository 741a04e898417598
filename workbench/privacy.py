"""Masking of personal identifiers for display (reference/domain.md §6.3): lists and logs never show them whole."""

from __future__ import annotations


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

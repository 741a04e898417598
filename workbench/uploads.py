"""Uploaded documents are recognised from their bytes, never from the name or the claimed type: referral
attachments and the evidence behind supervision verdicts use the same checks."""

from __future__ import annotations

# Windows PE, ELF and scripts: refused whatever the name says.
EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"#!")


def sniff(content: bytes) -> str | None:
    """The content type the bytes are, among the documents accepted anywhere (PDF, PNG, JPEG, DICOM); None for
    anything else."""
    if content.startswith(b"%PDF-"):
        return "application/pdf"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(content) >= 132 and content[128:132] == b"DICM":
        return "application/dicom"
    return None


def is_executable(content: bytes) -> bool:
    return content.startswith(EXECUTABLE_MAGIC)

"""Residents' identifiers brought to the current keys by `flask rekey` (workbench.privacy.rekey_table)."""

from __future__ import annotations

from mini_apps.family_doctor.models import Resident
from workbench import privacy

ID_CONTEXT = "resident.id_number"
PHONE_CONTEXT = "resident.phone"


def rekey_resident(resident: Resident, ring: privacy.FieldKeyring) -> bool:
    number = privacy.decrypt_field(resident.id_cipher, ring, context=ID_CONTEXT)
    current = (
        privacy.rekey_field(resident.id_cipher, ring, ID_CONTEXT),
        privacy.rekey_field(resident.phone_cipher, ring, PHONE_CONTEXT),
        privacy.lookup_hash(number, ring, context=ID_CONTEXT),
    )
    if current == (resident.id_cipher, resident.phone_cipher, resident.id_hash):
        return False
    resident.id_cipher, resident.phone_cipher, resident.id_hash = current
    return True


def rekey_residents(batch_size: int = 500) -> dict[str, int]:
    return privacy.rekey_table(Resident, rekey_resident, batch_size)

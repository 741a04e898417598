"""Roster persons' identifying fields brought to the current keys by `flask rekey` (workbench.privacy.rekey_table);
persons whose campaign's retention has ended have nothing left to re-key but their hash."""

from __future__ import annotations

from mini_apps.precision_control.models import CampaignPerson
from workbench import privacy

ID_CONTEXT = "control.id_number"
FIELDS = (
    ("id_cipher", ID_CONTEXT),
    ("name_cipher", "control.name"),
    ("phone_cipher", "control.phone"),
    ("address_cipher", "control.address"),
)


def rekey_person(person: CampaignPerson, ring: privacy.FieldKeyring) -> bool:
    current = {column: privacy.rekey_field(getattr(person, column), ring, context) for column, context in FIELDS}
    if person.id_cipher is not None:
        number = privacy.decrypt_field(person.id_cipher, ring, context=ID_CONTEXT)
        current["id_hash"] = privacy.lookup_hash(number, ring, context=ID_CONTEXT)
    if all(getattr(person, column) == value for column, value in current.items()):
        return False
    for column, value in current.items():
        setattr(person, column, value)
    return True


def rekey_persons(batch_size: int = 500) -> dict[str, int]:
    return privacy.rekey_table(CampaignPerson, rekey_person, batch_size)

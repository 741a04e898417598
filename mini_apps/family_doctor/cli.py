"""`flask family-doctor rekey`: re-encrypt residents' ID numbers and phones under the current field key and
recompute their lookup hashes under the current lookup key (after FIELD_KEYS / LOOKUP_KEYS gained a new first
key). Batches of rows, each committed: it can be stopped and run again, and rows already current are skipped."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from mini_apps.family_doctor.models import Resident
from workbench import db, privacy

family_doctor_cli = AppGroup("family-doctor", help="Family-doctor maintenance.")

ID_CONTEXT = "resident.id_number"
PHONE_CONTEXT = "resident.phone"


def rekey_residents(batch_size: int = 500) -> dict[str, int]:
    """Bring every resident's ciphertexts and hash to the current keys; returns rows seen and rows changed."""
    ring = privacy.keyring()
    session = db.session()
    seen = changed = 0
    after = 0
    while True:
        rows = session.scalars(
            sa.select(Resident).where(Resident.id > after).order_by(Resident.id).limit(batch_size).with_for_update()
        ).all()
        if not rows:
            break
        for resident in rows:
            seen += 1
            number = privacy.decrypt_field(resident.id_cipher, ring, context=ID_CONTEXT)
            current_hash = privacy.lookup_hash(number, ring, context=ID_CONTEXT)
            stale = [
                c for c in (resident.id_cipher, resident.phone_cipher) if c and privacy.field_kid(c) != ring.current_kid
            ]
            if not stale and resident.id_hash == current_hash:
                continue
            phone = privacy.decrypt_field(resident.phone_cipher, ring, context=PHONE_CONTEXT)
            resident.id_cipher = privacy.encrypt_field(number, ring, context=ID_CONTEXT)
            resident.phone_cipher = privacy.encrypt_field(phone, ring, context=PHONE_CONTEXT)
            resident.id_hash = current_hash
            changed += 1
        after = rows[-1].id
        session.commit()
    return {"residents": seen, "rekeyed": changed}


@family_doctor_cli.command("rekey")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10000))
def rekey_command(batch_size: int) -> None:
    """Re-encrypt residents' identifiers under the current keys."""
    result = rekey_residents(batch_size)
    click.echo(f"{result['residents']} residents, {result['rekeyed']} re-encrypted")

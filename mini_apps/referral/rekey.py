"""Referrals' encrypted data brought to the current keys by `flask rekey` (workbench.privacy.rekey_table): the
patient's identifiers and lookup hash, the clinical summary, and attachments' bytes."""

from __future__ import annotations

from mini_apps.referral.models import Referral, ReferralAttachment
from mini_apps.referral.service import ATTACHMENT_CONTEXT, CLINICAL_CONTEXT, ID_CONTEXT, PHONE_CONTEXT
from workbench import privacy


def rekey_referral(referral: Referral, ring: privacy.FieldKeyring) -> bool:
    number = privacy.decrypt_field(referral.patient_id_cipher, ring, context=ID_CONTEXT)
    current = (
        privacy.rekey_field(referral.patient_id_cipher, ring, ID_CONTEXT),
        privacy.rekey_field(referral.patient_phone_cipher, ring, PHONE_CONTEXT),
        privacy.rekey_field(referral.clinical_cipher, ring, CLINICAL_CONTEXT),
        privacy.lookup_hash(number, ring, context=ID_CONTEXT),
    )
    stored = (referral.patient_id_cipher, referral.patient_phone_cipher, referral.clinical_cipher)
    if current == (*stored, referral.patient_id_hash):
        return False
    (
        referral.patient_id_cipher,
        referral.patient_phone_cipher,
        referral.clinical_cipher,
        referral.patient_id_hash,
    ) = current
    return True


def rekey_attachment(attachment: ReferralAttachment, ring: privacy.FieldKeyring) -> bool:
    if privacy.bytes_kid(attachment.content) == ring.current_kid:
        return False
    context = f"{ATTACHMENT_CONTEXT}:{attachment.referral_id}"
    attachment.content = privacy.encrypt_bytes(
        privacy.decrypt_bytes(attachment.content, ring, context=context), ring, context=context
    )
    return True


def rekey_referrals(batch_size: int = 500) -> dict[str, int]:
    return privacy.rekey_table(Referral, rekey_referral, batch_size)


def rekey_attachments(batch_size: int = 500) -> dict[str, int]:
    return privacy.rekey_table(ReferralAttachment, rekey_attachment, batch_size)

"""`flask rekey` covers referrals too: the patient's identifiers and hash, the clinical summary and attachments'
bytes move to the new key and read back the same."""

from __future__ import annotations

import io

import sqlalchemy as sa

from mini_apps.referral.models import Referral, ReferralAttachment
from tests.family_doctor.test_rekey import KEY_1, use_keys
from tests.referral.conftest import ReferralWorld
from tests.referral.test_referrals import PDF, _submitted
from workbench import db, privacy


def test_rekey_moves_referrals_and_attachments_to_the_new_key(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    rid = _submitted(tree_client, w)["id"]
    upload = tree_client.post(
        f"/api/referrals/{rid}/attachments",
        data={"kind": "exam_report", "file": (io.BytesIO(PDF), "心电图报告.pdf")},
        headers=w.doctor.headers,
        content_type="multipart/form-data",
    )
    assert upload.status_code == 201, upload.get_json()
    aid = upload.get_json()["id"]
    before = tree_client.get(f"/api/referrals/{rid}", headers=w.doctor.headers).get_json()

    use_keys(tree_app, f"k1:{KEY_1}", f"h1:{KEY_1}")
    result = tree_app.test_cli_runner().invoke(args=["rekey"])
    assert result.exit_code == 0, result.output
    assert "referrals: 1 rows, 1 re-encrypted" in result.output
    assert "referral attachments: 1 rows, 1 re-encrypted" in result.output
    with tree_app.app_context():
        session = db.session()
        referral = session.get(Referral, rid)
        ciphers = (referral.patient_id_cipher, referral.patient_phone_cipher, referral.clinical_cipher)
        assert {privacy.field_kid(c) for c in ciphers} == {"k1"}
        number = privacy.decrypt_field(referral.patient_id_cipher, privacy.keyring(), context="resident.id_number")
        assert referral.patient_id_hash == privacy.lookup_hash(number, privacy.keyring(), context="resident.id_number")
        content = session.scalar(sa.select(ReferralAttachment.content).where(ReferralAttachment.id == aid))
        assert privacy.bytes_kid(content) == "k1"

    after = tree_client.get(f"/api/referrals/{rid}", headers=w.doctor.headers).get_json()
    assert after["clinical"] == before["clinical"] and after["patient"] == before["patient"]
    document = tree_client.get(f"/api/referrals/{rid}/attachments/{aid}", headers=w.doctor.headers)
    assert document.status_code == 200 and document.data == PDF
    again = tree_app.test_cli_runner().invoke(args=["rekey"])
    assert "referrals: 1 rows, 0 re-encrypted" in again.output

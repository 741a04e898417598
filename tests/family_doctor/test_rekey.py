"""Moving residents' field encryption off SECRET_KEY and rotating keys: old rows stay readable and findable while
`flask rekey` brings them to the current keys; a second run changes nothing."""

from __future__ import annotations

import base64
import dataclasses

import sqlalchemy as sa

from mini_apps.family_doctor.models import Resident
from tests.family_doctor.conftest import World, id_number
from tests.family_doctor.test_api import API, sign
from workbench import db, privacy

KEY_1 = base64.b64encode(b"1" * 32).decode()
KEY_2 = base64.b64encode(b"2" * 32).decode()


def use_keys(app, field_keys: str, lookup_keys: str) -> None:
    """What a restart with new FIELD_KEYS / LOOKUP_KEYS does."""
    from config.settings import _binary_keys

    env = {"FIELD_KEYS": field_keys, "LOOKUP_KEYS": lookup_keys}
    settings = app.config["SETTINGS"]
    app.config["SETTINGS"] = dataclasses.replace(
        settings, field_keys=_binary_keys(env, "FIELD_KEYS"), lookup_keys=_binary_keys(env, "LOOKUP_KEYS")
    )
    app.extensions.pop("workbench.field_keyring", None)


def rows(app) -> list[Resident]:
    with app.app_context():
        return db.session().scalars(sa.select(Resident).order_by(Resident.id)).all()


def test_rekey_moves_rows_to_the_new_keys_and_lookups_work_throughout(tree_app, tree_client, world: World):
    for n in (1, 2, 3):
        assert sign(tree_client, world.doctor, world, n, phone=f"1381234567{n}").status_code == 201
    assert {privacy.field_kid(r.id_cipher) for r in rows(tree_app)} == {"v1"}

    use_keys(tree_app, f"k1:{KEY_1}", f"h1:{KEY_1}")
    # Before the rekey: the same person signing again is found under the old hash, not created twice.
    first = rows(tree_app)[0]
    reply = sign(tree_client, world.doctor, world, 1, phone="13812345671")
    assert reply.status_code == 409, reply.get_json()  # found: they still have an active contract
    assert len(rows(tree_app)) == 3
    new = sign(tree_client, world.doctor, world, 7)  # written under the new keys
    assert new.status_code == 201
    assert {privacy.field_kid(r.id_cipher) for r in rows(tree_app)} == {"v1", "k1"}

    result = tree_app.test_cli_runner().invoke(args=["rekey", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "family-doctor residents: 4 rows, 3 re-encrypted" in result.output
    with tree_app.app_context():
        ring = privacy.keyring()
        for row in rows(tree_app):
            assert privacy.field_kid(row.id_cipher) == "k1" and privacy.field_kid(row.phone_cipher) == "k1"
            number = privacy.decrypt_field(row.id_cipher, ring, context="resident.id_number")
            assert row.id_hash == privacy.lookup_hash(number, ring, context="resident.id_number")
        assert privacy.decrypt_field(rows(tree_app)[0].id_cipher, ring, context="resident.id_number") == id_number(1)
    assert rows(tree_app)[0].id == first.id

    # Nothing left to do; then a rotation to k2 with k1 kept for reading.
    again = tree_app.test_cli_runner().invoke(args=["rekey"])
    assert "family-doctor residents: 4 rows, 0 re-encrypted" in again.output
    use_keys(tree_app, f"k2:{KEY_2},k1:{KEY_1}", f"h1:{KEY_1}")
    assert tree_client.get(f"{API}/residents", headers=world.doctor).get_json()["total"] == 4
    result = tree_app.test_cli_runner().invoke(args=["rekey"])
    assert "family-doctor residents: 4 rows, 4 re-encrypted" in result.output
    assert {privacy.field_kid(r.id_cipher) for r in rows(tree_app)} == {"k2"}


def test_a_re_import_after_a_lookup_key_rotation_finds_the_stored_residents(tree_app, tree_client, world: World):
    from tests.family_doctor.test_api import _counts, _csv, _rows, _upload

    content = _csv(_rows(world))
    assert _upload(tree_client, world.doctor, content, "签约.csv").get_json()["created_residents"] == 3
    use_keys(tree_app, f"k1:{KEY_1}", f"h1:{KEY_1}")
    again = _upload(tree_client, world.doctor, content, "签约.csv").get_json()
    assert again["created_residents"] == 0 and again["unchanged_rows"] == 3
    assert _counts(tree_app) == (3, 3)

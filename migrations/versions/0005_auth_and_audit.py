"""auth and audit

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 22:40:38.150248
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import workbench.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=140), nullable=False),
        sa.Column("actor_member_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=True),
        sa.Column("resource_id", sa.String(length=128), nullable=True),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_records")),
    )
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_records_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_records_actor"), ["actor"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_records_at"), ["at"], unique=False)
        batch_op.create_index("ix_audit_records_node_at", ["node_id", "at"], unique=False)

    op.create_table(
        "auth_refresh_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("replaced_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("client", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["org_members.id"],
            name=op.f("fk_auth_refresh_tokens_member_id_org_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_refresh_tokens_token_hash")),
    )
    with op.batch_alter_table("auth_refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_refresh_tokens_family"), ["family"], unique=False)
        batch_op.create_index(batch_op.f("ix_auth_refresh_tokens_member_id"), ["member_id"], unique=False)

    op.create_table(
        "auth_role_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("granted_by", sa.String(length=140), nullable=False),
        sa.Column("granted_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.String(length=140), nullable=True),
        sa.Column("revoked_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["org_members.id"],
            name=op.f("fk_auth_role_grants_member_id_org_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["node_id"], ["org_nodes.id"], name=op.f("fk_auth_role_grants_node_id_org_nodes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_role_grants")),
    )
    with op.batch_alter_table("auth_role_grants", schema=None) as batch_op:
        batch_op.create_index("ix_auth_role_grants_member_live", ["member_id", "revoked_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_auth_role_grants_node_id"), ["node_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auth_role_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_role_grants_node_id"))
        batch_op.drop_index("ix_auth_role_grants_member_live")

    op.drop_table("auth_role_grants")
    with op.batch_alter_table("auth_refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_refresh_tokens_member_id"))
        batch_op.drop_index(batch_op.f("ix_auth_refresh_tokens_family"))

    op.drop_table("auth_refresh_tokens")
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_records_node_at")
        batch_op.drop_index(batch_op.f("ix_audit_records_at"))
        batch_op.drop_index(batch_op.f("ix_audit_records_actor"))
        batch_op.drop_index(batch_op.f("ix_audit_records_action"))

    op.drop_table("audit_records")

"""Initial schema: items, users, events, impressions, training jobs, leases.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("item_id", sa.String(255), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name="pk_items"),
    )
    op.create_index("ix_items_updated_at", "items", ["updated_at"])
    op.create_table(
        "users",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_users"),
    )
    op.create_table(
        "events",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(255), nullable=True),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("item_id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("occurred_at", sa.Double(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_user_item", "events", ["user_id", "item_id"])
    op.create_table(
        "impressions",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("item_id", sa.String(255), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("served_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_impressions"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_impressions_served_at", "impressions", ["served_at"])
    op.create_index("ix_impressions_user_item", "impressions", ["user_id", "item_id"])
    op.create_table(
        "training_jobs",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("algorithm", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(128), nullable=True),
        sa.Column("activated", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("events_watermark", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_training_jobs"),
    )
    op.create_index("ix_training_jobs_created_at", "training_jobs", ["created_at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_index("ix_training_jobs_created_at", table_name="training_jobs")
    op.drop_table("training_jobs")
    op.drop_index("ix_impressions_user_item", table_name="impressions")
    op.drop_index("ix_impressions_served_at", table_name="impressions")
    op.drop_table("impressions")
    op.drop_index("ix_events_user_item", table_name="events")
    op.drop_table("events")
    op.drop_table("users")
    op.drop_index("ix_items_updated_at", table_name="items")
    op.drop_table("items")

"""Impressions without the (user_id, item_id) index.

Nothing looks impressions up by user and item: the online metrics read them by time
(``ix_impressions_served_at``) and find the events through ``ix_events_user_item``. The
index cost a third of every impression's write, ten rows per list served.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.drop_index("ix_impressions_user_item", table_name="impressions")


def downgrade() -> None:
    op.create_index("ix_impressions_user_item", "impressions", ["user_id", "item_id"])

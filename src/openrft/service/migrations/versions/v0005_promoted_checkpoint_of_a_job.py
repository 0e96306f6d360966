"""A job's promoted checkpoint as a column of its own.

- `jobs.promoted_checkpoint`: the checkpoint id a succeeded job's `fine_tuned_model` serves
  (`POST /v1/fine_tuning/jobs/{id}/checkpoints/{checkpoint_id}/promote`); None: its last one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("promoted_checkpoint", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("promoted_checkpoint")

"""Job-linked evals and `per_model_usage` as a column of its own.

- `jobs.eval_id`: the eval a worker makes of a reinforcement job's validation evaluations;
- `eval_runs.job_step` (unique per eval): the job step a run was imported from;
- `eval_runs.per_model_usage`, moved out of the `result_counts` JSON where 0003's runs kept it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

_runs = sa.table(
    "eval_runs",
    sa.column("id", sa.String()),
    sa.column("result_counts", sa.JSON()),
    sa.column("per_model_usage", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("per_model_usage", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("job_step", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint("uq_eval_runs_job_step", ["eval_id", "job_step"])

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("eval_id", sa.String(length=64), nullable=True))

    conn = op.get_bind()
    rows = conn.execute(sa.select(_runs.c.id, _runs.c.result_counts)).mappings().all()
    for row in rows:
        counts = dict(row["result_counts"] or {})
        usage = counts.pop("per_model_usage", [])
        conn.execute(
            _runs.update()
            .where(_runs.c.id == row["id"])
            .values(result_counts=counts if row["result_counts"] else None, per_model_usage=usage)
        )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(_runs.c.id, _runs.c.result_counts, _runs.c.per_model_usage))
    for row in rows.mappings().all():
        if row["result_counts"] is not None:
            counts = {**row["result_counts"], "per_model_usage": row["per_model_usage"] or []}
            conn.execute(_runs.update().where(_runs.c.id == row["id"]).values(result_counts=counts))

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("eval_id")

    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.drop_constraint("uq_eval_runs_job_step", type_="unique")
        batch_op.drop_column("job_step")
        batch_op.drop_column("per_model_usage")

"""The dashboard's eval views that the Evals API has no shape for: two runs of one eval side by
side, row by row (a job's baseline against its latest evaluation, by default).

The eval and run pages themselves read the public API (`/v1/evals/…`, its runs and output
items); this route pairs two runs' output items by `datasource_item_id`, so a validation row
shows both outputs and their grades at once. Scoped to the caller's project exactly like the
API: another project's eval or run is a 404. Nothing here writes to the store.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.engine import RowMapping

from openrft.service.deps import ProjectDep, StoreDep
from openrft.service.errors import InvalidRequestError
from openrft.service.eval_runs import find_run
from openrft.service.evals import find_eval
from openrft.service.store import Store, eval_output_items, eval_runs

router = APIRouter(prefix="/dashboard/api/evals", tags=["dashboard"])

MAX_TEXT = 4000
"""Characters kept of each output shown."""


def _runs(store: Store, eval_id: str) -> list[RowMapping]:
    query = select(
        eval_runs.c.id, eval_runs.c.name, eval_runs.c.status, eval_runs.c.job_step
    ).where(eval_runs.c.eval_id == eval_id)
    return store.all(query.order_by(eval_runs.c.seq))


def default_pair(runs: list[RowMapping]) -> tuple[str | None, str | None]:
    """The baseline (a job's step 0, else the oldest completed run) and the latest completed
    run after it."""
    done = [run for run in runs if run["status"] == "completed"]
    if not done:
        return None, None
    base = next((run for run in done if run["job_step"] == 0), done[0])
    later = [run for run in done if run["id"] != base["id"]]
    return base["id"], (later[-1]["id"] if later else None)


def _text(sample: Any) -> str:
    output = sample.get("output") if isinstance(sample, dict) else None
    text = "".join(str(m.get("content") or "") for m in output or [] if isinstance(m, dict))
    return text[:MAX_TEXT] + ("…" if len(text) > MAX_TEXT else "")


def _side(row: RowMapping | None) -> dict[str, Any] | None:
    if row is None:
        return None
    results = row["results"] or []
    return {
        "output": _text(row["sample"]),
        "status": row["status"],
        "score": results[0]["score"] if len(results) == 1 else None,
        "results": results,
    }


def _items(store: Store, run_id: str | None, ids: list[int]) -> dict[int, RowMapping]:
    if run_id is None or not ids:
        return {}
    query = select(eval_output_items).where(
        eval_output_items.c.run_id == run_id, eval_output_items.c.datasource_item_id.in_(ids)
    )
    return {row["datasource_item_id"]: row for row in store.all(query)}


def _row_ids(store: Store, run_ids: list[str]) -> list[int]:
    query = (
        select(eval_output_items.c.datasource_item_id)
        .where(eval_output_items.c.run_id.in_(run_ids))
        .distinct()
    )
    return sorted(row["datasource_item_id"] for row in store.all(query))


@router.get("/{eval_id}/compare")
def compare_runs(
    project: ProjectDep,
    store: StoreDep,
    eval_id: str,
    base: str | None = None,
    tuned: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    """Rows of two runs of the eval, paired by data source row: `base` and `tuned` (run ids;
    by default the baseline and the latest completed run), `offset`/`limit` over the rows."""
    find_eval(store, project, eval_id)
    if not 1 <= limit <= 200 or offset < 0:
        raise InvalidRequestError("limit must be 1 to 200 and offset at least 0", param="limit")
    runs = _runs(store, eval_id)
    default_base, default_tuned = default_pair(runs)
    base = base or default_base
    tuned = tuned or default_tuned
    for run_id in (base, tuned):
        if run_id is not None:
            find_run(store, project, eval_id, run_id)
    ids = _row_ids(store, [r for r in (base, tuned) if r is not None])
    shown = ids[offset : offset + limit]
    left, right = _items(store, base, shown), _items(store, tuned, shown)
    rows = []
    for index in shown:
        either = left.get(index) or right.get(index)
        rows.append(
            {
                "datasource_item_id": index,
                "item": either["datasource_item"] if either is not None else None,
                "base": _side(left.get(index)),
                "tuned": _side(right.get(index)),
            }
        )
    return {
        "runs": [{"id": r["id"], "name": r["name"], "status": r["status"]} for r in runs],
        "base": base,
        "tuned": tuned,
        "rows": rows,
        "total": len(ids),
        "has_more": offset + limit < len(ids),
    }

"""Eval runs, executed in the workers: read the rows, grade them, store the output items.

A run's rows (inline `file_content` or an uploaded file's lines) are `{"item": {…}, "sample":
{"output_text": …}}` for a `jsonl` data source (the sample is ready), `{"item": {…}}` for a
`completions` one, whose samples are drawn from the service's model servers
(`eval_completions.Sampler`, connected by the first such run) one chunk at a time. Each row is
graded by every testing criterion through the grader engine, in the
project's `GradeContext` (its secrets, the operator's allow-list, its own sandbox workers).

`EvalRunner` is a thread in each worker process (`worker.py` starts it beside the job loop, so
an eval never waits for a training to end). It claims the oldest `queued` run with one guarded
`UPDATE` (as jobs are claimed), grades `CHUNK` rows at a time, writes their output items and a
heartbeat (with the counts so far) after each chunk, and stops when the run is canceled,
deleted or taken from it. A run whose worker died goes back to the queue: at once when that
worker was a process on this host that is gone, else once its heartbeat is `stale_seconds`
old; rows already graded are kept (output items are unique per row), so the next claimer
grades only the rest. After `max_attempts` claims it fails with `worker_lost`.

It does not bound a grader's time (the graders do) nor a model's (the model servers' chat
timeouts do).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from sqlalchemy import select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError, IntegrityError

from openrft.api_errors import ApiError, ServerError
from openrft.errors import DatasetError, Problem, SpecError, TemplateError
from openrft.graders import Grader, GradeResult, Sample, grade_batch, load_grader
from openrft.service import tenancy
from openrft.service.eval_completions import (
    CompletionsSource,
    Sampler,
    check_source,
    render_messages,
)
from openrft.service.orphans import HOST, PID_NAMESPACE, process_alive
from openrft.service.settings import Settings
from openrft.service.store import (
    Store,
    eval_output_items,
    eval_runs,
    evals,
    files,
    new_id,
    now,
    workers,
)

CHUNK = 16
"""Rows graded between two heartbeats (and two writes of output items)."""
MAX_RUN_ROWS = 50_000
"""Most rows one run may have (its bytes are bounded too: inline content by the request body
limit, a file by `max_file_bytes`)."""
MAX_LISTED_PROBLEMS = 10
ACTIVE = ("queued", "in_progress")
log = logging.getLogger("openrft.evals")


# --- rows -------------------------------------------------------------------------------------


def file_rows(path: Path) -> list[Any]:
    """The JSON values of an uploaded file's non-blank lines (uploads are checked JSONL)."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def source_rows(store: Store, project: str, source: Mapping[str, Any]) -> list[Any]:
    """The rows a `jsonl` data source's `source` names, unchecked; `DatasetError` if it
    names none of this project's files, or is neither `file_content` nor `file_id`."""
    kind = source.get("type")
    if kind == "file_content":
        content = source.get("content")
        if not isinstance(content, list):
            raise DatasetError([Problem("data_source.source.content", "must be a list of rows")])
        return content
    if kind == "file_id":
        row = store.one(
            select(files.c.path).where(files.c.id == source.get("id"), files.c.project == project)
        )
        if row is None or not Path(row["path"]).exists():
            message = f"no such file: {source.get('id')!r}; upload it with POST /v1/files"
            raise DatasetError([Problem("data_source.source.id", message)])
        return file_rows(Path(row["path"]))
    message = f"must be `file_content` or `file_id`, not {kind!r}"
    raise DatasetError([Problem("data_source.source.type", message)])


def _sample_problem(sample: Any) -> str | None:
    if not isinstance(sample, dict) or not isinstance(sample.get("output_text"), str):
        return (
            "has no `sample` with an `output_text` string; a `jsonl` data source grades ready "
            "samples (use the `completions` data source to sample from a model)"
        )
    if not isinstance(sample.get("output_tools", []), list):
        return "`sample.output_tools` must be a list of tool calls"
    return None


def _row_problem(row: Any, validator: Any, source: CompletionsSource | None) -> str | None:
    if not isinstance(row, dict) or not isinstance(row.get("item"), dict):
        return 'expected {"item": {…}}' if source else 'expected {"item": {…}, "sample": {…}}'
    if source is None:
        problem = _sample_problem(row.get("sample"))
        if problem:
            return problem
    else:
        try:
            render_messages(source, row["item"])
        except TemplateError as exc:
            return f"its input messages do not render: {exc}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(row["item"]))
    return None if error is None else f"`item` does not match the item schema: {error.message}"


def check_rows(
    rows: Sequence[Any], item_schema: Mapping[str, Any], source: CompletionsSource | None = None
) -> None:
    """`DatasetError` listing the bad rows (the first `MAX_LISTED_PROBLEMS`), or none. Rows of
    a `completions` `source` need no sample; their messages must render."""
    if not rows:
        raise DatasetError([Problem("data_source.source", "holds no rows")])
    if len(rows) > MAX_RUN_ROWS:
        message = f"holds {len(rows)} rows; a run may have at most {MAX_RUN_ROWS}"
        raise DatasetError([Problem("data_source.source", message)])
    validator = jsonschema.validators.validator_for(item_schema)(item_schema)
    found = ((n, _row_problem(row, validator, source)) for n, row in enumerate(rows))
    problems = [Problem(f"data_source.source row {n}", p) for n, p in found if p]
    if problems:
        raise DatasetError(problems[:MAX_LISTED_PROBLEMS], f"{len(problems)} bad row(s)")


def to_sample(sample: Mapping[str, Any]) -> Sample:
    """A row's `sample` as graders see it; `output_json` parsed from the text unless given."""
    parsed = Sample.from_text(str(sample["output_text"]), sample.get("output_tools") or None)
    if "output_json" in sample:
        return Sample(parsed.output_text, sample["output_json"], parsed.output_tools)
    return parsed


# --- grading ----------------------------------------------------------------------------------


def criterion_result(result: GradeResult) -> dict[str, Any]:
    """One criterion's verdict on one row, as an output item's `results` entry. It passes at
    its `pass_threshold` when it has one (the grader says), else with a perfect score."""
    scores = result.metadata.scores
    passed = bool(scores["passed"]) if "passed" in scores else result.reward >= 1.0
    errored = result.errors.any()
    entry = {
        "name": result.name,
        "type": result.metadata.type,
        "score": result.reward,
        "passed": passed and not errored,
        "sample": None,
    }
    if errored:
        entry["error"] = result.errors.model_dump(exclude_defaults=True)
    return entry


def output_sample(sample: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's output item `sample` for a ready sample (no model call, so no usage)."""
    return {
        "input": [],
        "output": [{"role": "assistant", "content": sample["output_text"]}],
        "model": sample.get("model"),
        "finish_reason": sample.get("finish_reason"),
        "usage": {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cached_tokens": 0,
        },
        "error": None,
        "temperature": None,
        "top_p": None,
        "seed": None,
        "max_completion_tokens": None,
    }


def sample_error(spec: Grader, error: Mapping[str, Any]) -> dict[str, Any]:
    """A criterion's entry for a row the model could not answer: errored, not graded."""
    return {
        "name": spec.name,
        "type": spec.type,
        "score": 0.0,
        "passed": False,
        "sample": None,
        "error": {"sample_error": True, **error},
    }


def grade_rows(
    specs: Sequence[Grader],
    rows: Sequence[tuple[int, Any]],
    context: Any,
    run: RowMapping,
    outputs: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Output item rows for `(index, row)` pairs, every criterion graded as one batch.
    `outputs`: the rows' sampled output item samples (a `completions` run), else the rows'
    ready samples are graded."""
    if outputs is None:
        outputs = [output_sample(row["sample"]) for _, row in rows]
        samples = [to_sample(row["sample"]) for _, row in rows]
    else:
        samples = [to_sample({"output_text": _text(out)}) for out in outputs]
    items = [row["item"] for _, row in rows]
    per_criterion = [grade_batch(spec, samples, items, context) for spec in specs]
    made = []
    for position, (index, row) in enumerate(rows):
        error = outputs[position]["error"]
        results = [
            sample_error(spec, error) if error else criterion_result(graded[position])
            for spec, graded in zip(specs, per_criterion, strict=True)
        ]
        made.append(
            {
                "id": new_id("outputitem"),
                "run_id": run["id"],
                "eval_id": run["eval_id"],
                "datasource_item_id": index,
                "datasource_item": row["item"],
                "sample": outputs[position],
                "results": results,
                "status": "pass" if all(r["passed"] for r in results) else "fail",
                "created_at": now(),
            }
        )
    return made


def _text(output: Mapping[str, Any]) -> str:
    return "".join(str(m.get("content") or "") for m in output["output"])


USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens")


class Tally:
    """`result_counts`, `per_testing_criteria_results` and `per_model_usage` (the run's
    columns of those names), built from output items."""

    def __init__(self, names: Sequence[str]) -> None:
        self.counts = {"total": 0, "passed": 0, "failed": 0, "errored": 0}
        self.criteria: dict[str, dict[str, Any]] = {
            name: {"testing_criteria": name, "passed": 0, "failed": 0} for name in names
        }
        self.usage: dict[str, dict[str, Any]] = {}

    def add(self, items: Iterable[Mapping[str, Any]] | Iterable[RowMapping]) -> None:
        for item in items:
            self.counts["total"] += 1
            if any("error" in r for r in item["results"]):
                self.counts["errored"] += 1
            else:
                self.counts["passed" if item["status"] == "pass" else "failed"] += 1
            for result in item["results"]:
                if result["name"] in self.criteria:
                    self.criteria[result["name"]]["passed" if result["passed"] else "failed"] += 1
            self._use(item["sample"])

    def _use(self, sample: Mapping[str, Any]) -> None:
        """Count one model call (rows of a `jsonl` run made none)."""
        if not sample.get("model") or not sample.get("input"):
            return
        name = sample["model"]
        usage = self.usage.setdefault(
            name, {"model_name": name, "invocation_count": 0, **dict.fromkeys(USAGE_KEYS, 0)}
        )
        usage["invocation_count"] += 1
        for key in USAGE_KEYS:
            usage[key] += int(sample["usage"].get(key) or 0)

    def values(self) -> dict[str, Any]:
        return {
            "result_counts": dict(self.counts),
            "per_testing_criteria_results": list(self.criteria.values()),
            "per_model_usage": list(self.usage.values()),
        }


# --- claiming ---------------------------------------------------------------------------------


def claim_run(store: Store, worker: str) -> RowMapping | None:
    """Atomically move the oldest queued run to `in_progress` for `worker`, or None."""
    return store.claim_oldest(eval_runs, "in_progress", worker)


def _ours(run: RowMapping) -> Any:
    """An update of `run` that changes it only while it is this claim's and in progress."""
    return update(eval_runs).where(
        eval_runs.c.id == run["id"],
        eval_runs.c.claim == run["claim"],
        eval_runs.c.status == "in_progress",
    )


def set_run(store: Store, run: RowMapping, **values: Any) -> bool:
    """Update `run` while it is still this claim's and in progress; False once it is not."""
    with store.tx() as conn:
        return conn.execute(_ours(run).values(**values)).rowcount == 1


def _pid_of(worker: str | None) -> int | None:
    try:
        return int((worker or "").rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def requeue_lost(store: Store, settings: Settings) -> None:
    """Give runs whose worker died back to the queue (or fail them after `max_attempts`)."""
    stale = select(eval_runs).where(
        eval_runs.c.status == "in_progress",
        eval_runs.c.heartbeat_at < time.time() - settings.stale_seconds,
    )
    here = (
        select(eval_runs)
        .join(workers, workers.c.name == eval_runs.c.worker)
        .where(
            eval_runs.c.status == "in_progress",
            workers.c.host == HOST,
            workers.c.pid_ns == PID_NAMESPACE,
        )
    )
    lost = {row["id"]: row for row in store.all(stale)}
    for row in store.all(here):
        pid = _pid_of(row["worker"])
        if pid is not None and pid != os.getpid() and not process_alive(pid, "openrft"):
            lost[row["id"]] = row
    for row in lost.values():
        values: dict[str, Any] = {"status": "queued", "claim": None, "worker": None}
        if row["attempts"] >= settings.max_attempts:
            message = f"the run lost its worker {row['attempts']} times; giving up"
            values = {"status": "failed", "error": {"code": "worker_lost", "message": message}}
        if set_run(store, row, **values):
            log.warning(
                "eval run %s lost worker %s: %s", row["id"], row["worker"], values["status"]
            )


# --- one run ----------------------------------------------------------------------------------


class RunGone(Exception):
    """The run was canceled, deleted or re-claimed while this worker graded it."""


def _load(
    store: Store, settings: Settings, run: RowMapping
) -> tuple[list[Grader], list[Any], CompletionsSource | None]:
    row = store.one(select(evals).where(evals.c.id == run["eval_id"]))
    if row is None:
        raise RunGone
    specs = [load_grader(criterion) for criterion in row["testing_criteria"]]
    data_source = run["data_source"]
    source = None
    if data_source.get("type") == "completions":
        source = check_source(store, settings, run["project"], data_source)
    rows = source_rows(store, run["project"], data_source["source"])
    check_rows(rows, row["data_source_config"]["schema"]["properties"]["item"], source)
    return specs, rows, source


def _fail(store: Store, run: RowMapping, code: str | None, message: str) -> None:
    set_run(store, run, status="failed", error={"code": code, "message": message})


def _graded(store: Store, run: RowMapping) -> list[RowMapping]:
    query = select(
        eval_output_items.c.datasource_item_id,
        eval_output_items.c.status,
        eval_output_items.c.results,
        eval_output_items.c.sample,
    ).where(eval_output_items.c.run_id == run["id"])
    return store.all(query)


def execute(
    store: Store,
    settings: Settings,
    run: RowMapping,
    stopping: Callable[[], bool],
    sampler: Callable[[], Sampler] | None = None,
) -> None:
    """Grade a claimed run's remaining rows (sampling them first from `sampler()`'s model
    servers for a `completions` run) and settle it. Raises `RunGone` when it stops being this
    claim's; puts it back in the queue when `stopping`. A model that cannot load or answer
    fails the run with the model servers' error code."""
    try:
        specs, rows, source = _load(store, settings, run)
    except (DatasetError, SpecError, OSError, ValueError) as exc:
        _fail(store, run, "invalid_data_source", str(exc))
        return
    except ApiError as exc:  # the model is gone (deleted, or its job's checkpoints were)
        _fail(store, run, exc.code, exc.message)
        return
    try:
        _grade(store, settings, run, stopping, specs, rows, source, sampler)
    except ServerError as exc:
        _fail(store, run, exc.code, exc.message)


def _grade(
    store: Store,
    settings: Settings,
    run: RowMapping,
    stopping: Callable[[], bool],
    specs: list[Grader],
    rows: list[Any],
    source: CompletionsSource | None,
    sampler: Callable[[], Sampler] | None,
) -> None:
    tally = Tally([spec.name for spec in specs])
    done = _graded(store, run)
    tally.add(done)
    seen = {row["datasource_item_id"] for row in done}
    todo = [(index, row) for index, row in enumerate(rows) if index not in seen]
    context = tenancy.grade_context(store, settings, run["project"])

    def heartbeat() -> None:  # while a model loads or answers
        set_run(store, run, heartbeat_at=time.time())

    models = None
    if source is not None and todo:
        if sampler is None:
            raise ServerError("this worker cannot sample completions", code="server_error")
        models = sampler()
        models.load(source, heartbeat)
    for start in range(0, len(todo), CHUNK):
        if stopping():  # the next claimer grades the rest
            set_run(store, run, status="queued", claim=None, worker=None)
            return
        chunk = todo[start : start + CHUNK]
        outputs = None
        if source is not None and models is not None:
            outputs = models.samples(source, [row["item"] for _, row in chunk], heartbeat)
        made = grade_rows(specs, chunk, context, run, outputs)
        tally.add(made)
        with store.tx() as conn:  # one transaction: a canceled run gets no more rows
            beat = _ours(run).values(heartbeat_at=time.time(), **tally.values())
            if conn.execute(beat).rowcount != 1:
                raise RunGone
            conn.execute(eval_output_items.insert(), made)
    set_run(store, run, status="completed", **tally.values())


class EvalRunner:
    """The thread of a worker process that claims and executes eval runs until `stopping()`."""

    def __init__(
        self, settings: Settings, store: Store, name: str, stopping: Callable[[], bool]
    ) -> None:
        self.settings = settings
        self.store = store
        self.name = name
        self.stopping = stopping
        self.thread = threading.Thread(target=self.serve, name="openrft-eval-runs", daemon=True)
        self.models: Sampler | None = None
        """This worker's connection to the model servers, made by its first `completions` run."""

    def sampler(self) -> Sampler:
        if self.models is None:
            self.models = Sampler(self.settings)
        return self.models

    def start(self) -> EvalRunner:
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def serve(self) -> None:
        wait = self.settings.poll_seconds
        while not self.stopping():
            try:
                worked = self.round()
            except DBAPIError as exc:
                log.warning("eval runner %s: store unavailable (%s); retrying", self.name, exc.orig)
                wait = min(30.0, wait * 2)
                time.sleep(wait)
                continue
            wait = self.settings.poll_seconds
            if not worked:
                time.sleep(wait)
        if self.models is not None:
            self.models.close()

    def round(self) -> bool:
        """Re-queue lost runs, then run one; False when none was queued."""
        requeue_lost(self.store, self.settings)
        run = claim_run(self.store, self.name)
        if run is None:
            return False
        try:
            execute(self.store, self.settings, run, self.stopping, self.sampler)
        except (RunGone, IntegrityError):  # taken from us; another claimer wrote those rows
            log.info(
                "eval run %s stopped on this worker: canceled, deleted or re-claimed", run["id"]
            )
            drop_orphan_items(self.store, run["id"])
        except DBAPIError:
            raise  # `serve` waits for the store; the run is re-queued if we never get back
        except Exception as exc:  # a bug: fail this run, keep the thread for the next ones
            log.exception("eval run %s failed", run["id"])
            error = {"code": "server_error", "message": f"{type(exc).__name__}: {exc}"}
            set_run(self.store, run, status="failed", error=error)
        return True


def drop_orphan_items(store: Store, run_id: str) -> None:
    """Remove the output items of `run_id` if the run itself was deleted while being graded."""
    with store.tx() as conn:
        if conn.execute(select(eval_runs.c.id).where(eval_runs.c.id == run_id)).first() is None:
            conn.execute(eval_output_items.delete().where(eval_output_items.c.run_id == run_id))

"""`training_environment`: the whole environment a worker gives a job's training subprocess.

A minimal base — where things are (`PATH`, `HOME`, locale, caches, the judges' configuration),
never this server's credentials — plus the variables the operator names in `Settings.pass_env`
(a judge's API key variable, say), plus the job's own grading context in
`$OPENRFT_GRADE_CONTEXT`: its project, that project's secrets and the outbound allow-list
(`GradeContext.from_environment` reads it back in the training). W&B integrations set their
`WANDB_*` variables. Nothing of another job or project is in it.

It reads `os.environ` and the job row; it starts nothing.
"""

from __future__ import annotations

import os

from sqlalchemy.engine import RowMapping

from openrft.graders.context import CONTEXT_ENV, GradeContext
from openrft.service.settings import Settings

TRAINING_ENV = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
     "VIRTUAL_ENV", "PYTHONPATH", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
     "NLTK_DATA", "XDG_CACHE_HOME", "OPENRFT_CACHE", "OPENRFT_JUDGES", "OPENRFT_JUDGE_BASE_URL",
     "OPENRFT_JUDGE_API_KEY_ENV", "OPENRFT_PYTHON_GRADER_INSECURE"}
)  # fmt: skip
"""Variables a training subprocess inherits besides `Settings.pass_env` and `HF_*`: where things
are, not credentials. Judges' API key variables go in `pass_env` (`OPENRFT_PASS_ENV`)."""


def training_environment(
    job: RowMapping, context: GradeContext, settings: Settings
) -> dict[str, str]:
    """The environment of `job`'s training (its store row); `context` is its project's
    (`tenancy.grade_context`)."""
    env = {k: v for k, v in os.environ.items() if _inherited(k, settings.pass_env)}
    env["PYTHONUNBUFFERED"] = "1"
    env[CONTEXT_ENV] = context.to_json()
    for integration in job["integrations"] or []:
        wandb = integration.get("wandb") or {}
        for key in ("project", "entity", "name"):
            if wandb.get(key):
                env[f"WANDB_{key.upper()}"] = str(wandb[key])
        if wandb.get("tags"):
            env["WANDB_TAGS"] = ",".join(wandb["tags"])
    return env


def _inherited(name: str, passed: list[str]) -> bool:
    if name == CONTEXT_ENV:
        return False  # each job gets its own
    if name in TRAINING_ENV or name in passed:
        return True
    # the judge key variable the operator pointed OPENRFT_JUDGE_API_KEY_ENV at is operator config
    if name == os.environ.get("OPENRFT_JUDGE_API_KEY_ENV"):
        return True
    return name.startswith(("HF_", "TRANSFORMERS_")) and "TOKEN" not in name

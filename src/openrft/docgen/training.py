"""The fields part of `docs/training-config.md`: every job config field, in every dialect.

The native `TrainingConfig` and its sections first (what every dialect maps onto), then each
foreign dialect's schema (OpenAI's job body, the service's `openrft` extension, SeekrFlow's
`TrainingConfig`), each from the registry in `openrft.training.dialects`.
"""

from __future__ import annotations

from pydantic import BaseModel

from openrft.docgen import model_section
from openrft.graders.spec import Grader
from openrft.tools import PythonTool, RemoteTool, Tool
from openrft.tools.environment import EnvironmentSpec, EnvironmentTool
from openrft.training.config import (
    Budget,
    LoraSettings,
    PreflightSettings,
    SFTSettings,
    TrainingConfig,
)
from openrft.training.diagnosis import (
    CollapseCheck,
    DiagnosisSettings,
    EntropyCheck,
    ErrorRateCheck,
    HackingCheck,
    RateCheck,
    StreakCheck,
)
from openrft.training.dialects import openai, seekrflow, service

NATIVE: list[type[BaseModel]] = [
    TrainingConfig,
    RemoteTool,
    PythonTool,
    EnvironmentSpec,
    EnvironmentTool,
    LoraSettings,
    SFTSettings,
    Budget,
    PreflightSettings,
    DiagnosisSettings,
    HackingCheck,
    EntropyCheck,
    CollapseCheck,
    StreakCheck,
    ErrorRateCheck,
    RateCheck,
]
OPENAI: list[type[BaseModel]] = [
    openai.OpenAIJob,
    openai.Method,
    openai.ReinforcementMethod,
    openai.ReinforcementHyperparameters,
    openai.SupervisedMethod,
    openai.SupervisedHyperparameters,
    openai.Integration,
    openai.WandbSettings,
]
SERVICE: list[type[BaseModel]] = [service.JobCreate]
SEEKRFLOW: list[type[BaseModel]] = [seekrflow.SeekrTrainingConfig, seekrflow.SeekrLoRAConfig]
MODELS = NATIVE + OPENAI + SERVICE + SEEKRFLOW
"""Every schema a job config is validated against."""

ALIASES = {"Grader": Grader, "RemoteTool | PythonTool": Tool}


def render() -> str:
    """The generated part of the page, as Markdown."""
    out = [
        "## Field reference",
        "",
        "Generated from the models' docstrings by `make docs`; edit those, not this part.",
        "",
        "### Native form",
        "",
    ]
    for model in NATIVE:
        out += model_section(model, f"#### `{model.__name__}`", ALIASES)
    out += ["### OpenAI job body", ""]
    for model in OPENAI:
        out += model_section(model, f"#### `{model.__name__}`", ALIASES)
    out += ["### The service's job body", ""]
    out += model_section(service.JobCreate, "#### `JobCreate`", ALIASES)
    out += ["### SeekrFlow `TrainingConfig`", ""]
    for model in SEEKRFLOW:
        out += model_section(model, f"#### `{model.__name__}`", ALIASES)
    return "\n".join(out).rstrip() + "\n"

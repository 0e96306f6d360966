"""The native form: `TrainingConfig`'s own fields (every GRPO knob, see docs/training-config.md).

Nothing to map: the fields are the native ones, at their own paths. A config with none of the
other forms' keys is native; this is also the form the service stores and its worker runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openrft.training.dialects.base import Dialect, Mapped


def to_native(data: Mapping[str, Any]) -> Mapped:
    """The fields as given."""
    return Mapped(data)


DIALECT = Dialect("native", "native OpenRFT form", to_native)

"""Checks shared by the teacher-training commands (``python -m evaluators.gan_teacher``,
``python -m evaluators.detection.teacher``): bad input is one line on stderr and exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def checked_teacher_inputs(data_kwargs: str, out: str) -> dict[str, Any] | None:
    """The ``--data-kwargs`` JSON object, or ``None`` once the problem is printed (the data
    options are not a JSON object, or ``--out`` already exists: a teacher is never overwritten)."""
    try:
        kwargs = json.loads(data_kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError
    except ValueError:
        print(f"--data-kwargs: expected a JSON object, found {data_kwargs!r}", file=sys.stderr)
        return None
    if Path(out).exists():
        print(f"--out: expected a path that does not exist yet, found {out!r}", file=sys.stderr)
        return None
    return kwargs

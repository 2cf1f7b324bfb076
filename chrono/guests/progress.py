"""Progress reports from long library operations (downloads, builds).

The library calls a ``ProgressFn`` with a ``ProgressEvent`` whenever something
moves; the CLI renders the events with rich, tests pass ``silent``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ProgressEvent:
    step: str                        # what is happening now, e.g. "downloading opensbi"
    fraction: float | None = None    # how far this step is (0..1), when that is known


ProgressFn = Callable[[ProgressEvent], None]


def silent(event: ProgressEvent) -> None:
    """A ProgressFn that shows nothing."""

"""What stops a front-door evaluation: each names the surface or the stage that failed."""

from __future__ import annotations


class EvaluationError(RuntimeError):
    """The evaluation cannot go on; the message says what failed and where to look."""


class SurfaceMissing(EvaluationError):
    """A public surface the evaluation relies on does not exist in the service under test."""

    def __init__(self, surface: str, detail: str) -> None:
        super().__init__(f"{surface} is missing from the service under test: {detail}")
        self.surface = surface


class NotDrained(EvaluationError):
    """The service did not take and judge everything published within the deadline."""


class NoReadings(EvaluationError):
    """Messages were published and the service stored no reading from them."""

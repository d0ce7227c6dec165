"""Large JSON answers serialised once, by pydantic-core.

A route that returns a model lets FastAPI validate it against `response_model` and encode it again; for
the map (hundreds of features) and the assessment tables that doubles the time of the request. Routes
that return `json_of(model)` keep `response_model=` for the OpenAPI document and skip the second pass.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def json_of(model: BaseModel) -> Response:
    """The model as an application/json response."""
    return Response(model.model_dump_json(), media_type="application/json")

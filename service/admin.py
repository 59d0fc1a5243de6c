"""Operating the running service: swap the model a role serves, without dropping a request.

    POST /v1/admin/models/{role}   {"tag": "reward:20261127-101500"}

The new version is loaded and warmed up beside the old one, the role switches in one step, and
the old one is released once its queued requests are answered (service/loading.py). Behind the
API key like every /v1 route. `alignserve models promote TAG --url ...` calls it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from service.errors import ErrorType, ServiceError
from service.inference import backend_of
from service.loading import LoadError, Swapper

router = APIRouter()
SWAPPER = Swapper()
Role = Literal["reward", "moderation", "intent"]


class SwapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"tag": "reward:20261127-101500"}]})
    tag: str = Field(..., min_length=1, max_length=200, description="A store tag: name:version, "
                     "or a name for its latest version.")


class SwapResponse(BaseModel):
    role: str
    previous: str | None = Field(..., description="What the role served before.")
    current: str = Field(..., description="What it serves now (name:version).")
    load_s: float = Field(..., description="Seconds to verify, load and warm the new version.")


@router.post("/admin/models/{role}", response_model=SwapResponse,
             summary="Serve another stored version for a role, with no downtime")
async def swap(role: Annotated[Role, Path()], body: SwapRequest, request: Request
               ) -> SwapResponse:
    backend = backend_of(request)
    try:
        done = await SWAPPER.swap(backend, role, body.tag)
    except LoadError as exc:
        raise ServiceError(ErrorType.not_found if exc.missing else ErrorType.validation,
                           str(exc)) from None
    return SwapResponse(role=done.role, previous=done.previous, current=done.current,
                        load_s=done.load_s)

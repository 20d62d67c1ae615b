"""What every HTTP route may ask for through `Depends`: the process's runtime and a database
session. `create_app` puts the runtime on the app, so routes can live at module level."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from .runtime import Runtime


async def runtime(request: Request) -> Runtime:
    # async, though it awaits nothing: FastAPI runs a plain `def` dependency in a thread, a
    # hand-off each request would pay for.
    return cast(Runtime, request.app.state.runtime)


Rt = Annotated[Runtime, Depends(runtime)]


def session(rt: Rt) -> Iterator[Session]:
    with rt.sessions() as s:
        yield s


Db = Annotated[Session, Depends(session)]

"""What every HTTP route may ask for through `Depends`: the process's runtime and a database
session. `create_app` puts the runtime on the app, so routes can live at module level."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from .runtime import Runtime


def runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


Rt = Annotated[Runtime, Depends(runtime)]


def session(rt: Rt) -> Iterator[Session]:
    with rt.sessions() as s:
        yield s


Db = Annotated[Session, Depends(session)]

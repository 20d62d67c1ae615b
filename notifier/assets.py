"""The stylesheets and script the web pages load, served by the app from templates/static at
/static: files, not inline, so the pages' Content-Security-Policy needs no 'unsafe-inline'.

A page names each file with its content's digest (`/static/staff.css?v=1a2b3c4d5e`), so a
browser that kept an old copy fetches the new one as soon as it changes."""

import hashlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

from jinja2 import pass_context
from jinja2.runtime import Context
from starlette.staticfiles import StaticFiles

PREFIX = "/static"
ROUTE_NAME = "static"


def directory(templates_dir: Path) -> Path:
    return templates_dir / "static"


def files(templates_dir: Path) -> StaticFiles:
    return StaticFiles(directory=directory(templates_dir))


def asset_function(templates_dir: Path) -> Callable[..., str]:
    """The templates' `asset("staff.css")`: the file's path, wherever the app is mounted."""

    @pass_context
    def asset(context: Context, name: str) -> str:
        path = context["request"].url_for(ROUTE_NAME, path=name).path
        return f"{path}?v={_digest(directory(templates_dir) / name)}"

    return asset


@cache  # the files change with a deploy, and a deploy restarts the process
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]

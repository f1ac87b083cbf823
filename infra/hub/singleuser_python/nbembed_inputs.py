"""Input files a host attached to a session, read-only in ``work/inputs/`` on the user's server.

A Jupyter Server extension (enabled by the hub's spawner args). Sync puts and
removes the files through it, with a token of this server's user, because the
contents API cannot make a file read-only: this writes each file with mode
0444 into a folder kept at 0555, so Jupyter's editors, file browser and
contents API cannot change, rename or delete them. The user's own code runs as
the same account and could change the modes back; it only ever changes its
own copy (the original stays in nbembed, and nothing in ``inputs/`` is
stored with the notebook).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

FOLDER = "work/inputs"
"""Beside the notebooks (sync's work folder), so a kernel opens ``inputs/<name>``."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$")
"""The names nbembed's schemas allow: no folders, no leading dot."""
MAX_BYTES = 64 * 1024 * 1024
"""A hard cap whatever the gateway's setting, so one request cannot fill the disk."""
AUTH_RESOURCE = "nbembed_inputs"


def _folder(handler: APIHandler) -> Path:
    return Path(handler.settings["server_root_dir"]).expanduser() / FOLDER


@contextlib.contextmanager
def _writable(folder: Path) -> Any:
    """The folder, opened for writing by its owner for the duration only."""
    folder.parent.mkdir(exist_ok=True)
    folder.mkdir(mode=0o555, exist_ok=True)
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        folder.chmod(0o555)


def _listing(folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    files = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and NAME.match(path.name):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            files.append({"name": path.name, "size": path.stat().st_size, "sha256": digest})
    return files


class InputsHandler(APIHandler):
    """``GET /nbembed/inputs``: the files in place, with their digests."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps({"inputs": _listing(_folder(self))}))


class InputHandler(APIHandler):
    """``PUT``/``DELETE /nbembed/inputs/<name>``: place (body: the bytes) or remove one file."""

    auth_resource = AUTH_RESOURCE

    def _name(self, name: str) -> str:
        if not NAME.match(name):
            raise web.HTTPError(400, "not an input file name")
        return name

    @web.authenticated
    @authorized
    async def put(self, name: str) -> None:
        body = self.request.body
        if len(body) > MAX_BYTES:
            raise web.HTTPError(413, "input file too large")
        with _writable(_folder(self)) as folder:
            target = folder / self._name(name)
            partial = folder / f".{target.name}.partial"
            partial.write_bytes(body)
            partial.chmod(0o444)
            os.replace(partial, target)
        self.set_status(204)
        self.finish()

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        with _writable(_folder(self)) as folder:
            (folder / self._name(name)).unlink(missing_ok=True)
        self.set_status(204)
        self.finish()


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = serverapp.web_app.settings["base_url"].rstrip("/")
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (f"{base}/nbembed/inputs", InputsHandler),
            (f"{base}/nbembed/inputs/([^/]+)", InputHandler),
        ],
    )


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbembed_inputs"}]

"""What sync does with each event it consumes."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from faststream.kafka import KafkaBroker
from prometheus_client import Counter
from pymongo.errors import AutoReconnect

from schemas import (
    CloudEvent,
    NotebookDeleted,
    NotebookRenamed,
    NotebookSaved,
    NotebookStored,
    NotebookStoreFailed,
    ServerReady,
    SessionFailed,
    SessionReady,
)
from schemas.naming import user_origin
from services.common.hops import Hops
from services.common.kafka import publish_event
from services.sync import notebooks
from services.sync.contents import ContentsClient, ContentsError, TooLarge, hub_user_of
from services.sync.inputs import InputNotFound, InputPlacer
from services.sync.store import NotebookStore, revision_notes

log = logging.getLogger(__name__)

KERNEL_PRESTARTS = Counter(
    "nbembed_kernel_prestarts",
    "Kernels sync started for a session's notebook while placing it, by outcome "
    "(started: the server answered with the notebook's session, new or reused; failed: the "
    "page will start the kernel itself).",
    ["outcome"],
)

SOURCE = "/nbembed/sync"
# New notebook ids derive from the session that created them, so a redelivered
# server.ready finds the same notebook instead of making a second one.
NOTEBOOK_NAMESPACE = uuid.UUID("6f1c3f0e-8f5b-4c55-9d8e-5b0c2a1e7d10")

SERVER_GONE_STATUSES = frozenset({403, 404, 424, 504})
"""A save's read answered so: the file or the server is gone, or the server is too slow.
The hub answers an API request for a server that no longer runs with 424 (a report
still in flight as it stopped): retrying would only dead-letter the save later. Not
302: the hub redirects a running server's request while its proxy route is missing,
which a retry gets past."""

Announcement = tuple[dict[str, Any], int, str]
"""A new notebook to announce as stored: its record, revision and content digest."""


class KernelPrestart:
    """A session's kernel, started as soon as its notebook's path is chosen.

    It starts beside the rest of the placement instead of after it, and
    session.ready waits for it. A placement that fails or times out cancels
    the request (the server may still start the kernel: the user's own, on
    their own server, reused if the notebook is opened again).
    """

    def __init__(self, start: Callable[[str], Coroutine[Any, Any, None]] | None) -> None:
        """``start``: starts the kernel for a path; None: no kernel is started."""
        self._start = start
        self._task: asyncio.Task[None] | None = None

    def path_known(self, path: str) -> None:
        """The notebook will be at ``path``: start its kernel now (once)."""
        if self._start is not None and self._task is None:
            self._task = asyncio.create_task(self._start(path))

    async def started(self) -> bool:
        """Wait for the start asked for; False if none was."""
        if self._task is None:
            return False
        await self._task
        return True

    def cancel(self) -> None:
        """The placement failed: drop the request."""
        if self._task is not None:
            self._task.cancel()


class SyncHandlers:
    """Owns stored notebooks: puts them on servers and brings saves back."""

    def __init__(
        self,
        contents: ContentsClient,
        store: NotebookStore,
        broker: KafkaBroker,
        inputs: InputPlacer,
        *,
        public_hub_url: str,
        subdomain_host: str | None = None,
        work_folder: str,
        ui: str,
        max_notebook_bytes: int,
        save_read_seconds: float = 15,
        placement_seconds: float = 20,
        max_json_depth: int = notebooks.MAX_DEPTH,
        prestart_kernel: bool = True,
        prestart_seconds: float = 5,
    ) -> None:
        self._contents = contents
        self._store = store
        self._broker = broker
        self._inputs = inputs
        self._public_hub_url = public_hub_url.rstrip("/")
        self._subdomain_host = subdomain_host
        self._work_folder = work_folder
        self._ui = ui
        self._max_notebook_bytes = max_notebook_bytes
        self._save_read_seconds = save_read_seconds
        self._placement_seconds = placement_seconds
        self._max_json_depth = max_json_depth
        self._prestart_kernel = prestart_kernel
        self._prestart_seconds = prestart_seconds

    def page_url(self, server_path: str, path: str) -> str:
        """The page that shows exactly this notebook (Notebook 7 or JupyterLab)."""
        page = "notebooks" if self._ui == "notebook" else "lab/tree"
        origin = self._public_hub_url
        if self._subdomain_host:
            origin = user_origin(hub_user_of(server_path), self._subdomain_host)
        return f"{origin}{server_path.rstrip('/')}/{page}/{quote(path)}"

    async def on_server_ready(self, event: CloudEvent[ServerReady]) -> None:
        """Put the session's notebook and input files on the server, then publish session.ready.

        Restores the stored notebook's latest revision, or creates a new one
        under a free name; idempotent through the placement record. Bounded in
        time: a server that accepts connections but does not answer (hung,
        overloaded) fails its session with ``server_unavailable`` after
        ``placement_seconds`` instead of holding up, through retries, every
        other session whose events share its partition. Unless the store is what
        does not answer: that is an outage, which the consumer waits out.
        """
        ready = event.data
        hops = Hops(event.time)
        kernel = KernelPrestart(self._kernel_starter(ready))
        placed = None
        try:
            placed = await self._place_in_time(ready, kernel.path_known)
        finally:
            if placed is None:
                kernel.cancel()
        if placed is None:
            return  # session.failed was published
        notebook_id, path, announcement, new = placed
        hops.lap("place_ms")
        if await kernel.started():
            hops.lap("kernel_ms")
        session_ready = SessionReady(
            session_id=ready.session_id,
            tenant_id=ready.tenant_id,
            hub_user=ready.hub_user,
            notebook_id=notebook_id,
            path=path,
            page_url=self.page_url(ready.server_path, path),
        )
        ready_event = CloudEvent.wrap(session_ready, source=SOURCE, subject=ready.session_id)
        await publish_event(self._broker, ready_event)
        hops.lap("publish_ms")
        if announcement is not None:
            await self._announce_stored(*announcement, save_id=None, changed=True)
        if new:
            # Recorded last: a delivery that fails before this (a publish Kafka did not
            # take) is placed and announced again, not left out of the library.
            await self._store.record_placement(ready.session_id, notebook_id, path)
        log.info(
            "session ready",
            extra={"session_id": ready.session_id, "notebook_id": notebook_id, **hops.laps},
        )

    async def _place_in_time(
        self, ready: ServerReady, path_known: Callable[[str], None]
    ) -> tuple[str, str, Announcement | None, bool] | None:
        """`_place`, bounded by ``placement_seconds``; None when session.failed was published."""
        try:
            async with asyncio.timeout(self._placement_seconds):
                return await self._place(ready, path_known)
        except TimeoutError:
            if not await self._store.answers():
                # The store, not the server, held it up: waited out as an outage.
                raise AutoReconnect("the store did not answer during a placement") from None
            reason = (
                f"the user's server did not answer within {self._placement_seconds:.0f}s "
                "while its notebook was put in place; open the session again"
            )
            await self._fail(ready, "server_unavailable", reason)
            return None

    def _kernel_starter(
        self, ready: ServerReady
    ) -> Callable[[str], Coroutine[Any, Any, None]] | None:
        """What starts the session's kernel once its path is known; None: the page will."""
        if not self._prestart_kernel or ready.profile is None:
            return None
        kernel_name = ready.profile.kernel
        return lambda path: self._start_kernel(ready, path, kernel_name)

    async def _start_kernel(self, ready: ServerReady, path: str, kernel_name: str) -> None:
        """Start the notebook's kernel before session.ready, so the page connects to it.

        Started as soon as the notebook's path is chosen, beside the rest of the
        placement (its first revision, the file's write, the input files): the
        kernel needs only the folder, which exists by then, not the file.
        Before, not beside, the ready event: the page lists the server's
        sessions as it opens, and a request of ours still in flight then would
        let it start a second kernel (Jupyter Server checks for a session of
        the path and creates one without a lock). A kernel that does not start
        fails nothing: the page starts one as it always did. Bounded in time,
        like the placement, whatever the user's server does.
        """
        try:
            async with asyncio.timeout(self._prestart_seconds):
                started = await self._contents.start_kernel_session(
                    ready.server_path, path, kernel_name
                )
        except (ContentsError, TimeoutError) as exc:
            KERNEL_PRESTARTS.labels("failed").inc()
            log.warning(
                "kernel not started before the page; the page will start it",
                extra={
                    "session_id": ready.session_id,
                    "kernel": kernel_name,
                    "error": str(exc) or type(exc).__name__,
                },
            )
            return
        KERNEL_PRESTARTS.labels("started").inc()
        if started.kernel_name != kernel_name:
            # An earlier session of this notebook still runs its kernel: the page
            # connects to that one too, as it would have without us.
            log.info(
                "notebook's running kernel reused",
                extra={"session_id": ready.session_id, "kernel": started.kernel_name},
            )

    async def _place(
        self, ready: ServerReady, path_known: Callable[[str], None]
    ) -> tuple[str, str, Announcement | None, bool] | None:
        """The notebook (restored or created) and input files on the server.

        Calls ``path_known`` with the notebook's path as soon as it is chosen.
        Returns the notebook id, its path, what to announce as stored, and
        whether this placement is new (not recorded by an earlier delivery);
        None when session.failed was published.
        """
        placed = await self._store.placement(ready.session_id)
        announcement: Announcement | None = None
        if placed is None:
            result: tuple[str, str, Announcement | None] | None
            if ready.notebook_id is not None:
                result = await self._restore(ready, path_known)
            else:
                result = await self._create(ready, path_known)
            if result is None:
                return None
            notebook_id, path, announcement = result
        else:
            notebook_id, path = placed["notebook_id"], placed["path"]
            path_known(path)
        try:
            await self._inputs.place(ready.server_path, ready.tenant_id, ready.inputs)
        except InputNotFound as exc:
            await self._fail(ready, "input_not_found", f"input files deleted before use: {exc}")
            return None
        return notebook_id, path, announcement, placed is None

    async def _restore(
        self, ready: ServerReady, path_known: Callable[[str], None]
    ) -> tuple[str, str, None] | None:
        assert ready.notebook_id is not None
        record = await self._store.get_notebook(ready.tenant_id, ready.notebook_id)
        revision = await self._store.latest_revision(ready.notebook_id) if record else None
        if record is None or revision is None:
            await self._fail(
                ready,
                "notebook_not_found",
                f"no stored notebook {ready.notebook_id} for this tenant",
            )
            return None
        try:
            content = notebooks.with_kernel(notebooks.normalise(revision["content"]), ready.profile)
        except notebooks.InvalidNotebook as exc:
            await self._fail(ready, "notebook_invalid", f"stored notebook is invalid: {exc}")
            return None
        path = await self._store.file_of(ready.hub_user, record["_id"])
        if path is None:
            names = await self._contents.list_folder(ready.server_path, self._work_folder)
            path = await self._store.place(
                ready.hub_user, record, self._free_path(record["name"], names)
            )
        else:
            await self._contents.ensure_directory(ready.server_path, self._work_folder)
        path_known(path)
        await self._contents.put_notebook(ready.server_path, path, content)
        return record["_id"], path, None

    def _free_path(self, name: str, names: set[str]) -> Callable[[set[str]], str]:
        """Proposes a file in the work folder named after ``name``, free on the server."""
        safe = notebooks.safe_name(name)
        return lambda refused: notebooks.free_path(self._work_folder, safe, names | refused)

    async def _create(
        self, ready: ServerReady, path_known: Callable[[str], None]
    ) -> tuple[str, str, Announcement]:
        """Create the session's new notebook under a free name (idempotent).

        One folder listing finds a free name; the file is written on the server
        while its first revision is stored, in parallel.
        """
        notebook_id = uuid.uuid5(NOTEBOOK_NAMESPACE, ready.session_id).hex
        existing, names = await asyncio.gather(
            self._store.get_notebook(ready.tenant_id, notebook_id),
            self._contents.list_folder(ready.server_path, self._work_folder),
        )
        if existing is None:
            name = notebooks.safe_name(ready.notebook_name)
            draft = {"_id": notebook_id, "tenant_id": ready.tenant_id}
            path = await self._store.place(ready.hub_user, draft, self._free_path(name, names))
            existing = await self._store.claim_new_notebook(
                {
                    "_id": notebook_id,
                    "tenant_id": ready.tenant_id,
                    "hub_user": ready.hub_user,
                    "owner_user_id": ready.host_user_id,
                    "name": name,
                    "path": path,
                }
            )
        path = existing["path"]
        path_known(path)
        written = path.rsplit("/", 1)[-1] in names
        # A redelivery after the file was written finds its first revision, unless
        # the store failed while the file was written (both ran side by side):
        # then both are written again. Nobody has edited the file: the session
        # is not ready, so no page shows it yet.
        latest = await self._store.latest_revision(notebook_id) if written else None
        if latest is None:
            content = notebooks.new_notebook(ready.profile)
            (revision, digest, _), _ = await asyncio.gather(
                self._store.add_revision(existing, content),
                self._contents.put_notebook(ready.server_path, path, content),
            )
        else:
            revision, digest = latest["revision"], latest["sha256"]
        # Announced after session.ready (off the critical path); the gateway's view
        # of notebooks is idempotent, so announcing again on a redelivery is harmless.
        return notebook_id, path, (existing, revision, digest)

    async def on_notebook_saved(self, event: CloudEvent[NotebookSaved]) -> None:
        """Fetch a saved notebook from its server and store it as a new revision.

        Idempotent: content equal to the latest revision stores nothing new and
        answers with that revision, so a redelivered save is harmless.
        """
        saved = event.data
        hops = Hops(event.time)
        record = await self._store.get_notebook(saved.tenant_id, saved.notebook_id)
        if record is None:
            await self._store_failed(saved, "notebook_not_found", "the notebook no longer exists")
            return
        path = await self._store.file_of(saved.hub_user, saved.notebook_id)
        if path is None or path != saved.path:
            # Only the notebook's own file on that user's server is ever read.
            reason = f"{saved.path} on that user's server is not this notebook's file"
            await self._store_failed(saved, "notebook_not_found", reason)
            return
        hops.lap("lookup_ms")
        content = await self._fetch_saved(saved, path)
        if content is None:
            return  # notebook.store_failed was published
        hops.lap("read_ms")
        notes = revision_notes(label=saved.label, author=saved.author, restricted=saved.restricted)
        revision, digest, changed = await self._store.add_revision(record, content, notes)
        hops.lap("store_ms")
        await self._announce_stored(
            record, revision, digest, save_id=saved.save_id, changed=changed
        )
        hops.lap("publish_ms")
        log.info(
            "notebook stored",
            extra={
                "notebook_id": saved.notebook_id,
                "save_id": saved.save_id,
                "revision": revision,
                "changed": changed,
                **hops.laps,
            },
        )

    async def _fetch_saved(self, saved: NotebookSaved, path: str) -> dict[str, Any] | None:
        """The saved notebook from its server, or None after publishing why not.

        Bounded work whatever the file holds (the user's code wrote it): its
        size is checked before it is read, the read is capped in bytes and
        seconds, and parsing (off the event loop) refuses deep nesting. A poison
        file thus ends as a failed save within seconds, never as a crash loop.
        """
        limit = self._max_notebook_bytes
        try:
            raw = await self._contents.read_file(
                f"/user/{saved.hub_user}/", path, max_bytes=limit, timeout=self._save_read_seconds
            )
        except TooLarge as exc:
            size = f"{exc.size / 2**20:.1f} MiB" if exc.size is not None else "over the limit"
            reason = (
                f"the notebook is {size}; the limit is {limit / 2**20:.1f} MiB "
                "(clear large outputs and save again)"
            )
            await self._store_failed(saved, "too_large", reason)
            return None
        except ContentsError as exc:
            if exc.status in SERVER_GONE_STATUSES:
                await self._store_failed(saved, "server_unavailable", str(exc))
                return None
            raise  # unreachable or 5xx: retried, then dead-lettered
        try:
            return await asyncio.to_thread(notebooks.parse, raw, max_depth=self._max_json_depth)
        except notebooks.InvalidNotebook as exc:
            await self._store_failed(saved, "notebook_invalid", f"not a valid notebook: {exc}")
            return None

    async def restore(
        self,
        tenant_id: str,
        notebook_id: str,
        number: int,
        *,
        author: str | None,
        label: str | None,
        open_files: list[tuple[str, str]],
    ) -> dict[str, Any] | None:
        """Make revision ``number`` the latest again, also in the files of open sessions.

        A new revision with that revision's content (labelled and attributed),
        announced as stored like any other; then written over the notebook's
        own file on each ``(hub_user, path)`` given (the gateway's open
        sessions), only where that path is this notebook's file for that user.
        A server that cannot be written is reported, not fatal: the revision is
        durable, and the next session opens it. None when the notebook or the
        revision does not exist for the tenant.
        """
        record = await self._store.get_notebook(tenant_id, notebook_id)
        stored = await self._store.revision(tenant_id, notebook_id, number) if record else None
        if record is None or stored is None:
            return None
        content = stored["content"]
        notes = revision_notes(
            label=label or f"restored from revision {number}",
            author=author,
            restored_from=number,
            restricted=bool(stored.get("restricted")),
        )
        revision, digest, changed = await self._store.add_revision(record, content, notes)
        await self._announce_stored(record, revision, digest, save_id=None, changed=changed)
        written, failed = await self._write_open_files(notebook_id, content, open_files)
        return {
            "revision": revision,
            "sha256": digest,
            "changed": changed,
            "written": written,
            "not_written": failed,
        }

    async def _write_open_files(
        self, notebook_id: str, content: dict[str, Any], open_files: list[tuple[str, str]]
    ) -> tuple[list[str], list[str]]:
        """Put ``content`` in the notebook's own file on each user's server given."""
        normalised = notebooks.normalise(content)
        written: list[str] = []
        failed: list[str] = []
        for hub_user, path in dict.fromkeys(open_files):
            if await self._store.file_of(hub_user, notebook_id) != path:
                continue  # only ever this notebook's own file
            try:
                await self._contents.put_notebook(f"/user/{hub_user}/", path, normalised)
            except ContentsError as exc:
                log.warning(
                    "restored revision not written to an open file",
                    extra={"notebook_id": notebook_id, "hub_user": hub_user, "error": str(exc)},
                )
                failed.append(hub_user)
            else:
                written.append(hub_user)
        return written, failed

    async def on_notebook_renamed(self, event: CloudEvent[NotebookRenamed]) -> None:
        """Keep the stored record's name in step with the host's (idempotent).

        Only the event's tenant's notebook: an id of another tenant's is ignored.
        """
        renamed = event.data
        if not await self._store.rename(renamed.tenant_id, renamed.notebook_id, renamed.name):
            log.warning("rename ignored: no such notebook for the tenant", extra=_ids(renamed))

    async def on_notebook_deleted(self, event: CloudEvent[NotebookDeleted]) -> None:
        """Remove the notebook and all its revisions (idempotent).

        Only the event's tenant's notebook: an id of another tenant's deletes nothing.
        """
        deleted = event.data
        if await self._store.delete(deleted.tenant_id, deleted.notebook_id):
            log.info("notebook deleted", extra=_ids(deleted))
        else:
            log.warning("delete ignored: no such notebook for the tenant", extra=_ids(deleted))

    async def _announce_stored(
        self,
        record: dict[str, Any],
        revision: int,
        digest: str,
        *,
        save_id: str | None,
        changed: bool,
    ) -> None:
        stored = NotebookStored(
            tenant_id=record["tenant_id"],
            notebook_id=record["_id"],
            hub_user=record["hub_user"],
            owner_user_id=record["owner_user_id"],
            name=record["name"],
            save_id=save_id,
            revision=revision,
            content_sha256=digest,
            changed=changed,
        )
        await publish_event(self._broker, CloudEvent.wrap(stored, source=SOURCE))

    async def _store_failed(self, saved: NotebookSaved, code: str, reason: str) -> None:
        failed = NotebookStoreFailed(
            tenant_id=saved.tenant_id,
            notebook_id=saved.notebook_id,
            save_id=saved.save_id,
            code=code,
            reason=reason,
        )
        await publish_event(self._broker, CloudEvent.wrap(failed, source=SOURCE))
        log.warning("save not stored", extra={"save_id": saved.save_id, "reason": reason})

    async def _fail(self, ready: ServerReady, code: str, reason: str) -> None:
        failed = SessionFailed.of(ready, code, reason)
        await publish_event(
            self._broker, CloudEvent.wrap(failed, source=SOURCE, subject=ready.session_id)
        )


def _ids(event: NotebookRenamed | NotebookDeleted) -> dict[str, str]:
    return {"tenant_id": event.tenant_id, "notebook_id": event.notebook_id}

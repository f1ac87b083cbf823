"""What the provisioner does with each event it consumes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from faststream.kafka import KafkaBroker

from schemas import (
    CloudEvent,
    EndCode,
    ServerLost,
    ServerReady,
    ServerStopped,
    ServerWarmRequested,
    SessionEnded,
    SessionFailed,
    SessionProvisioning,
    SessionRequested,
)
from schemas.naming import tenant_of
from schemas.profiles import Profile, server_options_of
from services.common.hops import Hops
from services.common.kafka import publish_event
from services.provisioner.hub import HubClient, HubError, RunningServer, SpawnFailed
from services.provisioner.store import OpenSessions

log = logging.getLogger(__name__)

SOURCE = "/nbembed/provisioner"

ENDINGS: dict[str, tuple[EndCode, str]] = {
    "culled": ("server-culled", "JupyterHub's idle culler stopped the user's server"),
    "stopped": ("server-stopped", "The user's server was stopped"),
    "crashed": ("server-crashed", "The user's server stopped unexpectedly"),
    "nbembed": ("server-stopped", "nbembed stopped the user's server"),
}
"""How each cause of a server stop reads to a host: its ``end_code`` and ``end_reason``."""


class _CannotOpen(Exception):
    """The session cannot open; ``code`` and ``reason`` go into session.failed."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _AlreadyEnded(Exception):
    """The session ended before its request was handled (a late or republished request)."""


class ProvisionerHandlers:
    """Owns hub users and servers: turns session requests into running servers."""

    def __init__(
        self,
        hub: HubClient,
        sessions: OpenSessions,
        broker: KafkaBroker,
        *,
        spawn_timeout: float,
        hub_outage_tolerance: float,
        hub_busy_tolerance: float | None = None,
    ) -> None:
        self._hub = hub
        self._sessions = sessions
        self._broker = broker
        self._spawn_timeout = spawn_timeout
        self._hub_outage_tolerance = hub_outage_tolerance
        self._hub_busy_tolerance = hub_busy_tolerance
        self._gone: set[tuple[str, str]] = set()
        """Servers the last reconciliation found gone (user, instance)."""

    async def on_session_requested(self, event: CloudEvent[SessionRequested]) -> None:
        """Ensure the hub user and a ready server, then publish server.ready or session.failed.

        Idempotent: a redelivered request finds the user and the running server
        and publishes server.ready again, which sync also handles idempotently.
        """
        request = event.data
        hops = Hops(event.time)
        # Recording the session (which tells how strict the server must be) runs
        # beside the hub's first answer: a running server costs one round trip.
        strict = asyncio.ensure_future(
            self._sessions.opened(
                request.session_id, request.hub_user, restricted=request.restricted
            )
        )
        try:
            server = await self._ready_server(
                request.hub_user, strict, request.profile, session_id=request.session_id
            )
        except _AlreadyEnded:
            log.info(
                "request of an ended session ignored", extra={"session_id": request.session_id}
            )
            return
        except _CannotOpen as exc:
            await strict
            await self._fail(request, exc.code, exc.reason)
            return
        finally:
            if not strict.done():
                strict.cancel()
        hops.lap("hub_ms")
        # The user's sessions now live on this server: only its stop ends them.
        await self._sessions.on_server(request.hub_user, server.instance)

        ready = ServerReady(
            session_id=request.session_id,
            tenant_id=request.tenant_id,
            hub_user=request.hub_user,
            server_path=server.path,
            host_user_id=request.host_user_id,
            notebook_id=request.notebook_id,
            notebook_name=request.notebook_name,
            inputs=request.inputs,
            profile=request.profile,
        )
        provisioning = SessionProvisioning(
            session_id=request.session_id, tenant_id=request.tenant_id, hub_user=request.hub_user
        )
        # Sync's command and the host's status, side by side: their order does not
        # matter (the gateway only moves a status forward).
        await asyncio.gather(
            publish_event(
                self._broker, CloudEvent.wrap(ready, source=SOURCE, subject=request.session_id)
            ),
            publish_event(
                self._broker,
                CloudEvent.wrap(provisioning, source=SOURCE, subject=request.session_id),
            ),
        )
        hops.lap("publish_ms")
        log.info(
            "server ready",
            extra={"session_id": request.session_id, "hub_user": request.hub_user, **hops.laps},
        )

    async def on_server_warm_requested(self, event: CloudEvent[ServerWarmRequested]) -> None:
        """Start the user's server unless one runs or is starting (a hint: never fails).

        Handled in order with the user's session commands, so a session asked
        for after the warm-up is handled after it and finds the server running
        (one GET). A running server is left alone whatever its profile: a
        hint never ends anyone's kernels. A hub that does not answer or
        refuses is logged, not retried: the next session starts the server.
        """
        warm = event.data
        try:
            state = await self._hub.server_state(warm.hub_user)
            if state is not None and (state.ready is not None or state.pending):
                log.info("warm-up: server already there", extra={"hub_user": warm.hub_user})
                return
            user = await self._sessions.user(warm.hub_user)
            restricted = warm.restricted or bool(user and user.get("restricted_open"))
            await self._hub.ensure_user(warm.hub_user)
            await self._hub.ensure_server(
                warm.hub_user,
                deadline_seconds=self._spawn_timeout,
                restricted=restricted,
                profile=warm.profile,
                busy_seconds=self._hub_busy_tolerance,
            )
        except HubError as exc:
            log.warning("warm-up failed", extra={"hub_user": warm.hub_user, "error": str(exc)})
            return
        log.info("warm-up: server started", extra={"hub_user": warm.hub_user})

    async def _conflict(
        self, hub_user: str, session_id: str, server: RunningServer, profile: Profile | None
    ) -> bool:
        """Whether ``server`` cannot serve a session of ``profile``, and must not be restarted.

        A server serves every profile with its server options (limits, image):
        their kernels all run in it. One with other server options is
        restarted for the new profile only when no other open session of the
        user lives on it; otherwise the new session fails (``profile_conflict``)
        rather than end the kernels of sessions the host still shows.
        """
        wanted = server_options_of(profile.user_options()) if profile else ()
        if server.server_options == wanted:
            return False
        user = await self._sessions.user(hub_user)
        others = [s for s in (user or {}).get("open", []) if s != session_id]
        return bool(others)

    async def _ready_server(
        self,
        hub_user: str,
        strict: Awaitable[bool | None],
        profile: Profile | None = None,
        *,
        session_id: str = "",
    ) -> RunningServer:
        """``hub_user``'s ready server, starting it (and the user) if needed.

        One GET when it already runs in a mode at least as strict as ``strict``
        (restricted-data mode wanted by some open session of the user). A
        server running unrestricted when restricted is wanted is restarted
        restricted: its other sessions' pages reconnect to the stricter server
        and lose their kernels' state, never the reverse. A server whose
        profile's server options (limits, image) differ from ``profile``'s is
        restarted with ``profile`` when no other session of the user is open
        on it, else the session fails with ``profile_conflict`` (`_conflict`);
        profiles that differ only in kernel share the server. Retries while the hub
        does not answer, for at most the outage tolerance; raises `_CannotOpen`
        with a reason for the host developer.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._spawn_timeout
        unreachable_deadline = loop.time() + self._hub_outage_tolerance
        delay = 0.5
        while True:
            try:
                server = await self._hub.ready_server(hub_user)
                restricted = await strict
                if restricted is None:
                    raise _AlreadyEnded
                fits = server is not None and server.server_options == (
                    server_options_of(profile.user_options()) if profile else ()
                )
                if server is not None and fits and (server.restricted or not restricted):
                    return server
                if server is not None and await self._conflict(
                    hub_user, session_id, server, profile
                ):
                    raise _CannotOpen(
                        "profile_conflict",
                        f"the user's server runs profile {server.profile or '(none)'} with "
                        "other resources or image, and other sessions of the user are open on "
                        f"it: end them, or open this session with profile "
                        f"{server.profile or '(none)'}",
                    )
                if server is not None:
                    log.info(
                        "restarting server",
                        extra={"hub_user": hub_user, "restricted": restricted, "fits": fits},
                    )
                    await self._hub.stop_server(hub_user)
                    await self._hub.wait_stopped(hub_user, timeout=max(1.0, deadline - loop.time()))
                else:
                    await self._hub.ensure_user(hub_user)
                return await self._hub.ensure_server(
                    hub_user,
                    deadline_seconds=max(1.0, deadline - loop.time()),
                    restricted=restricted,
                    profile=profile,
                    busy_seconds=self._hub_busy_tolerance,
                )
            except SpawnFailed as exc:
                raise _CannotOpen("spawn_failed", str(exc)) from exc
            except HubError as exc:
                unreachable = exc.status == 0 or exc.status >= 500
                if not unreachable:
                    raise _CannotOpen("spawn_failed", str(exc)) from exc
                if loop.time() + delay > min(deadline, unreachable_deadline):
                    waited = self._hub_outage_tolerance
                    reason = f"JupyterHub did not answer for {waited:.0f}s: {exc}"
                    raise _CannotOpen("hub_unavailable", reason) from exc
                log.warning("hub unavailable, retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def on_session_ended(self, event: CloudEvent[SessionEnded]) -> None:
        """End all access of the user once their last open session has ended (idempotent).

        The server stops and the hub user is deleted with every token and
        browser login it had (sync's tokens, the browser's OAuth tokens and
        hub cookie): nothing outlives the user's last session, not even in a
        browser left open on a shared machine. The next session creates the
        hub user again.
        """
        ended = event.data
        still_open = await self._sessions.ended(ended.session_id, ended.hub_user)
        if still_open == 0:
            await self._hub.forget_user(ended.hub_user)
            log.info("hub user forgotten", extra={"hub_user": ended.hub_user})

    async def on_server_stopped(self, event: CloudEvent[ServerStopped]) -> None:
        """End the sessions that lived on the server that stopped (idempotent).

        Handled in order with the user's session commands (same topic, same
        key): every request before this notice already has its server. So
        the sessions on the stopped ``instance`` end, and nothing else: a
        notice about an older server (one the provisioner restarted in a
        stricter mode, or a stop after which a new session already started
        a new server) finds another instance recorded and ends nothing. The
        notice is a claim: the hub must confirm that server is gone.
        """
        stop = event.data
        if stop.cause == "nbembed":
            # The provisioner's own stops (a restart in a stricter mode, the last
            # session's end) take care of their sessions themselves; a server that
            # failed to come back is found by the reconciliation.
            return
        user = await self._sessions.user(stop.hub_user)
        recorded = (user or {}).get("instance")
        if user is None or recorded is None or recorded != stop.instance:
            log.info(
                "stop of a server no session lives on",
                extra={"hub_user": stop.hub_user, "cause": stop.cause},
            )
            return
        state = await self._hub.server_state(stop.hub_user)
        if state is not None and state.instance == stop.instance and state.pending != "stop":
            log.warning("stop notice for a server still running", extra={"hub_user": stop.hub_user})
            return
        await self._sessions.server_gone(stop.hub_user)
        open_sessions: list[str] = list(user.get("open", []))[-1000:]  # the contract's bound
        if not open_sessions:
            return
        code, text = ENDINGS[stop.cause]
        lost = ServerLost(
            tenant_id=tenant_of(stop.hub_user),
            hub_user=stop.hub_user,
            session_ids=open_sessions,
            code=code,
            reason=f"{text} ({stop.detail or stop.cause}). Open the notebook again in a new "
            "session: its last saved revision is kept.",
        )
        await publish_event(self._broker, CloudEvent.wrap(lost, source=SOURCE))
        log.info(
            "server lost, sessions end",
            extra={"hub_user": stop.hub_user, "code": code, "sessions": len(open_sessions)},
        )

    async def reconcile(self) -> int:
        """Report every server the hub no longer runs while sessions live on it.

        For a notice the hub could not deliver (provisioner down, hub
        restarted). A server is reported once it was found gone on two
        passes in a row, so a stop and start within one interval (someone
        restarting it with nbembed's service token) is no loss. Only
        publishes `ServerStopped`: its handler decides in order with the
        user's session commands, so a server being restarted by a request in
        flight is never taken for a lost one. Returns how many were reported.
        """
        gone: set[tuple[str, str]] = set()
        for user in await self._sessions.users_on_servers():
            state = await self._hub.server_state(user["_id"])
            running = state is not None and state.instance == user["instance"]
            if not (running and state is not None and state.pending != "stop"):
                gone.add((user["_id"], user["instance"]))
        confirmed, self._gone = gone & self._gone, gone
        for hub_user, instance in sorted(confirmed):
            stopped = ServerStopped(
                hub_user=hub_user,
                instance=instance,
                cause="stopped",
                detail="found stopped when nbembed checked the hub",
            )
            await publish_event(self._broker, CloudEvent.wrap(stopped, source=SOURCE))
        return len(confirmed)

    async def _fail(self, request: SessionRequested, code: str, reason: str) -> None:
        failed = SessionFailed.of(request, code, reason)
        await publish_event(
            self._broker, CloudEvent.wrap(failed, source=SOURCE, subject=request.session_id)
        )
        log.warning(
            "session failed",
            extra={"session_id": request.session_id, "code": code, "reason": reason},
        )

"""The upload stage: pending sequences, once due, → the server.

Woken by processing (new sequences) or a reload; waits out an unreachable server with a growing
backoff and a refused token until SIGHUP brings a new one. What the server says goes into the
status, never the token itself. While images wait for their source (a drive unplugged, a folder
gone), their sequences are looked at again as soon as a missing root is back, and every
SOURCE_RECHECK_SECONDS in case a folder was put back in place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from daemon.core import auth, config, log
from daemon.core.aio import wait_event
from daemon.journal import AsyncJournal, FileFailures, Journal, SequenceState, journal_trouble
from daemon.mapillary import AuthError
from daemon.mapillary import MapillaryError as UploadError
from daemon.runtime.state import RunStats, Runtime, Wakeups
from daemon.upload.client import UploadClient
from daemon.upload.events import UploadEvent
from daemon.upload.published import PublishedIds
from daemon.upload.throttle import within_hours
from daemon.upload.worker import SequenceResult, SequenceUploader

OFFLINE_BACKOFF_MAX = 60.0
UPLOAD_IDLE_SECONDS = 30.0
SOURCE_POLL_SECONDS = 2.0  # while images wait for their source: is a missing root back?
SOURCE_RECHECK_SECONDS = 60.0  # ... and a look at their paths (a deleted folder restored)
PUBLISHED_POLL_SECONDS = 60.0  # how often clusters due for a look (their ids) are looked for


class Uploading:
    def __init__(
        self,
        *,
        settings: config.Settings,
        token: str | None,
        journal: AsyncJournal,
        missing_roots: Callable[[], set[str]],
        wake: Wakeups,
        stats: RunStats,
        runtime: Runtime,
        failures: FileFailures | None = None,
    ) -> None:
        self.settings = settings
        self.token = token  # given on the command line: no token store is read
        self.journal = journal
        self.missing_roots = missing_roots
        self.wake = wake
        self.stats = stats
        self.runtime = runtime
        self.failures = failures or FileFailures(journal)
        self.log = log.get("daemon")
        self._bytes_window: list[tuple[float, int]] = []
        self._waiting = False  # the last pass left images waiting for their source
        self._away: set[str] = set()  # the roots missing at the last pass
        self._client: UploadClient | None = None
        self._client_for: tuple[str, config.Settings] | None = None
        # Why due sequences are held back now, (reason, detail) for `status`; None: they go.
        self.blocked: tuple[str, str] | None = None
        self.published = PublishedIds(journal)
        self._finished = asyncio.Event()  # a sequence finished: ask about its cluster soon
        self._client_lock = asyncio.Lock()  # the follow-up and the uploads share one client

    async def run(self) -> None:
        # The ids of finished sequences are asked for beside the uploads, never in their way.
        follow_up = asyncio.create_task(self._follow_up(), name="published-ids")
        try:
            await self._run()
        finally:
            follow_up.cancel()
            await asyncio.gather(follow_up, return_exceptions=True)
            await self.close()

    async def _follow_up(self) -> None:
        """Now and then (and right after a finish), the sequence and image ids of finished
        uploads the service may have processed since."""
        while not self.wake.stopping.is_set():
            await wait_event(self._finished, PUBLISHED_POLL_SECONDS)
            self._finished.clear()
            if not await self.check_published():
                return

    async def check_published(self) -> bool:
        """One pass of the follow-up (within upload hours, with a token); trouble is logged,
        never raised. False once the journal is in trouble (the upload stage meets it too)."""
        try:
            if not await self.journal.run(lambda j: j.clusters_due(limit=1)):
                return True  # nothing to ask: no session opened for it
        except Exception as exc:
            if journal_trouble(exc):
                return False
            raise
        token = self.token or await asyncio.to_thread(self._stored_token)
        if not token or not self.in_upload_hours(quiet=True):
            return True
        try:
            # The uploads' session as it is: replacing it (a reload, a new token) is the
            # upload stage's, between its passes, never under an upload in flight.
            client = self._client if self._client is not None else await self.client(token)
            await self.published.check_due(client)
        except AuthError:
            pass  # the upload stage says so
        except Exception as exc:
            if journal_trouble(exc):
                return False
            self.log.warning("published_ids_failed", reason=f"{type(exc).__name__}: {exc}")
        return True

    def _stored_token(self) -> str | None:
        try:
            return auth.load_token(self.settings.profile)
        except auth.TokenStoreError:
            return None  # said by the upload stage

    async def _run(self) -> None:
        backoff = 2.0
        self.wake.upload.set()  # what the last run left queued goes now, not in 30 s
        while not self.wake.stopping.is_set():
            await self._wait_for_work()
            self.wake.upload.clear()
            await self.retry_failed()
            token = await self.access_token()
            if not token:
                said = self.runtime.server  # "no token: run ..." or why it cannot be read
                self.blocked = ("no token", said.removeprefix("no token: "))
                continue
            if not self.in_upload_hours():
                self.blocked = ("upload hours", self.settings.upload_hours)
                continue
            if self.blocked is not None and self.blocked[0] != "server unreachable":
                self.blocked = None
            pending = await self.due_sequences()
            if not pending:
                continue
            try:
                await self.upload(token, pending)
                backoff = 2.0
                self.blocked = None
            except AuthError as exc:
                self.blocked = ("no token", f"the token was refused: {exc}")
                self.runtime.server = f"token refused: {exc}"
                self.log.error("token_refused", reason=str(exc))
                self.wake.upload.clear()
                await wait_event(self.wake.upload, 600.0)  # SIGHUP (a new token) wakes us
            except UploadError as exc:
                self.blocked = ("server unreachable", str(exc))
                self.runtime.server = f"unreachable: {exc}"
                self.log.warning("server_unreachable", reason=str(exc), retry_in=backoff)
                await wait_event(self.wake.stopping, backoff)
                backoff = min(backoff * 2, OFFLINE_BACKOFF_MAX)
                self.wake.upload.set()
            except Exception as exc:  # a bug, not an outage: said, and tried again later
                if journal_trouble(exc):
                    raise
                self.log.error("upload_pass_failed", reason=f"{type(exc).__name__}: {exc}")
                self.log.debug("upload_pass_failed_traceback", exc_info=exc)
                await wait_event(self.wake.stopping, backoff)
                backoff = min(backoff * 2, OFFLINE_BACKOFF_MAX)
                self.wake.upload.set()

    async def _wait_for_work(self) -> None:
        """Until woken, the idle time passes, or (while images wait for their source) a
        missing root is back or the recheck time has passed."""
        if not self._waiting:
            await wait_event(self.wake.upload, UPLOAD_IDLE_SECONDS)
            return
        deadline = time.monotonic() + SOURCE_RECHECK_SECONDS
        away = set(self._away)  # missing at the last pass, or since (it may have gone after)
        while time.monotonic() < deadline:
            if await wait_event(self.wake.upload, SOURCE_POLL_SECONDS):
                return
            missing = self.missing_roots()
            if away - missing:
                return  # a drive is back: its sequences go on now
            away |= missing

    async def access_token(self) -> str | None:
        """The access token, or None with the reason in the status (never the token itself)."""
        if self.token:
            return self.token
        try:
            token = await asyncio.to_thread(auth.load_token, self.settings.profile)
        except auth.TokenStoreError as exc:
            problem = f"cannot read the token: {exc}"
            if self.runtime.server != problem:  # said once, not every 30 s
                self.log.error("token_unreadable", reason=str(exc))
            self.runtime.server = problem
            return None
        if not token:
            self.runtime.server = "no token: run 'mapillary-daemon authenticate'"
        return token

    def in_upload_hours(self, quiet: bool = False) -> bool:
        """Outside ``upload_hours`` sequences wait (imports and processing go on); the 30 s
        check starts them when the window opens. ``quiet``: only ask, say nothing."""
        now = time.localtime()
        if within_hours(self.settings.upload_hours, now.tm_hour * 60 + now.tm_min):
            return True
        if quiet:
            return False
        self.runtime.activity = f"waiting for upload hours ({self.settings.upload_hours})"
        return False

    async def retry_failed(self) -> None:
        """Failed sequences go back to pending when `retry` asked for them (the journal is the
        channel) or when their scheduled next try has come."""
        first = self.settings.retry_failed_after

        def requeue(journal: Journal) -> list[str]:
            asked = journal.take_retry_requests()
            done = journal.retry_sequences(asked) if asked is not False else []
            due = journal.schedule_retries(first)
            return done + (journal.retry_sequences(due, auto=True) if due else [])

        for uuid in await self.journal.run(requeue):
            self.log.info("sequence_retried", sequence=uuid)

    async def due_sequences(self) -> list[str]:
        """Pending sequences past their upload delay. Those of a missing root are in, too: the
        worker reads only our spool copies of them and marks the rest waiting (shown in status)
        without looking at paths where another drive may be mounted now."""
        rows = await self.journal.sequences_in_state(SequenceState.PENDING)
        due = time.time() - self.settings.upload_delay
        return [r.uuid for r in rows if r.created_at <= due]

    async def client(self, token: str) -> UploadClient:
        """One client (one HTTP session, its connections kept alive) for the daemon's life;
        a new one only when the token changed (SIGHUP) or the settings did (a reload)."""
        async with self._client_lock:
            if self._client is not None and self._client_for == (token, self.settings):
                return self._client
            await self.close()
            client = UploadClient.from_settings(self.settings, token)
            client.events.subscribe(self._on_upload_event)
            self._client = await client.__aenter__()
            self._client_for = (token, self.settings)
            return client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def upload(self, token: str, uuids: list[str]) -> None:
        client = await self.client(token)
        self.runtime.activity = f"uploading {len(uuids)} sequence(s)"
        away = self._away = self.missing_roots()
        self._waiting = False
        worker = SequenceUploader(
            self.journal,
            client,
            on_sequence=self._on_sequence,
            failures=self.failures,
            source_missing=lambda root: root in away,
            source_wait=self.settings.source_wait,
        )
        await worker.upload_all(uuids)
        self.runtime.server = "reachable"
        self.runtime.activity = "idle"

    def _on_sequence(self, result: SequenceResult) -> None:
        self._waiting = self._waiting or bool(result.waiting)
        if result.waiting and not result.set_aside:
            return  # looked again, still waiting: nothing to count (rechecked every minute)
        self.stats.results.append(result)
        self.stats.rejected += len(result.set_aside)
        if result.cluster_id:
            self.stats.finished += 1
            self._finished.set()
        elif result.error:
            self.stats.failed += 1

    def _on_upload_event(self, event: UploadEvent) -> None:
        if event.kind == "end":
            now = time.monotonic()
            self._bytes_window.append((now, event.total))
            self._bytes_window = [(t, n) for t, n in self._bytes_window if now - t < 60]
            span = max(now - self._bytes_window[0][0], 1.0)
            self.runtime.upload_rate = sum(n for _, n in self._bytes_window) / span
            self.runtime.server = "reachable"
            if self.blocked is not None and self.blocked[0] == "server unreachable":
                self.blocked = None  # back: not "waiting for the server" for the whole pass

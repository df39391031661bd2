"""The daemon: one asyncio process wiring sources → import → journal → pipeline → uploader.

``Daemon`` only supervises: ``startup`` opens the journal and the sources and builds the stages
(intake, processing, upload, housekeeping; ``--once`` in place of the processing and upload
loops), ``main`` runs them as named tasks created and awaited in one place, ``shutdown`` undoes
startup, ``apply_settings`` takes a reload. The stages share only the journal, the wake-up
events and this run's figures; signals only set flags. Every decision is taken from the
journal, so a restart (or a power cut) resumes from where the journal says; so a journal
deleted or replaced under the running daemon stops it (``journal_gone``), since nothing it does
from then on would be remembered.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.core import config, log
from daemon.core.durable import make_private_folders
from daemon.core.errors import EXIT_IO, EXIT_OK, EXIT_SET_ASIDE, EXIT_USAGE
from daemon.intake import Sources, clean_spool_temps
from daemon.journal import ASIDE_META, GPX_META, AsyncJournal, FileFailures, JournalGone
from daemon.pipeline.dates import zones_used
from daemon.runtime.clock import clock_news, initial_state, offset_text
from daemon.runtime.gps import GpsLogging
from daemon.runtime.housekeeping import Housekeeping
from daemon.runtime.intake import Intake
from daemon.runtime.once import until_done
from daemon.runtime.process import GpxLibrary, Processing, zone_label
from daemon.runtime.roots import RootActivity
from daemon.runtime.state import RunStats, Runtime, StatusBoard, Wakeups
from daemon.runtime.uploading import Uploading
from daemon.runtime.waiting import Holdups, WaitingReasons
from daemon.web import WebPage, refusal, retry_sequence


@dataclass
class Stages:
    """The stages of a started daemon, with the status board they write to."""

    intake: Intake
    processing: Processing
    uploading: Uploading
    housekeeping: Housekeeping
    board: StatusBoard
    gps: GpsLogging | None = None  # only with `gpsd` set (a reload starts, stops, re-points it)

    def take(self, settings: config.Settings) -> None:
        for stage in (self.intake, self.processing, self.uploading, self.housekeeping):
            stage.settings = settings


class Daemon:
    def __init__(self, settings: config.Settings, *, once: bool = False, token: str | None = None):
        self.settings = settings
        self.once = once
        self.token = token
        self.log = log.get("daemon")
        self.runtime = Runtime()
        self.stats = RunStats()
        self.wake = Wakeups()
        self.gpx = GpxLibrary()
        self.activity = RootActivity()
        self.journal: AsyncJournal | None = None
        self.sources: Sources | None = None
        self._stages: Stages | None = None
        self._said_gone = False
        self._web_moved = asyncio.Event()  # a reload changed where (or how) the page is served
        self._gpsd_changed = asyncio.Event()  # a reload changed `gpsd`: the GPS stage follows

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def stopping(self) -> asyncio.Event:
        return self.wake.stopping

    @property
    def stages(self) -> Stages:
        if self._stages is None:
            raise RuntimeError("the daemon has not been started")
        return self._stages

    @property
    def intake(self) -> Intake:
        return self.stages.intake

    async def startup(self) -> None:
        spool = self.settings.spool_path
        await asyncio.to_thread(make_private_folders, spool)
        left = await asyncio.to_thread(clean_spool_temps, spool)
        if left:
            self.log.info("spool_temps_removed", files=left, reason="copies cut off last time")
        self.journal = journal = await AsyncJournal.open(self.settings.journal_path)
        known = await journal.get_meta(GPX_META, {}) or {}
        self.gpx.load_known(known)
        aside = await journal.get_meta(ASIDE_META, {}) or {}
        failures = FileFailures(journal)
        await failures.load()
        self.sources = sources = Sources(
            watch=self.settings.watch,
            mount_roots=self.settings.mount_roots,
            extra=[self.settings.gpx_dir] if self.settings.gpx_dir else [],
            settle_seconds=self.settings.settle_seconds,
            batch_quiet_seconds=self.settings.batch_quiet_seconds,
            poll_interval=self.settings.poll_interval,
            ignore=[spool],
        )
        self._stages = self._build(journal, sources, aside, failures)
        self.runtime.clock = initial_state(self.settings.tz, self.settings.time_offset)
        await sources.start()
        self.runtime.activity = "scanning"
        self.log.info(
            "daemon_started",
            journal=str(self.settings.journal_path),
            spool=str(spool),
            watch=[str(p) for p in self.settings.watch],
            mount_roots=[str(p) for p in self.settings.mount_roots],
            zone=self.zone_label,
            time_offset=self.settings.time_offset,
        )

    def _build(
        self,
        journal: AsyncJournal,
        sources: Sources,
        aside: dict[str, list[float]],
        failures: FileFailures,
    ) -> Stages:
        settings, wake, stats = self.settings, self.wake, self.stats
        board = StatusBoard(self.runtime, journal, sources.status, sources.missing_roots)
        stages = Stages(
            intake=Intake(
                settings=settings,
                journal=journal,
                sources=sources,
                gpx=self.gpx,
                aside=aside,
                wake=wake,
                stats=stats,
                activity=self.activity,
                board=board,
                failures=failures,
            ),
            processing=Processing(
                settings=settings,
                journal=journal,
                gpx=self.gpx,
                once=self.once,
                wake=wake,
                stats=stats,
                activity=self.activity,
                board=board,
                failures=failures,
                settling=sources.settling_under,
                missing_roots=sources.missing_roots,
            ),
            uploading=Uploading(
                settings=settings,
                token=self.token,
                journal=journal,
                missing_roots=sources.missing_roots,
                wake=wake,
                stats=stats,
                runtime=self.runtime,
                failures=failures,
            ),
            housekeeping=Housekeeping(settings=settings, journal=journal, wake=wake, board=board),
            board=board,
            gps=self._gps_stage(settings, journal, board),
        )
        self._explain_waiting(stages, journal, sources)
        return stages

    def _gps_stage(
        self, settings: config.Settings, journal: AsyncJournal, board: StatusBoard
    ) -> GpsLogging | None:
        if settings.gpsd is None or self.once:
            return None
        return GpsLogging(
            settings=settings,
            journal=journal,
            gpx=self.gpx,
            wake=self.wake,
            runtime=self.runtime,
            board=board,
        )

    def _explain_waiting(self, s: Stages, journal: AsyncJournal, sources: Sources) -> None:
        """Why photos wait, read from the stages into the status board before each save."""
        holdups = Holdups(
            settling=lambda: len(sources.settler.candidates),
            settling_under=sources.settling_under,
            copying=s.intake.copying,
            activity=self.activity,
            missing_roots=sources.missing_roots,
            upload_blocked=lambda: s.uploading.blocked,
        )
        reasons = WaitingReasons(lambda: s.uploading.settings, journal, holdups)
        s.board.before_save = lambda: reasons.refresh(self.runtime)

    @property
    def zone_label(self) -> str:
        """The zone naive camera times are read in, named (a wrong one shifts every position)."""
        return zone_label(self.settings.tz)

    async def shutdown(self) -> None:
        """Undo startup. A journal found gone only here (a stop came first) is said, and
        raised once the rest is closed."""
        gone: JournalGone | None = None
        said = self._said_gone  # then main() has raised it already
        if self.sources is not None:
            await self.sources.stop()
        if self._stages is not None:
            self.runtime.stopped = True
            self.runtime.activity = "stopped"
            try:
                await self._stages.intake.flush()
                if self._stages.gps is not None:
                    await self._stages.gps.close()
                await self._stages.board.save(force=True)
            except JournalGone as exc:  # nothing can be recorded any more
                gone = None if said else exc
                self.journal_gone(exc)
        if self.journal is not None:
            await self.journal.aclose()
        self.log.info("daemon_stopped")
        if gone is not None:
            raise gone

    def journal_gone(self, exc: JournalGone) -> None:
        """Say (once) why the daemon stops: the journal it writes to is no longer there."""
        if not self._said_gone:
            self._said_gone = True
            self.log.error(
                "journal_gone",
                journal=str(self.settings.journal_path),
                reason=str(exc),
                hint="stopped, so that nothing is done that would not be remembered; find out "
                "what removed it (a cleanup job, a full or remounted disk) before starting again",
            )

    def request_stop(self) -> None:
        self.wake.stopping.set()
        self.wake.process.set()
        self.wake.upload.set()

    async def main(self) -> int:
        s = self.stages
        work: dict[str, Coroutine[Any, Any, None]] = {
            "intake": s.intake.run(),
            "housekeeping": s.housekeeping.run(),
            "journal_watch": s.housekeeping.watch_journal(),
        }
        if self.once:
            # One pass, in order: no concurrent processing or upload loops.
            work["once"] = self._once(s)
        else:
            work["process"] = s.processing.run()
            work["upload"] = s.uploading.run()
            work["web"] = self._web()  # not for a one-shot run from cron
            work["gps"] = self._gps()
        tasks = {asyncio.create_task(coro, name=name) for name, coro in work.items()}
        stop = asyncio.create_task(self.wake.stopping.wait(), name="stop")
        done, _ = await asyncio.wait(tasks | {stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks | {stop}:
            task.cancel()
        await asyncio.gather(*tasks, stop, return_exceptions=True)
        for task in done:
            if task is not stop and not task.cancelled():
                error = task.exception()
                if isinstance(error, JournalGone):
                    self.journal_gone(error)
                if error is not None:
                    raise error
        # A service stopped by SIGTERM has done its job (exit 0, or systemd marks it failed);
        # for --once the exit code tells cron whether something needs a look, and 3 that
        # it could not do all it could (the spool's disk full or failing).
        if self.once and self.stats.no_token:
            return EXIT_USAGE  # as `upload` without a token: a usage problem, not a failure
        if self.once and self.stats.not_copied:
            return EXIT_IO
        if self.once and (self.stats.rejected or self.stats.failed or any(self.stats.left)):
            return EXIT_SET_ASIDE
        return EXIT_OK

    async def _gps(self) -> None:
        """Run the GPS stage while `gpsd` is set; a reload that changes it stops the stage
        (its log written and finished) and starts the one it now names, if any."""
        while not self.stopping.is_set():
            stage = self.stages.gps
            run = asyncio.create_task(stage.run(), name="gps_stage") if stage else None
            changed = asyncio.create_task(self._gpsd_changed.wait(), name="gpsd_changed")
            pending = {changed} if run is None else {run, changed}
            try:
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            error = None if run is None or run.cancelled() else run.exception()
            if error is not None:
                raise error  # the journal failing (the stage fences all else): a stop
            if self._gpsd_changed.is_set():
                self._gpsd_changed.clear()
                await self._switch_gps()

    async def _switch_gps(self) -> None:
        """The GPS stage of the settings now in force, in place of the one that ran."""
        assert self.journal is not None
        old = self.stages.gps
        if old is not None:
            await old.close()
        self.stages.gps = new = self._gps_stage(self.settings, self.journal, self.stages.board)
        if new is None:
            self.runtime.gps = None
        self.log.info(
            "gps_switched",
            before=old.client.server if old else "off",
            now=new.client.server if new else "off",
        )
        await self.stages.board.save()

    async def _web(self) -> None:
        """Serve the status page until stopped, where the settings say; a reload that changes
        them serves it anew (the old address closed first). A page that cannot be served is
        said once and the daemon goes on without it: photos matter more than their view."""
        while not self.stopping.is_set():
            self._web_moved.clear()
            page = await self._serve_page()
            moved = asyncio.create_task(self._web_moved.wait())
            stop = asyncio.create_task(self.stopping.wait())
            try:
                await asyncio.wait({moved, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()
                stop.cancel()
                if page is not None:
                    self.runtime.web = None
                    await page.stop()
                    self.log.info("web_page_closed", url=page.url)

    async def _serve_page(self) -> WebPage | None:
        """The page started as the settings say, or None (off, refused, address taken)."""
        listen, secret = self.settings.web_listen, self.settings.web_password_hash
        if listen == "off":
            await self._save_web(None)
            return None
        refused = refusal(listen, secret)
        page = WebPage(self.settings.journal_path, listen, secret, retry=self._retry)
        if refused is None:
            try:
                url = await page.start()
            except OSError as exc:
                await page.stop()
                refused = f"cannot listen on {listen}: {exc.strerror or exc}"
        if refused is not None:
            self.log.error("web_page_refused", listen=listen, reason=refused)
            await self._save_web(None)
            return None
        self.log.info("web_page", url=url, protected=page.password_hash is not None)
        await self._save_web(url)  # so that `status` says where the page is
        return page

    async def _save_web(self, url: str | None) -> None:
        if self.runtime.web != url:
            self.runtime.web = url
            await self.stages.board.save()

    async def _retry(self, uuid: str) -> str | None:
        """The page's Retry: a failed sequence pending again, the uploader woken for it."""
        assert self.journal is not None
        why = await self.journal.run(lambda j: retry_sequence(j, uuid))
        if why is None:
            self.log.info("sequence_retry", sequence=uuid, by="status page")
            self.wake.upload.set()
        return why

    async def _once(self, s: Stages) -> None:
        assert self.sources is not None
        await until_done(
            self.sources, s.intake, s.processing, s.uploading, self.stats, self.runtime
        )
        self.request_stop()

    # -- reload and status line ----------------------------------------------------------------

    async def apply_settings(self, new: config.Settings) -> None:
        """Take a reloaded configuration: watch roots, limits and endpoints change live."""
        assert self.sources is not None
        old_roots = {*self.settings.watch, *self.settings.mount_roots}
        new_roots = {*new.watch, *new.mount_roots}
        for root in new_roots - old_roots:
            await self.sources.add_root(root, card_root=root in new.mount_roots)
        for root in old_roots - new_roots:
            await self.sources.remove_root(root)
        web_moved = (self.settings.web_listen, self.settings.web_password_hash) != (
            new.web_listen,
            new.web_password_hash,
        )
        gpsd_changed = new.gpsd != self.settings.gpsd
        self.settings = new
        self.stages.take(new)
        if web_moved:
            self._web_moved.set()
        if gpsd_changed and not self.once:
            self._gpsd_changed.set()  # the GPS stage switches over (a reload answers at once)
        self.runtime.clock = initial_state(new.tz, new.time_offset)
        self.log.info(
            "config_reloaded",
            added=[str(r) for r in new_roots - old_roots],
            removed=[str(r) for r in old_roots - new_roots],
        )
        await self.stages.housekeeping.check_disk(routine=False)  # new min_free_mb: now
        await self.stages.board.save()
        self.wake.process.set()
        self.wake.upload.set()

    def status_line(self) -> str:
        """One line for systemd's STATUS=."""
        s = self.stats
        line = (
            f"{s.imported} new photos, {s.sequences} sequences made, {s.finished} uploaded; "
            f"{self.runtime.activity}; server {self.runtime.server}"
        )
        return f"{line}; {self.runtime.paused}" if self.runtime.paused else line


def install_signal_handlers(daemon: Daemon, reload: Callable[[], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)


async def run_daemon(
    settings: config.Settings,
    *,
    once: bool = False,
    reload_settings: Callable[[], config.Settings] | None = None,
    gpx_files: list[Path] | None = None,
) -> int:
    """Run until stopped (or, with ``once``, until done). ``reload_settings`` is called on
    SIGHUP and returns new settings or raises ``config.ConfigError``."""
    from daemon.runtime.notify import Notifier, watchdog_loop

    daemon = Daemon(settings, once=once)
    for path in gpx_files or []:
        daemon.gpx.add(f"file:{path}", str(path))
    notifier = Notifier.from_environment()

    reloads: set[asyncio.Task[None]] = set()

    def _reload_done(task: asyncio.Task[None]) -> None:
        reloads.discard(task)
        if not task.cancelled() and task.exception() is not None:
            daemon.log.error("reload_failed", reason=repr(task.exception()))

    def reload() -> None:
        if reload_settings is None:
            return
        notifier.reloading()
        try:
            new = reload_settings()
        except config.ConfigError as exc:
            daemon.log.error("reload_refused", reason=str(exc))
        else:
            task = asyncio.get_running_loop().create_task(daemon.apply_settings(new))
            reloads.add(task)  # kept referenced until done; a failure is logged, not lost
            task.add_done_callback(_reload_done)
        notifier.ready()

    install_signal_handlers(daemon, reload)
    await daemon.startup()
    notifier.ready()
    pinger = asyncio.create_task(watchdog_loop(notifier, daemon.status_line, daemon.stopping))
    try:
        code = await daemon.main()
    finally:
        notifier.stopping()
        pinger.cancel()
        await asyncio.gather(pinger, return_exceptions=True)
        await daemon.shutdown()
    stats = daemon.stats
    zone = zones_used(stats.provenance.zones.elements()) or daemon.zone_label  # offsets used
    daemon.log.info("run_summary", zone=zone, sources=stats.provenance.as_dict(), **stats.figures())
    if once:
        print(
            f"{stats.line()}\ncamera times without a zone read in {zone}, "
            f"camera clock offset {offset_text(daemon.settings.time_offset)}"
        )
        for line in stats.details():
            print(line)
        found = clock_news(daemon.runtime.clock)
        if found:
            print(found)
    return code

"""After ``finish_upload``: ask the graph API, now and then, which sequence and images a cluster
became, so `status` can say "this photo is on the map" with a link.

The service processes a finished upload in minutes to hours. Each cluster is asked about right
after its finish, then after FIRST_DELAY, doubled each time up to MAX_DELAY, and no more after
MAX_CHECKS (about a week): a handful of small GETs per sequence, never in the way of uploads.
An API that does not answer the question (a refusal) is asked again on the same schedule and
the reason kept for `status`; an unreachable one ends the pass, to be tried at the next.
"""

from __future__ import annotations

import time

from daemon.core import log
from daemon.journal import AsyncJournal, Journal
from daemon.journal.clusters import ClusterRow
from daemon.mapillary.errors import AuthError, MapillaryError, RejectedError
from daemon.upload.client import UploadClient

FIRST_DELAY = 60.0
MAX_DELAY = 6 * 3600.0
MAX_CHECKS = 36  # 9 checks to reach MAX_DELAY (8.5 h), then 27 more: about a week in all
PER_PASS = 5  # clusters asked about per pass: a backlog is worked off over several


def next_check(checks: int, now: float) -> float | None:
    """When to ask again after an unanswered check that had ``checks`` before it (None: that
    was the last).

    >>> [next_check(n, 0.0) for n in (0, 1, 3)], next_check(20, 0.0), next_check(MAX_CHECKS - 1, 0)
    ([60.0, 120.0, 480.0], 21600.0, None)
    """
    if checks + 1 >= MAX_CHECKS:
        return None
    return now + min(FIRST_DELAY * 2.0**checks, MAX_DELAY)


class PublishedIds:
    """Asks about the clusters that are due and records what the service says."""

    def __init__(self, journal: AsyncJournal) -> None:
        self.journal = journal
        self._log = log.get("upload")

    async def check_due(self, client: UploadClient, now: float | None = None) -> int:
        """Ask about up to PER_PASS due clusters; how many got their ids. ``AuthError`` is
        raised (the upload stage says it); an unreachable service ends the pass quietly."""
        when = time.time() if now is None else now
        due = await self.journal.run(lambda j: Journal.clusters_due(j, when, PER_PASS))
        found = 0
        for row in due:
            try:
                found += await self._check(client, row, when)
            except AuthError:
                raise
            except RejectedError as exc:
                await self._again(row, when, f"the graph API does not tell: {exc}")
            except MapillaryError as exc:  # unreachable, retries spent: the next pass
                self._log.info("published_ids_later", cluster_id=row.cluster_id, reason=str(exc))
                break
        return found

    async def _check(self, client: UploadClient, row: ClusterRow, now: float) -> int:
        got = await client.published_ids(row.cluster_id)
        if got is None:
            await self._again(row, now, "being processed by Mapillary")
            return 0
        sequence, images = got
        await self.journal.run(lambda j: j.record_ids(row.cluster_id, sequence, images))
        self._log.info(
            "sequence_on_the_map",
            sequence=row.sequence_uuid,
            cluster_id=row.cluster_id,
            mapillary_sequence=sequence,
            images=len(images),
        )
        return 1

    async def _again(self, row: ClusterRow, now: float, note: str) -> None:
        later = next_check(row.checks, now)
        if later is None:
            note = f"{note}; no more checks after {row.checks + 1}"
        await self.journal.run(lambda j: j.record_check(row.cluster_id, later, note))

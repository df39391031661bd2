"""The graph API calls we make (../shared/PROTOCOL.md): ``me``, ``finish_upload``, ``images``,
and after a finish the cluster's ``sequence`` and that sequence's ``image_ids``.

Each method is one attempt over the caller's session: a classified ``retry.Failure`` when the
request failed (the caller's retry loop decides), a ``RejectedError`` when the answer cannot be
used (never worth repeating), else the answer's useful part.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from daemon.mapillary.errors import RejectedError
from daemon.mapillary.http import (
    TRANSPORT_ERRORS,
    Service,
    connection_failure,
    read_capped,
    reply_failure,
)

MANIFEST_FILE_TYPE = "mly_bundle_manifest"
LIMIT = 2000  # the largest bbox answer; bbox answers are not paginated
ANSWER_LIMIT = 32 * 2**20  # 2,000 images are about 1 MB of JSON
IMAGE_FIELDS = "id,geometry,captured_at,compass_angle,sequence"


class GraphAPI(Service):
    """The graph API at ``endpoint``, with the user's token."""

    async def me(self) -> dict[str, Any]:
        """``GET {graph}/me``: the account behind the token (``id``, ``username``)."""
        body = await self.request(
            "GET", "/me", params={"fields": "id,username"}, timeout=self.timeouts.for_bytes(0)
        )
        if not isinstance(body, dict) or "id" not in body:
            raise RejectedError("graph API /me answered without an account id", 200)
        return body

    async def finish_upload(
        self,
        file_handle: str,
        file_type: str = MANIFEST_FILE_TYPE,
        organization_id: str | None = None,
    ) -> str:
        """``POST {graph}/finish_upload``; the cluster id of the new (or same) sequence."""
        payload: dict[str, Any] = {"file_handle": file_handle, "file_type": file_type}
        if organization_id:
            payload["organization_id"] = organization_id
        body = await self.request(
            "POST", "/finish_upload", json=payload, timeout=self.timeouts.for_bytes(0)
        )
        cluster = body.get("cluster_id") if isinstance(body, dict) else None
        if cluster is None or cluster == "":
            raise RejectedError(f"finish_upload answered without a cluster id: {body!r:.200}", 200)
        return str(cluster)

    async def cluster_sequence(self, cluster_id: str) -> str | None:
        """``GET {graph}/{cluster_id}?fields=id,sequence``: the sequence a finished upload
        became, or None while the service is still processing it."""
        body = await self.request(
            "GET",
            f"/{cluster_id}",
            params={"fields": "id,sequence"},
            timeout=self.timeouts.for_bytes(0),
        )
        sequence = body.get("sequence") if isinstance(body, dict) else None
        if isinstance(sequence, dict):  # an entity field may come as {"id": ...}
            sequence = sequence.get("id")
        return str(sequence) if sequence not in (None, "") else None

    async def image_ids(self, sequence_id: str) -> list[str]:
        """``GET {graph}/image_ids?sequence_id=X``: the sequence's image ids, in capture order."""
        body = await self.request(
            "GET",
            "/image_ids",
            params={"sequence_id": sequence_id},
            timeout=self.timeouts.for_bytes(0),
        )
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise RejectedError(f"image_ids of {sequence_id} answered without a 'data' list", 200)
        return [str(d["id"]) for d in data if isinstance(d, dict) and d.get("id")]

    async def images(
        self, bbox: str, fields: str, filters: Mapping[str, str], what: str
    ) -> list[Any]:
        """``GET {graph}/images`` over one box: the ``data`` list, unchecked (at most ``LIMIT``).

        ``fields`` come after ``IMAGE_FIELDS``; ``what`` names the search in error messages.
        The answer is read up to ``ANSWER_LIMIT``; the session's own deadlines apply.
        """
        params = {
            "bbox": bbox,
            "fields": f"{IMAGE_FIELDS},{fields}",
            "limit": str(LIMIT),
            **filters,
        }
        url = f"{self.endpoint}/images"
        try:
            async with self.session.get(url, params=params, headers=self.auth) as reply:
                if reply.status != 200:
                    raise await reply_failure(reply)
                raw = await read_capped(reply, ANSWER_LIMIT)
        except TRANSPORT_ERRORS as exc:
            raise connection_failure(exc) from None
        return _data(raw, what)


def _data(raw: bytes, what: str) -> list[Any]:
    if len(raw) > ANSWER_LIMIT:
        raise RejectedError(
            f"{what}: the answer is larger than {ANSWER_LIMIT} bytes", reason="bad answer"
        )
    try:
        body = json.loads(raw)
    except ValueError:
        raise RejectedError(f"{what}: the answer is not JSON", reason="bad answer") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise RejectedError(f"{what}: the answer has no 'data' list", reason="bad answer")
    return data

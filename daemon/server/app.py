"""The aiohttp application: graph API, upload service, thumbnails, admin counters.

Layout (see ../shared/PROTOCOL.md): ``/graph/me``, ``/graph/finish_upload``, ``/graph/images``,
``/graph/{image_id}``, ``/graph/logging`` (mapillary_tools' event reports, ignored), ``/mapillary_public_uploads/{key}`` (GET offset, POST append),
``/thumbs/{image_id}/{size}.jpg``, and ``/_admin/stats`` / ``/_admin/sequences``, which never
get faults.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from daemon.server import thumbs
from daemon.server.config import ServerConfig
from daemon.server.faults import RESET, Fault, Faults
from daemon.server.limits import BodyPace, BodyTooLarge, BodyTooSlow, object_cap, too_large
from daemon.server.store import ImageInfo, Store, make_handle, parse_handle
from daemon.server.validate import Rejected

GRAPH = "/graph"
UPLOAD = "/mapillary_public_uploads"
ADMIN = "/_admin"
READ_CHUNK = 64 * 1024
SMALL_BODY = 2**20  # graph requests (finish_upload, logging) are read whole: this much at most
MAX_LIMIT = 2000
THUMB_FIELDS = {f"thumb_{size}_url": size for size in (*thumbs.SIZES, thumbs.ORIGINAL)}

CONFIG = web.AppKey("config", ServerConfig)
STORE = web.AppKey("store", Store)
FAULTS = web.AppKey("faults", Faults)
LOCKS = web.AppKey("locks", dict)


# -- replies ------------------------------------------------------------------------------------


def graph_error(
    status: int, message: str, kind: str = "GraphMethodException", code: int = 100
) -> web.Response:
    """An error shaped like the graph API's."""
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status)


def upload_error(
    status: int, message: str, kind: str, retriable: bool, **headers: str
) -> web.Response:
    """An error shaped like the upload service's."""
    body = {"debug_info": {"retriable": retriable, "type": kind, "message": message}}
    return web.json_response(body, status=status, headers=headers or None)


def error_reply(
    request: web.Request, status: int, message: str, kind: str, retriable: bool
) -> web.Response:
    """An error in the shape of the service the request went to."""
    if request.path.startswith(UPLOAD):
        return upload_error(status, message, kind, retriable)
    return graph_error(status, message, kind)


def _token(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("oauth", "bearer") and value.strip():
        return value.strip()
    return request.query.get("access_token") or None


def _authorized(request: web.Request) -> str | None:
    """The caller's token when it is acceptable (any non-empty one unless tokens are set)."""
    token = _token(request)
    allowed = request.app[CONFIG].tokens
    if token and allowed and not any(hmac.compare_digest(token, t) for t in allowed):
        return None
    return token


def _refused(request: web.Request) -> web.Response | None:
    if _authorized(request):
        return None
    message = "Invalid OAuth access token."
    if request.path.startswith(UPLOAD):
        return upload_error(401, message, "NotAuthorizedError", retriable=False)
    return graph_error(401, message, "OAuthException", 190)


# -- faults -------------------------------------------------------------------------------------


def _cut(request: web.Request) -> web.Response:
    """Close the connection without a reply; the returned response is never sent."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=503)


def _fault_reply(request: web.Request, fault: Fault) -> web.Response:
    if fault.status == RESET:
        return _cut(request)
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
    kind = "RequestRateLimitedError" if fault.status == 429 else "InjectedServerError"
    if request.path.startswith(GRAPH):
        body = {"error": {"message": fault.reason, "type": kind, "code": 2, "is_transient": True}}
        return web.json_response(body, status=fault.status, headers=headers or None)
    return upload_error(fault.status, fault.reason, kind, retriable=True, **headers)


@web.middleware
async def faults_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith(ADMIN):
        return await handler(request)
    faults = request.app[FAULTS]
    faults.counters.requests += 1
    if faults.latency:
        await asyncio.sleep(faults.latency)
    fault = faults.before_request()
    if fault is not None:
        return _fault_reply(request, fault)
    return await handler(request)


# -- limits -------------------------------------------------------------------------------------


@web.middleware
async def limits_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Bodies over their cap get a 413, bodies that stall or trickle a 408 and a closed socket."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:  # aiohttp's own cap on bodies read whole
        message = f"the body is larger than the {request.client_max_size} bytes this request takes"
        return error_reply(request, 413, message, "PayloadTooLargeError", retriable=False)
    except BodyTooLarge as exc:
        return error_reply(request, 413, str(exc), "PayloadTooLargeError", retriable=False)
    except BodyTooSlow as exc:
        return await _hang_up(
            request, error_reply(request, 408, str(exc), "RequestTimeoutError", True)
        )


async def _hang_up(request: web.Request, response: web.Response) -> web.Response:
    """Send ``response`` and close the connection: the rest of a slow body is not waited for."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response


@asynccontextmanager
async def _whole_body(request: web.Request) -> AsyncIterator[None]:
    """Around reading a small body whole: it must all arrive within the read timeout."""
    timeout = request.app[CONFIG].read_timeout
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        raise BodyTooSlow(f"the body did not arrive within {timeout:g} s") from None


# -- graph API ----------------------------------------------------------------------------------


async def me(request: web.Request) -> web.Response:
    if (refused := _refused(request)) is not None:
        return refused
    token = _authorized(request) or ""
    # A stable id per token that reveals nothing about it.
    user_id = str(int(hashlib.sha256(token.encode()).hexdigest()[:12], 16))
    return web.json_response({"id": user_id, "username": f"user{user_id[-6:]}"})


async def logging_sink(request: web.Request) -> web.Response:
    """mapillary_tools reports client events here; accepted and ignored."""
    if (refused := _refused(request)) is not None:
        return refused
    async with _whole_body(request):
        await request.read()
    return web.json_response({"success": True})


async def _form(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("body is not a JSON object")
        return body
    return dict(await request.post())


async def finish_upload(request: web.Request) -> web.Response:
    if (refused := _refused(request)) is not None:
        return refused
    try:
        async with _whole_body(request):
            body = await _form(request)
    except ValueError as exc:
        return graph_error(400, f"finish_upload body is not JSON or a form: {exc}")
    handle = body.get("file_handle")
    if not isinstance(handle, str) or not handle:
        return graph_error(400, "finish_upload needs a file_handle")
    store = request.app[STORE]
    done = store.finished_sequence(handle)
    if done is not None:
        return web.json_response({"cluster_id": done.cluster_id})
    # Clients older than the file_type field sent zips only.
    file_type = body.get("file_type") or (
        "zip" if handle_key(handle).endswith(".zip") else "mly_bundle_manifest"
    )
    organization = body.get("organization_id")
    try:
        prepared = await asyncio.to_thread(store.prepare_finish, handle, str(file_type))
    except Rejected as exc:
        return graph_error(400, str(exc), "MLYUploadError")
    organization = str(organization) if organization not in (None, "") else None
    sequence = store.commit_finish(handle, str(file_type), organization, prepared)
    return web.json_response({"cluster_id": sequence.cluster_id})


def handle_key(handle: str) -> str:
    try:
        return parse_handle(handle)[0]
    except Rejected:
        return ""


def _bbox(text: str | None) -> tuple[float, float, float, float]:
    if not text:
        raise ValueError("bbox is required (minLon,minLat,maxLon,maxLat)")
    try:
        west, south, east, north = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"bbox {text!r} is not four numbers minLon,minLat,maxLon,maxLat") from None
    if west > east or south > north:
        raise ValueError(f"bbox {text!r} has min above max")
    return west, south, east, north


def _time_ms(text: str | None) -> int | None:
    """A time filter: milliseconds since the epoch, or an ISO 8601 time (zone Z when none)."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _limit(text: str | None) -> int:
    if not text:
        return MAX_LIMIT
    value = int(text)
    if value < 1:
        raise ValueError(f"limit {value} must be at least 1")
    return min(value, MAX_LIMIT)


def render_image(image: ImageInfo, fields: list[str], origin: str) -> dict[str, Any]:
    """The graph API's view of an image: ``id`` plus the asked fields this server knows."""
    out: dict[str, Any] = {"id": image.id}
    for name in fields:
        if name in ("geometry", "computed_geometry"):
            out[name] = {"type": "Point", "coordinates": [image.lon, image.lat]}
        elif name == "captured_at":
            out[name] = image.captured_at
        elif name in ("compass_angle", "computed_compass_angle"):
            if image.compass_angle is not None:
                out[name] = image.compass_angle
        elif name in ("altitude", "computed_altitude"):
            if image.altitude is not None:
                out[name] = image.altitude
        elif name == "sequence":
            out[name] = image.sequence
        elif name in THUMB_FIELDS:
            out[name] = f"{origin}/thumbs/{image.id}/{THUMB_FIELDS[name]}.jpg"
    return out


def _fields(request: web.Request) -> list[str]:
    return [f.strip() for f in request.query.get("fields", "id").split(",") if f.strip()]


async def images(request: web.Request) -> web.Response:
    if (refused := _refused(request)) is not None:
        return refused
    query = request.query
    try:
        bbox = _bbox(query.get("bbox"))
        limit = _limit(query.get("limit"))
        start = _time_ms(query.get("start_captured_at"))
        end = _time_ms(query.get("end_captured_at"))
    except ValueError as exc:
        return graph_error(400, f"Invalid parameter: {exc}")
    found = request.app[STORE].search(bbox, limit, start, end, query.get("sequence_id"))
    origin = str(request.url.origin())
    fields = _fields(request)
    return web.json_response({"data": [render_image(i, fields, origin) for i in found]})


async def entity(request: web.Request) -> web.Response:
    """``GET {graph}/{id}``: an image, or a cluster that finish_upload answered with (its
    ``sequence`` once processed, absent until then)."""
    if (refused := _refused(request)) is not None:
        return refused
    store = request.app[STORE]
    entity_id = request.match_info["image_id"]
    found = store.images.get(entity_id)
    if found is not None:
        return web.json_response(render_image(found, _fields(request), str(request.url.origin())))
    made = store.cluster(entity_id)
    if made is None:
        return graph_error(404, f"object {entity_id} does not exist")
    sequence, processed = made
    cluster: dict[str, Any] = {"id": entity_id}
    if processed:
        cluster["sequence"] = sequence.id
    return web.json_response(cluster)


async def image_ids(request: web.Request) -> web.Response:
    """``GET {graph}/image_ids?sequence_id=X``: the ids of a sequence's images, in order."""
    if (refused := _refused(request)) is not None:
        return refused
    sequence_id = request.query.get("sequence_id")
    if not sequence_id:
        return graph_error(400, "Invalid parameter: sequence_id is required")
    ids = request.app[STORE].sequence_images(sequence_id)
    if ids is None:
        return graph_error(404, f"sequence {sequence_id} does not exist")
    return web.json_response({"data": [{"id": i} for i in ids]})


async def thumbnail(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    found = store.images.get(request.match_info["image_id"])
    size = request.match_info["size"]
    if found is None or (size not in thumbs.SIZES and size != thumbs.ORIGINAL):
        raise web.HTTPNotFound()
    path = store.image_path(found)
    if size != thumbs.ORIGINAL:
        dest = store.root / "thumbs" / f"{found.id}_{size}.jpg"
        try:
            path = await asyncio.to_thread(thumbs.make_thumbnail, path, dest, thumbs.SIZES[size])
        except (OSError, ValueError) as exc:  # the stored image is gone or unreadable
            raise web.HTTPNotFound(text=f"image {found.id} cannot be read: {exc}") from None
    try:
        total = path.stat().st_size
    except OSError:
        raise web.HTTPNotFound(text=f"image {found.id} is gone") from None
    start = _range_start(request, total)
    cut_at = request.app[FAULTS].drop_point(total - start)
    if cut_at is not None:
        return await _cut_download(request, path, start, total, cut_at)
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})


def _range_start(request: web.Request, total: int) -> int:
    """The start of a ``Range: bytes=N-`` request within the file, else 0."""
    try:
        start = request.http_range.start
    except ValueError:
        return 0
    return start if start is not None and 0 <= start < total else 0


async def _cut_download(
    request: web.Request, path: Path, start: int, total: int, cut_at: int
) -> web.StreamResponse:
    """A drop fault on a download: promise the rest of the file from ``start``, send
    ``cut_at`` bytes of it, hang up."""
    request.app[FAULTS].dropped()
    response = web.StreamResponse(status=206 if start else 200)
    response.content_type = "image/jpeg"
    if start:
        response.headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
    response.content_length = total - start
    await response.prepare(request)
    with open(path, "rb") as fh:
        fh.seek(start)
        await response.write(fh.read(cut_at))
    if request.transport is not None:
        request.transport.abort()
    return response


# -- upload service -----------------------------------------------------------------------------


def _key(request: web.Request) -> str:
    key = request.match_info["key"]
    request.app[STORE].object_path(key)  # raises Rejected for a key that is no plain name
    return key


async def probe(request: web.Request) -> web.Response:
    if (refused := _refused(request)) is not None:
        return refused
    try:
        key = _key(request)
    except Rejected as exc:
        return upload_error(400, str(exc), "InvalidRequestError", retriable=False)
    return web.json_response({"offset": request.app[STORE].held(key)})


def _int_header(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return default
    value = int(raw)
    if value < 0:
        raise ValueError(f"{name} {value} is negative")
    return value


async def upload(request: web.Request) -> web.StreamResponse:
    if (refused := _refused(request)) is not None:
        return refused
    try:
        key = _key(request)
        offset = _int_header(request, "Offset", 0)
        entity_length = _int_header(request, "X-Entity-Length", None)
    except (Rejected, ValueError) as exc:
        return upload_error(400, str(exc), "InvalidRequestError", retriable=False)
    config = request.app[CONFIG]
    cap = object_cap(config, key)[0]
    promised = max(entity_length or 0, (offset or 0) + (request.content_length or 0))
    if promised > cap:  # refused before a byte of the body is read
        raise too_large(key, promised, config)
    async with _key_lock(request.app, key):
        store = request.app[STORE]
        held = store.held(key)
        if offset != held:
            message = f"Request starting offset {offset} is invalid: the service holds {held}"
            return upload_error(412, message, "OffsetInvalidError", retriable=True)
        try:
            size, cut = await _receive(request, key, held, cap)
        except BodyTooLarge:
            store.discard(key)  # it can never be complete within the cap
            raise
        if cut:
            return _cut(request)
        if entity_length is not None and size > entity_length:
            store.discard(key)
            message = f"{key}: received {size} bytes, more than X-Entity-Length {entity_length}"
            return upload_error(400, message, "InvalidRequestError", retriable=False)
        if entity_length is not None and size < entity_length:
            return web.json_response({"offset": size})
        try:
            info = await asyncio.to_thread(store.complete, key)
        except Rejected as exc:
            return upload_error(400, str(exc), "InvalidFileError", retriable=False)
    return web.json_response({"h": make_handle(key, info.size)})


@asynccontextmanager
async def _key_lock(app: web.Application, key: str) -> AsyncIterator[None]:
    """One writer per key at a time; the lock is forgotten when nobody holds or waits for it."""
    locks = app[LOCKS]
    entry = locks.setdefault(key, [asyncio.Lock(), 0])
    entry[1] += 1
    try:
        async with entry[0]:
            yield
    finally:
        entry[1] -= 1
        if entry[1] == 0:
            del locks[key]


async def _receive(request: web.Request, key: str, offset: int, cap: int) -> tuple[int, bool]:
    """Append the body to the object as it arrives; (bytes held after, connection was cut).

    Bytes are written as they come, so whatever arrived before a drop (ours or the
    client's) or a stall is kept and the next POST resumes after it. BodyTooLarge before the
    object would grow past ``cap``, BodyTooSlow when the body comes too slowly.
    """
    store, faults, config = request.app[STORE], request.app[FAULTS], request.app[CONFIG]
    cut_at = faults.drop_point(request.content_length)
    pace = BodyPace(config.read_timeout, config.min_body_rate)
    appender = store.appender(key, offset)
    received = 0
    try:
        while True:
            want = READ_CHUNK if cut_at is None else min(READ_CHUNK, cut_at - received)
            chunk = await pace.read(request.content, want)
            if not chunk:
                break
            if appender.size + len(chunk) > cap:
                raise too_large(key, appender.size + len(chunk), config)
            appender.write(chunk)
            received += len(chunk)
            store.counters.bytes_received += len(chunk)
            if cut_at is not None and received >= cut_at:
                faults.dropped()
                return appender.size, True
            if faults.pacer is not None:
                await faults.pacer.pace(len(chunk))
    except (ConnectionError, asyncio.IncompleteReadError, OSError):
        return appender.size, True
    finally:
        appender.close()
    if cut_at is not None and received >= 2:
        # A body of unknown length ended before the planned cut: act as if the connection had
        # died within it, so small chunked uploads see drops too.
        appender.truncate(offset + faults.rng.randint(1, received - 1))
        faults.dropped()
        return appender.size, True
    return appender.size, False


# -- admin --------------------------------------------------------------------------------------


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STORE].stats())


async def sequences(request: web.Request) -> web.Response:
    return web.json_response({"sequences": request.app[STORE].listing()})


# -- the application ----------------------------------------------------------------------------


def create_app(config: ServerConfig, store: Store | None = None) -> web.Application:
    """The server's application. Without ``config.data_dir`` (and no ``store``) the data lives
    in a temporary folder removed when the application is cleaned up."""
    app = web.Application(
        middlewares=[faults_middleware, limits_middleware], client_max_size=SMALL_BODY
    )
    if store is None:
        if config.data_dir is None:
            temp = Path(tempfile.mkdtemp(prefix="mapillary-server-"))

            async def remove_temp(_: web.Application) -> None:
                shutil.rmtree(temp, ignore_errors=True)

            app.on_cleanup.append(remove_temp)
            store = Store(temp, config=config)
        else:
            store = Store(Path(config.data_dir), config=config)
    app[CONFIG] = config
    app[STORE] = store
    app[FAULTS] = Faults(config, store.counters)
    app[LOCKS] = {}
    app.add_routes(
        [
            web.get(f"{GRAPH}/me", me),
            web.post(f"{GRAPH}/finish_upload", finish_upload),
            web.get(f"{GRAPH}/images", images),
            web.post(f"{GRAPH}/logging", logging_sink),
            web.get(f"{GRAPH}/image_ids", image_ids),
            web.get(GRAPH + r"/{image_id:\d+}", entity),
            web.get(f"{UPLOAD}/{{key}}", probe),
            web.post(f"{UPLOAD}/{{key}}", upload),
            web.get(r"/thumbs/{image_id:\d+}/{size}.jpg", thumbnail),
            web.get(f"{ADMIN}/stats", stats),
            web.get(f"{ADMIN}/sequences", sequences),
        ]
    )
    return app

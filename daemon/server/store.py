"""The server's state on disk: uploaded objects, finished sequences, their images, counters.

Layout under the data folder:
  objects/<key>          the bytes received for each session key, appended as they arrive
  extracted/<md5>.jpg    images taken out of finished zip uploads
  thumbs/<id>_<size>.jpg thumbnails made on first request
  sequences.jsonl        one line per finished sequence (with its images), appended on finish

Everything else is in memory and rebuilt from ``sequences.jsonl`` on start, so a restart on the
same folder keeps every sequence. Methods documented as blocking do file I/O and are meant for a
worker thread; the others only touch memory (plus one short append) and run on the loop thread,
which is what makes ``commit_finish`` atomic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from daemon.core.durable import put_in_place
from daemon.server import validate
from daemon.server.config import ServerConfig
from daemon.server.limits import ZipBudget
from daemon.server.validate import Rejected

IMAGE_ID_BASE = 1_000_000_000_000  # ids look like the service's: digits only
CLUSTER_ID_BASE = 5_000_000_000_000
LOG_NAME = "sequences.jsonl"
FILE_TYPES = ("mly_bundle_manifest", "zip")
_HASH_BLOCK = 1 << 20


class UnknownHandle(Rejected):
    """A file handle that names no complete object on this server."""


@dataclass(frozen=True)
class ObjectInfo:
    """A complete uploaded object; ``description`` is set for tagged JPEGs."""

    key: str
    size: int
    md5: str
    description: dict[str, Any] | None = None


@dataclass(frozen=True)
class ImageInfo:
    """One image of a finished sequence, as searches and the admin listing show it."""

    id: str
    sequence: str
    lat: float
    lon: float
    captured_at: int
    compass_angle: float | None
    altitude: float | None
    filename: str
    md5: str
    path: str  # relative to the data folder


@dataclass(frozen=True)
class SequenceInfo:
    id: str
    cluster_id: str
    file_handle: str
    file_type: str
    organization_id: str | None
    image_ids: tuple[str, ...]


@dataclass
class Counters:
    bytes_received: int = 0
    requests: int = 0
    faults_injected: int = 0
    duplicate_images: int = 0
    duplicate_sequences: int = 0


@dataclass(frozen=True)
class _Prepared:
    """An image resolved for a finish, before ids are given out."""

    md5: str
    path: str
    description: dict[str, Any]


def make_handle(key: str, size: int) -> str:
    """An opaque file handle naming ``size`` bytes of ``key``.

    >>> parse_handle(make_handle("uuid_ab.json", 77))
    ('uuid_ab.json', 77)
    """
    raw = f"{key}\n{size}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_handle(handle: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(handle + "=" * (-len(handle) % 4)).decode()
        key, size = raw.split("\n")
        return validate.check_key(key), int(size)
    except (ValueError, binascii.Error, Rejected):
        raise UnknownHandle(f"file handle {handle[:80]!r} is not one of this server's") from None


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class Appender:
    """Appends one request body to an object, hashing as it goes when the hash can continue."""

    def __init__(self, store: Store, key: str, offset: int) -> None:
        self._store = store
        self.key = key
        self.size = offset
        self._hash = store._running_hash(key, offset)
        self._fh = open(store.object_path(key), "ab")  # noqa: SIM115 - closed in close()

    def write(self, chunk: bytes) -> None:
        self._fh.write(chunk)
        if self._hash is not None:
            self._hash.update(chunk)
        self.size += len(chunk)

    def truncate(self, size: int) -> None:
        """Forget everything past ``size`` (a simulated loss); the running hash is dropped."""
        with open(self._store.object_path(self.key), "r+b") as fh:
            fh.truncate(size)
        self.size = size
        self._hash = None
        self._store._running.pop(self.key, None)

    def close(self) -> None:
        self._fh.close()
        if self._hash is not None:
            self._store._running[self.key] = (self.size, self._hash)


@dataclass
class Store:
    root: Path
    counters: Counters = field(default_factory=Counters)
    config: ServerConfig = field(default_factory=ServerConfig, repr=False)  # its size limits

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for name in ("objects", "extracted", "thumbs"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.sequences: dict[str, SequenceInfo] = {}
        self.images: dict[str, ImageInfo] = {}
        self._by_handle: dict[str, str] = {}  # finished file handle -> sequence id
        self._by_cluster: dict[str, str] = {}  # cluster id -> sequence id
        self._finished_at: dict[str, float] = {}  # sequence id -> when (this run's finishes)
        self._md5_sequences: dict[str, set[str]] = {}
        self._signatures: set[tuple[str, ...]] = set()
        self._validated: dict[str, ObjectInfo] = {}
        self._running: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()
        self._next_image = IMAGE_ID_BASE + 1
        self._next_cluster = CLUSTER_ID_BASE + 1
        self._load()

    # -- objects -----------------------------------------------------------------------------

    def object_path(self, key: str) -> Path:
        return self.root / "objects" / validate.check_key(key)

    def held(self, key: str) -> int:
        """How many bytes the server holds for ``key`` (0 when none)."""
        try:
            return self.object_path(key).stat().st_size
        except FileNotFoundError:
            return 0

    def appender(self, key: str, offset: int) -> Appender:
        return Appender(self, key, offset)

    def _running_hash(self, key: str, offset: int) -> Any:
        if offset == 0:
            return hashlib.md5()
        size, digest = self._running.get(key, (-1, None))
        return digest.copy() if size == offset else None

    def discard(self, key: str) -> None:
        self._running.pop(key, None)
        self._validated.pop(key, None)
        self.object_path(key).unlink(missing_ok=True)

    def complete(self, key: str) -> ObjectInfo:
        """Check a complete object (MD5 promised by its key, JPEG description); blocking.

        A refused object is removed, so the key starts again from offset 0.
        """
        size = self.held(key)
        cached = self._validated.get(key)
        if cached is not None and cached.size == size:
            return cached
        try:
            info = self._check(key, size)
        except Rejected:
            self.discard(key)
            raise
        self._validated[key] = info
        return info

    def _check(self, key: str, size: int) -> ObjectInfo:
        path = self.object_path(key)
        running = self._running.pop(key, None)
        md5 = running[1].hexdigest() if running and running[0] == size else _md5_file(path)
        promised = validate.md5_of_key(key)
        if promised is not None and promised != md5:
            raise Rejected(f"{key}: content MD5 is {md5}, not the {promised} its key promises")
        description = validate.image_description(path) if validate.is_jpeg_key(key) else None
        return ObjectInfo(key, size, md5, description)

    def resolve(self, handle: str) -> ObjectInfo:
        """The complete object a handle names; blocking (it may validate after a restart)."""
        key, size = parse_handle(handle)
        if self.held(key) != size:
            raise UnknownHandle(
                f"file handle for {key} names {size} bytes; the server holds "
                f"{self.held(key)} (upload incomplete or gone)"
            )
        return self.complete(key)

    # -- finishing ---------------------------------------------------------------------------

    def finished_sequence(self, handle: str) -> SequenceInfo | None:
        sequence_id = self._by_handle.get(handle)
        return self.sequences[sequence_id] if sequence_id else None

    def prepare_finish(self, handle: str, file_type: str) -> list[_Prepared]:
        """Resolve a manifest or zip handle into its images, in sequence order; blocking."""
        if file_type not in FILE_TYPES:
            raise Rejected(f"file_type {file_type!r} is not one of {', '.join(FILE_TYPES)}")
        bundle = self.resolve(handle)
        if file_type == "zip":
            return self._zip_images(bundle)
        limit = min(validate.MANIFEST_LIMIT, self.config.max_manifest_bytes)
        if bundle.size > limit:
            raise Rejected(f"manifest {bundle.key} is larger than {limit} bytes")
        handles = validate.manifest_handles(self.object_path(bundle.key).read_bytes())
        prepared = []
        for image_handle in handles:
            info = self.resolve(image_handle)
            if info.description is None:
                raise Rejected(f"manifest entry {info.key} is not a JPEG image")
            prepared.append(_Prepared(info.md5, f"objects/{info.key}", info.description))
        return prepared

    def _zip_images(self, bundle: ObjectInfo) -> list[_Prepared]:
        path = self.object_path(bundle.key)
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise Rejected(f"{bundle.key} is not a zip archive: {exc}") from None
        budget = ZipBudget(self.config, bundle.key)
        with archive:
            entries = [
                entry
                for entry in archive.infolist()
                if not entry.is_dir() and validate.is_jpeg_key(entry.filename)
            ]
            budget.check_directory(entries)  # before a byte is written
            prepared = [self._extract(archive, entry, budget) for entry in entries]
        if not prepared:
            raise Rejected(f"{bundle.key} holds no JPEG images")
        prepared.sort(key=lambda p: (p.description["MAPCaptureTime"], p.md5))
        return prepared

    def _extract(
        self, archive: zipfile.ZipFile, entry: zipfile.ZipInfo, budget: ZipBudget
    ) -> _Prepared:
        tmp = self.root / "extracted" / f".part-{threading.get_ident()}-{os.getpid()}"
        digest = hashlib.md5()
        try:
            with archive.open(entry) as src, open(tmp, "wb") as dst:
                while block := src.read(_HASH_BLOCK):
                    budget.take(entry, dst.tell(), len(block))
                    digest.update(block)
                    dst.write(block)
            try:
                description = validate.image_description(tmp)
            except Rejected as exc:
                raise Rejected(f"zip entry {entry.filename}: {exc}") from None
            relative = f"extracted/{digest.hexdigest()}.jpg"
            put_in_place(tmp, self.root / relative)
        except (zipfile.BadZipFile, OSError) as exc:
            raise Rejected(f"zip entry {entry.filename} cannot be read: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return _Prepared(digest.hexdigest(), relative, description)

    def commit_finish(
        self,
        handle: str,
        file_type: str,
        organization_id: str | None,
        prepared: list[_Prepared],
    ) -> SequenceInfo:
        """Record a finished sequence (or return the one this handle already made)."""
        existing = self.finished_sequence(handle)
        if existing is not None:
            return existing
        cluster_id = str(self._next_cluster)
        sequence_id = hashlib.sha1(cluster_id.encode()).hexdigest()[:22]
        images = [self._image(p, sequence_id) for p in prepared]
        sequence = SequenceInfo(
            sequence_id,
            cluster_id,
            handle,
            file_type,
            organization_id,
            tuple(image.id for image in images),
        )
        line = {"sequence": asdict(sequence), "images": [asdict(i) for i in images]}
        with self._lock, open(self.root / LOG_NAME, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._remember(sequence, images)
        self._finished_at[sequence.id] = time.monotonic()
        return sequence

    def seed_sequence(self, images: list[tuple[bytes, dict[str, Any]]]) -> SequenceInfo:
        """Record a finished sequence straight from JPEG bytes and their descriptions.

        For tests and benchmarks that need thousands of images in the store at once: the bytes
        are stored as if uploaded and the descriptions are trusted as given (not read from the
        bytes). Like ``commit_finish`` it touches memory: call it from the loop thread or while
        no request is being served.
        """
        prepared = []
        for data, description in images:
            md5 = hashlib.md5(data).hexdigest()
            key = f"mly_tools_{md5}.jpg"
            if self.held(key) != len(data):
                self.object_path(key).write_bytes(data)
            prepared.append(_Prepared(md5, f"objects/{key}", description))
        handle = make_handle(f"uuid_seed{os.urandom(8).hex()}.json", 0)
        return self.commit_finish(handle, FILE_TYPES[0], None, prepared)

    def _image(self, prepared: _Prepared, sequence_id: str) -> ImageInfo:
        desc = prepared.description
        image_id = str(self._next_image)
        self._next_image += 1
        altitude = desc.get("MAPAltitude")
        return ImageInfo(
            id=image_id,
            sequence=sequence_id,
            lat=float(desc["MAPLatitude"]),
            lon=float(desc["MAPLongitude"]),
            captured_at=validate.captured_at_ms(desc),
            compass_angle=validate.compass_angle(desc),
            altitude=float(altitude) if altitude is not None else None,
            filename=str(desc.get("MAPFilename") or Path(prepared.path).name),
            md5=prepared.md5,
            path=prepared.path,
        )

    def _remember(self, sequence: SequenceInfo, images: list[ImageInfo]) -> None:
        """Index a sequence in memory and count what it duplicates (on finish and on load)."""
        self.sequences[sequence.id] = sequence
        self._by_handle[sequence.file_handle] = sequence.id
        self._by_cluster[sequence.cluster_id] = sequence.id
        for image in images:
            self.images[image.id] = image
            self._next_image = max(self._next_image, int(image.id) + 1)
        for md5 in {image.md5 for image in images}:
            seen_in = self._md5_sequences.setdefault(md5, set())
            if seen_in - {sequence.id}:
                self.counters.duplicate_images += 1
            seen_in.add(sequence.id)
        signature = tuple(image.md5 for image in images)
        if signature in self._signatures:
            self.counters.duplicate_sequences += 1
        self._signatures.add(signature)
        self._next_cluster = max(self._next_cluster, int(sequence.cluster_id) + 1)

    def _load(self) -> None:
        path = self.root / LOG_NAME
        if not path.exists():
            return
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            # A line torn by a crash mid-append: that finish never answered, drop it.
            with open(path, "r+b") as fh:
                fh.truncate(len(complete))
        for number, raw in enumerate(complete.splitlines(), 1):
            try:
                line = json.loads(raw)
                sequence = SequenceInfo(
                    **{**line["sequence"], "image_ids": tuple(line["sequence"]["image_ids"])}
                )
                images = [ImageInfo(**image) for image in line["images"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{path}: line {number} is not a finished sequence: {exc}"
                ) from None
            self._remember(sequence, images)

    # -- reading -----------------------------------------------------------------------------

    def search(
        self,
        bbox: tuple[float, float, float, float],
        limit: int,
        start_ms: int | None = None,
        end_ms: int | None = None,
        sequence_id: str | None = None,
    ) -> list[ImageInfo]:
        """Images inside ``bbox`` (min lon, min lat, max lon, max lat), oldest id first."""
        min_lon, min_lat, max_lon, max_lat = bbox
        found = []
        for image in self.images.values():
            if not (min_lon <= image.lon <= max_lon and min_lat <= image.lat <= max_lat):
                continue
            if start_ms is not None and image.captured_at < start_ms:
                continue
            if end_ms is not None and image.captured_at > end_ms:
                continue
            if sequence_id is not None and image.sequence != sequence_id:
                continue
            found.append(image)
            if len(found) >= limit:
                break
        return found

    def cluster(self, cluster_id: str) -> tuple[SequenceInfo, bool] | None:
        """The sequence a cluster became and whether it is processed yet (None: this server
        never made that cluster)."""
        sequence_id = self._by_cluster.get(cluster_id)
        if sequence_id is None:
            return None
        since = self._finished_at.get(sequence_id)  # None: finished before this run
        busy = since is not None and time.monotonic() - since < self.config.processing_seconds
        return self.sequences[sequence_id], not busy

    def sequence_images(self, sequence_id: str) -> list[str] | None:
        """The image ids of a processed sequence in capture order; None if there is none."""
        sequence = self.sequences.get(sequence_id)
        found = self.cluster(sequence.cluster_id) if sequence is not None else None
        if sequence is None or found is None or not found[1]:
            return None
        return list(sequence.image_ids)

    def image_path(self, image: ImageInfo) -> Path:
        return self.root / image.path

    def stats(self) -> dict[str, int]:
        c = self.counters
        return {
            "sequences": len(self.sequences),
            "images": len(self.images),
            "duplicate_images": c.duplicate_images,
            "duplicate_sequences": c.duplicate_sequences,
            "bytes_received": c.bytes_received,
            "requests": c.requests,
            "faults_injected": c.faults_injected,
        }

    def listing(self) -> list[dict[str, Any]]:
        """Every finished sequence with its images, in finish order (for tests and demos)."""
        out = []
        for sequence in self.sequences.values():
            entry = asdict(sequence)
            entry["images"] = [
                {k: v for k, v in asdict(self.images[i]).items() if k != "path"}
                for i in sequence.image_ids
            ]
            out.append(entry)
        return out

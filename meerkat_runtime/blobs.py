"""Blob stores: where inline images go before an input record is written (T-20).

Theory of operation: a blob's id is the SHA-256 of its bytes
(``sha256:<hex>``), so storing the same image twice is one blob and an id can
be checked against its content. ``FileBlobStore`` writes a temp file, flushes
and fsyncs it, then renames it into place, so a crash never leaves a torn blob
under a valid id; ids are validated before they touch a path, so no id can
name a file outside the root.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from meerkat_runtime.codec import Value
from meerkat_runtime.errors import MeerkatError, rebuilt
from meerkat_runtime.ids import BlobId

_ID = re.compile(r"sha256:[0-9a-f]{64}")


class BlobStoreError(MeerkatError):
    NotFound: ClassVar[type[BlobNotFoundError]]
    Invalid: ClassVar[type[BlobInvalidError]]
    Internal: ClassVar[type[BlobInternalError]]


class BlobNotFoundError(BlobStoreError):
    def __init__(self, blob_id: BlobId) -> None:
        self.blob_id = blob_id
        super().__init__(f"blob not found: {blob_id}")

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.blob_id)


class BlobInvalidError(BlobStoreError):
    """A malformed id or payload (never touches the file system)."""


class BlobInternalError(BlobStoreError):
    """The medium failed (I/O error, corrupt blob)."""


BlobStoreError.NotFound = BlobNotFoundError
BlobStoreError.Invalid = BlobInvalidError
BlobStoreError.Internal = BlobInternalError


class BlobRef(Value, frozen=True, kw_only=True):
    blob_id: BlobId
    media_type: str


class BlobPayload(Value, frozen=True, kw_only=True):
    blob_id: BlobId
    media_type: str
    data: str  # base64, as the inline image carried it


def blob_id_for(raw: bytes) -> BlobId:
    return BlobId("sha256:" + hashlib.sha256(raw).hexdigest())


def check_id(blob_id: BlobId) -> str:
    text = str(blob_id)
    if not _ID.fullmatch(text):
        raise BlobInvalidError(
            f"invalid blob id {text!r}: expected sha256:<64 hex digits>"
        )
    return text[len("sha256:") :]


def content_key(media_type: str, data: str) -> bytes:
    """What an id addresses: the media type and the payload text exactly as
    given (so two different payloads can never share an id, whatever their
    base64 decodes to). Refuses anything but text, for every blob store."""
    if not isinstance(media_type, str) or not isinstance(data, str):
        raise BlobInvalidError(
            "media_type and data must be text, not "
            f"{type(media_type).__name__} and {type(data).__name__}"
        )
    try:
        return media_type.encode("utf-8") + b"\0" + data.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: not storable text
        raise BlobInvalidError(
            f"media_type and data must be UTF-8 text: {exc}"
        ) from None


class BlobStore(ABC):
    @abstractmethod
    async def put_image(self, media_type: str, data: str) -> BlobRef: ...

    @abstractmethod
    async def get(self, blob_id: BlobId) -> BlobPayload: ...

    @abstractmethod
    async def delete(self, blob_id: BlobId) -> None: ...

    @abstractmethod
    async def exists(self, blob_id: BlobId) -> bool: ...

    @abstractmethod
    def is_persistent(self) -> bool: ...


class MemoryBlobStore(BlobStore):
    def __init__(self) -> None:
        self._blobs: dict[str, tuple[str, str]] = {}

    async def put_image(self, media_type: str, data: str) -> BlobRef:
        blob_id = blob_id_for(content_key(media_type, data))
        self._blobs[str(blob_id)] = (media_type, data)
        return BlobRef(blob_id=blob_id, media_type=media_type)

    async def get(self, blob_id: BlobId) -> BlobPayload:
        check_id(blob_id)
        found = self._blobs.get(str(blob_id))
        if found is None:
            raise BlobNotFoundError(blob_id)
        return BlobPayload(blob_id=blob_id, media_type=found[0], data=found[1])

    async def delete(self, blob_id: BlobId) -> None:
        check_id(blob_id)
        self._blobs.pop(str(blob_id), None)

    async def exists(self, blob_id: BlobId) -> bool:
        check_id(blob_id)
        return str(blob_id) in self._blobs

    def is_persistent(self) -> bool:
        return False


class FileBlobStore(BlobStore):
    """Blobs as files under ``root/<first two hex digits>/<hex>.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, blob_id: BlobId) -> Path:
        digest = check_id(blob_id)
        return self.root / digest[:2] / f"{digest}.json"

    async def put_image(self, media_type: str, data: str) -> BlobRef:
        blob_id = blob_id_for(content_key(media_type, data))
        body = json.dumps({"media_type": media_type, "data": data}).encode("utf-8")
        await asyncio.to_thread(self._write_atomically, self._path(blob_id), body)
        return BlobRef(blob_id=blob_id, media_type=media_type)

    @staticmethod
    def _write_atomically(path: Path, body: bytes) -> None:
        if path.exists():  # content-addressed: already stored means identical
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(body)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # make the rename itself durable
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise BlobInternalError(f"cannot write blob {path.name}: {exc}") from None

    async def get(self, blob_id: BlobId) -> BlobPayload:
        path = self._path(blob_id)
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise BlobNotFoundError(blob_id) from None
        except OSError as exc:
            raise BlobInternalError(f"cannot read blob {blob_id}: {exc}") from None
        try:
            body = json.loads(raw)
            media_type, data = body["media_type"], body["data"]
            key = content_key(media_type, data)
        except (ValueError, KeyError, TypeError, BlobInvalidError) as exc:
            raise BlobInternalError(f"corrupt blob {blob_id}: {exc}") from None
        if blob_id_for(key) != blob_id:
            raise BlobInternalError(
                f"corrupt blob {blob_id}: content does not match its id"
            )
        return BlobPayload(blob_id=blob_id, media_type=media_type, data=data)

    async def delete(self, blob_id: BlobId) -> None:
        path = self._path(blob_id)
        await asyncio.to_thread(path.unlink, missing_ok=True)

    async def exists(self, blob_id: BlobId) -> bool:
        return await asyncio.to_thread(self._path(blob_id).exists)

    def is_persistent(self) -> bool:
        return True

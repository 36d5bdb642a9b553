"""Blob stores: where inline images go before an input record is written (T-20).

Theory of operation: a blob's id is the SHA-256 of its bytes
(``sha256:<hex>``), so storing the same image twice is one blob and an id can
be checked against its content. ``FileBlobStore`` writes a temp file, flushes
and fsyncs it, then renames it into place (and fsyncs the directory), so a
crash never leaves a torn blob under a valid id; it verifies a blob's digest
on every read and rewrites a damaged one on the next put of its image; ids
are validated before they touch a path, and no symbolic link inside the root
is followed, so nothing is read or written outside the root.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import stat
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
    """Blobs as files under ``root/<first two hex digits>/<hex>.json``.

    Content-addressed, so a file is trusted only once its bytes verify: ``get``
    checks the digest, and ``put_image`` rewrites a file that is not exactly
    what it would write (a damaged blob is repaired by the next put of its
    image instead of being taken as already stored). Every operation works
    from a descriptor of the root and opens the shard directory and the blob
    file without following symbolic links, so a link planted inside the root
    is refused rather than followed out of it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _where(self, blob_id: BlobId) -> tuple[str, str]:
        digest = check_id(blob_id)
        return digest[:2], f"{digest}.json"

    async def put_image(self, media_type: str, data: str) -> BlobRef:
        blob_id = blob_id_for(content_key(media_type, data))
        body = json.dumps({"media_type": media_type, "data": data}).encode("utf-8")
        shard, name = self._where(blob_id)
        try:
            await asyncio.to_thread(self._write, shard, name, body)
        except OSError as exc:
            raise _failure("cannot write", blob_id, exc) from None
        return BlobRef(blob_id=blob_id, media_type=media_type)

    def _write(self, shard: str, name: str, body: bytes) -> None:
        """Temp file, fsync, rename, directory fsync; skipped only when the
        file already holds exactly ``body``."""
        shard_fd = self._open_shard(shard, create=True)
        assert shard_fd is not None
        try:
            if _read_if_regular(name, shard_fd) == body:
                return
            temp = f".tmp-{secrets.token_hex(8)}"
            fd = os.open(temp, _CREATE, 0o644, dir_fd=shard_fd)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(body)
                    handle.flush()
                    os.fsync(handle.fileno())
                # Replaces a damaged file, or a link, by name: never follows it.
                os.replace(temp, name, src_dir_fd=shard_fd, dst_dir_fd=shard_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=shard_fd)
                raise
            os.fsync(shard_fd)  # make the rename itself durable
        finally:
            os.close(shard_fd)

    async def get(self, blob_id: BlobId) -> BlobPayload:
        shard, name = self._where(blob_id)
        try:
            raw = await asyncio.to_thread(self._read, shard, name)
        except OSError as exc:
            raise _failure("cannot read", blob_id, exc) from None
        if raw is None:
            raise BlobNotFoundError(blob_id)
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

    def _read(self, shard: str, name: str) -> bytes | None:
        shard_fd = self._open_shard(shard, create=False)
        if shard_fd is None:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=shard_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _LinkRefusedError(self.root / shard / name) from None
            raise
        finally:
            os.close(shard_fd)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    async def delete(self, blob_id: BlobId) -> None:
        shard, name = self._where(blob_id)
        try:
            await asyncio.to_thread(self._unlink, shard, name)
        except OSError as exc:
            raise _failure("cannot delete", blob_id, exc) from None

    def _unlink(self, shard: str, name: str) -> None:
        shard_fd = self._open_shard(shard, create=False)
        if shard_fd is None:
            return
        try:
            os.unlink(name, dir_fd=shard_fd)  # removes a link itself, if one
        except FileNotFoundError:
            pass
        finally:
            os.close(shard_fd)

    async def exists(self, blob_id: BlobId) -> bool:
        shard, name = self._where(blob_id)
        try:
            return await asyncio.to_thread(self._exists, shard, name)
        except OSError as exc:
            raise _failure("cannot look up", blob_id, exc) from None

    def _exists(self, shard: str, name: str) -> bool:
        shard_fd = self._open_shard(shard, create=False)
        if shard_fd is None:
            return False
        try:
            mode = os.stat(name, dir_fd=shard_fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return False
        finally:
            os.close(shard_fd)
        if stat.S_ISLNK(mode):
            raise _LinkRefusedError(self.root / shard / name)
        return True

    def _open_shard(self, shard: str, *, create: bool) -> int | None:
        """A descriptor of ``root/shard`` (None when it is missing and not
        to be created), opened without following a link."""
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if create:
                try:
                    os.mkdir(shard, 0o755, dir_fd=root_fd)
                    os.fsync(root_fd)  # the new directory's entry is durable
                except FileExistsError:
                    pass
            try:
                return os.open(shard, _DIRECTORY, dir_fd=root_fd)
            except FileNotFoundError:
                if create:
                    raise
                return None
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                # O_DIRECTORY | O_NOFOLLOW on a link fails ENOTDIR on Linux.
                entry = os.stat(shard, dir_fd=root_fd, follow_symlinks=False)
                where = self.root / shard
                if stat.S_ISLNK(entry.st_mode):
                    raise _LinkRefusedError(where) from None
                raise NotADirectoryError(
                    errno.ENOTDIR, f"{where} is not a directory"
                ) from None
        finally:
            os.close(root_fd)

    def is_persistent(self) -> bool:
        return True


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _failure(doing: str, blob_id: BlobId, exc: OSError) -> BlobInternalError:
    """One error naming the blob and what is wrong with the medium."""
    return BlobInternalError(f"{doing} blob {blob_id}: {exc}")


class _LinkRefusedError(OSError):
    """An entry inside the root that is a symbolic link: never followed."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            errno.ELOOP, "a symbolic link, which the blob store never follows"
        )
        self.filename = str(path)

    def __str__(self) -> str:
        return f"{self.filename} is {self.strerror}"


def _read_if_regular(name: str, dir_fd: int) -> bytes | None:
    """The file's bytes; None when it is missing or not a plain file (a link
    is not followed: it is replaced like any damaged file)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno == errno.ELOOP:
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read()

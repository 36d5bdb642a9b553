"""Blob stores (T-20 .. T-22): where inline images live once an input is
stored. Content-addressed ids, exact round trips, strict id validation (no
id may name a file outside the root), atomic writes and corruption reports
for ``FileBlobStore``. Every test runs against both stores unless it is about
files.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from meerkat_runtime import BlobId
from meerkat_runtime.blobs import (
    BlobStore,
    BlobStoreError,
    FileBlobStore,
    MemoryBlobStore,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(200))).decode("ascii")
JPEG = base64.b64encode(b"\xff\xd8\xff" + bytes(range(100))).decode("ascii")

INVALID_IDS = [
    "sha256:../../x",
    "../etc/passwd",
    "/etc/passwd",
    "sha256:/etc/passwd",
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "A" * 64,
    "sha256:" + "g" * 64,
    "a" * 64,
    "md5:" + "a" * 32,
    "",
]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(params=["memory", "file"])
def make_blobs(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], BlobStore]:
    if request.param == "memory":
        return MemoryBlobStore
    return lambda: FileBlobStore(tmp_path / "blobs")


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


# ---------------------------------------------------------------- ids


def test_ids_are_content_addressed(make_blobs: Callable[[], BlobStore]) -> None:
    """T-20: the id is ``sha256:<64 lower-case hex>`` of the content: the same
    image twice is one blob; another image or another media type is another."""

    async def body() -> None:
        blobs = make_blobs()
        first = await blobs.put_image("image/png", PNG)
        again = await blobs.put_image("image/png", PNG)
        other_type = await blobs.put_image("image/webp", PNG)
        other_data = await blobs.put_image("image/png", JPEG)
        assert first == again
        assert first.media_type == "image/png"
        assert len({first.blob_id, other_type.blob_id, other_data.blob_id}) == 3
        text = str(first.blob_id)
        assert text.startswith("sha256:")
        assert len(text) == len("sha256:") + 64
        assert text[7:] == text[7:].lower()
        assert await blobs.exists(first.blob_id)

    run(body)


def test_ids_are_stable_across_store_objects(tmp_path: Path) -> None:
    """Content addressing does not depend on the store object or kind."""

    async def body() -> None:
        memory = await MemoryBlobStore().put_image("image/png", PNG)
        first = await FileBlobStore(tmp_path / "one").put_image("image/png", PNG)
        second = await FileBlobStore(tmp_path / "two").put_image("image/png", PNG)
        assert memory.blob_id == first.blob_id == second.blob_id

    run(body)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "data", [PNG, "", "not base64 at all!", "base64-driver", "ünïcödé ✓"]
)
def test_get_returns_exactly_what_was_put(
    make_blobs: Callable[[], BlobStore], data: str
) -> None:
    """T-22: ``get`` returns the media type and the very text that was put
    (valid base64 or not)."""

    async def body() -> None:
        blobs = make_blobs()
        ref = await blobs.put_image("image/png", data)
        payload = await blobs.get(ref.blob_id)
        assert payload.blob_id == ref.blob_id
        assert payload.media_type == "image/png"
        assert payload.data == data

    run(body)


def test_base64_and_plain_text_payloads_do_not_collide(
    make_blobs: Callable[[], BlobStore],
) -> None:
    """T-22 / the module's promise that any inline payload round-trips
    exactly: two different payload texts never share a blob."""

    async def body() -> None:
        blobs = make_blobs()
        encoded = await blobs.put_image("image/png", "YWJj")  # base64 of b"abc"
        plain = await blobs.put_image("image/png", "abc")
        assert (await blobs.get(encoded.blob_id)).data == "YWJj"
        assert (await blobs.get(plain.blob_id)).data == "abc"

    run(body)


def test_exists_and_delete(make_blobs: Callable[[], BlobStore]) -> None:
    """A deleted blob no longer exists and reads as NotFound; deleting a
    missing blob is not an error; other blobs are untouched."""

    async def body() -> None:
        blobs = make_blobs()
        png = await blobs.put_image("image/png", PNG)
        jpeg = await blobs.put_image("image/jpeg", JPEG)
        await blobs.delete(png.blob_id)
        assert not await blobs.exists(png.blob_id)
        assert await blobs.exists(jpeg.blob_id)
        with pytest.raises(BlobStoreError.NotFound):
            await blobs.get(png.blob_id)
        await blobs.delete(png.blob_id)
        assert (await blobs.get(jpeg.blob_id)).data == JPEG
        again = await blobs.put_image("image/png", PNG)
        assert again.blob_id == png.blob_id
        assert (await blobs.get(png.blob_id)).data == PNG

    run(body)


def test_missing_blob_is_not_found_naming_the_id(
    make_blobs: Callable[[], BlobStore],
) -> None:
    async def body() -> None:
        blobs = make_blobs()
        missing = BlobId("sha256:" + hashlib.sha256(b"never stored").hexdigest())
        assert not await blobs.exists(missing)
        with pytest.raises(BlobStoreError.NotFound) as err:
            await blobs.get(missing)
        assert str(missing) in str(err.value)
        assert isinstance(err.value, BlobStoreError)

    run(body)


def test_is_persistent_flags(tmp_path: Path) -> None:
    assert MemoryBlobStore().is_persistent() is False
    assert FileBlobStore(tmp_path / "blobs").is_persistent() is True


def test_file_blobs_survive_a_new_store_object(tmp_path: Path) -> None:
    """FileBlobStore keeps blobs on disk: a new object on the same root (a
    restarted process) reads them."""

    async def body() -> None:
        ref = await FileBlobStore(tmp_path / "blobs").put_image("image/png", PNG)
        payload = await FileBlobStore(tmp_path / "blobs").get(ref.blob_id)
        assert (payload.media_type, payload.data) == ("image/png", PNG)

    run(body)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", INVALID_IDS)
def test_invalid_ids_are_refused(make_blobs: Callable[[], BlobStore], bad: str) -> None:
    """Ids are validated before use: anything but ``sha256:<64 lower-case
    hex>`` raises Invalid from get, exists and delete."""

    async def body() -> None:
        blobs = make_blobs()
        for call in (blobs.get, blobs.exists, blobs.delete):
            with pytest.raises(BlobStoreError.Invalid):
                await call(BlobId(bad))

    run(body)


@pytest.mark.parametrize(
    ("media_type", "data"),
    [("image/png", b"raw"), (None, PNG), ("image/png", 7), ("image/png", "\ud800")],
)
def test_non_text_payloads_are_invalid_in_every_store(
    make_blobs: Callable[[], BlobStore], media_type: object, data: object
) -> None:
    """T-20: both blob stores refuse a payload that is not text alike, with
    ``Invalid`` naming the types."""

    async def body() -> None:
        blobs = make_blobs()
        with pytest.raises(BlobStoreError.Invalid) as err:
            await blobs.put_image(media_type, data)  # type: ignore[arg-type]
        assert type(data).__name__ in str(err.value) or "UTF-8" in str(err.value)
        ref = await blobs.put_image("image/png", PNG)  # still works, still empty
        assert await blobs.exists(ref.blob_id)

    run(body)


def test_id_with_trailing_newline_is_refused(
    make_blobs: Callable[[], BlobStore],
) -> None:
    """Ids are validated strictly: a trailing newline is not part of a valid id."""

    async def body() -> None:
        blobs = make_blobs()
        with pytest.raises(BlobStoreError.Invalid):
            await blobs.exists(BlobId("sha256:" + "a" * 64 + "\n"))

    run(body)


@pytest.mark.parametrize("bad", INVALID_IDS)
def test_invalid_ids_touch_no_file(tmp_path: Path, bad: str) -> None:
    """No id can name a file outside the root: a sentinel file where a naive
    join of the id would point survives ``delete``, and nothing under the
    root is created or removed."""
    root = tmp_path / "a" / "b" / "blobs"
    blobs = FileBlobStore(root)
    digest = bad.removeprefix("sha256:")
    naive = root / digest[:2] / f"{digest}.json"
    sentinel: Path | None = None
    if bad and tmp_path in naive.resolve().parents:
        sentinel = naive.resolve()
        sentinel.parent.mkdir(parents=True, exist_ok=True)
        sentinel.write_text('{"media_type": "image/png", "data": "x"}')

    async def body() -> None:
        await blobs.put_image("image/png", PNG)
        before = files_under(tmp_path)
        for call in (blobs.get, blobs.exists, blobs.delete):
            with pytest.raises(BlobStoreError.Invalid):
                await call(BlobId(bad))
        assert files_under(tmp_path) == before

    run(body)
    if sentinel is not None:
        assert sentinel.exists()


# ---------------------------------------------------------------- files


def test_file_writes_leave_no_temp_files(tmp_path: Path) -> None:
    """Atomic writes: temp file, fsync, rename; concurrent puts of the same
    and of different images leave exactly one file per blob, nothing else."""
    root = tmp_path / "blobs"

    async def body() -> None:
        blobs = FileBlobStore(root)
        images = [base64.b64encode(bytes([i]) * 50).decode() for i in range(10)]
        refs = await asyncio.gather(
            *(blobs.put_image("image/png", data) for data in images * 3)
        )
        ids = {ref.blob_id for ref in refs}
        assert len(ids) == 10
        files = [p for p in root.rglob("*") if p.is_file()]
        assert len(files) == 10
        assert all(p.suffix == ".json" for p in files)
        assert not list(root.rglob(".tmp-*"))
        for ref, data in zip(refs, images * 3, strict=True):
            assert (await blobs.get(ref.blob_id)).data == data

    run(body)


def test_failed_write_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Atomic writes: when the rename fails the put raises Internal and
    neither the blob nor its temp file exists."""
    root = tmp_path / "blobs"
    blobs = FileBlobStore(root)

    def refuse(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)

    async def body() -> None:
        with pytest.raises(BlobStoreError.Internal, match="No space left"):
            await blobs.put_image("image/png", PNG)

    run(body)
    monkeypatch.undo()
    assert [p for p in root.rglob("*") if p.is_file()] == []

    async def retry() -> None:
        ref = await blobs.put_image("image/png", PNG)
        assert (await blobs.get(ref.blob_id)).data == PNG

    run(retry)


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"\x00\x01garbage",
        b"[1, 2, 3]",
        b'{"media_type": "image/png"}',
        json.dumps({"media_type": "image/png", "data": JPEG}).encode(),
        json.dumps({"media_type": "image/gif", "data": PNG}).encode(),
        json.dumps({"media_type": 7, "data": None}).encode(),
    ],
)
def test_corrupt_file_is_internal_on_get(tmp_path: Path, damage: bytes) -> None:
    """A blob file damaged on disk (truncated, garbage, another image under
    this id) is reported as Internal on get, never returned as valid."""
    root = tmp_path / "blobs"

    async def body() -> None:
        blobs = FileBlobStore(root)
        ref = await blobs.put_image("image/png", PNG)
        [path] = list(root.rglob("*.json"))
        path.write_bytes(damage)
        with pytest.raises(BlobStoreError.Internal) as err:
            await blobs.get(ref.blob_id)
        assert str(ref.blob_id) in str(err.value)

    run(body)


def shard_of(blob_id: BlobId) -> str:
    return str(blob_id)[len("sha256:") :][:2]


def test_a_damaged_blob_is_repaired_by_the_next_put(tmp_path: Path) -> None:
    """Content-addressed means verified: a blob file replaced by garbage is
    not "already stored". The next put of the same image rewrites it, so an
    input accepted with that image later can still be run."""
    root = tmp_path / "blobs"

    async def body() -> None:
        blobs = FileBlobStore(root)
        ref = await blobs.put_image("image/png", PNG)
        [path] = list(root.rglob("*.json"))
        good = path.read_bytes()
        path.write_bytes(b"\x00garbage")
        with pytest.raises(BlobStoreError.Internal, match=str(ref.blob_id)):
            await blobs.get(ref.blob_id)
        assert await blobs.put_image("image/png", PNG) == ref
        assert path.read_bytes() == good
        assert (await blobs.get(ref.blob_id)).data == PNG
        assert not list(root.rglob(".tmp-*"))

    run(body)


def test_a_linked_shard_directory_is_not_followed_out_of_the_root(
    tmp_path: Path,
) -> None:
    """A symbolic link planted as a shard directory would redirect writes
    outside the root: every operation refuses it, naming the link, and
    nothing is written where it points."""
    root, outside = tmp_path / "blobs", tmp_path / "outside"
    outside.mkdir()
    blobs = FileBlobStore(root)
    blob_id = blob_id_of("image/png", PNG)
    link = root / shard_of(blob_id)
    link.symlink_to(outside, target_is_directory=True)

    async def body() -> None:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: blobs.put_image("image/png", PNG),
            lambda: blobs.get(blob_id),
            lambda: blobs.exists(blob_id),
            lambda: blobs.delete(blob_id),
        ]
        for call in calls:
            with pytest.raises(BlobStoreError.Internal) as caught:
                await call()
            assert str(link) in str(caught.value)
            assert str(blob_id) in str(caught.value)
            assert "symbolic link" in str(caught.value)

    run(body)
    assert list(outside.iterdir()) == []
    assert link.is_symlink()


def test_a_linked_blob_file_is_never_followed(tmp_path: Path) -> None:
    """A blob file that is a link to a file outside the root (even one
    holding the right bytes) is refused on get and exists; put replaces the
    link itself by the real blob and leaves the outside file as it was."""
    root, outside = tmp_path / "blobs", tmp_path / "outside.json"
    body_bytes = json.dumps({"media_type": "image/png", "data": PNG}).encode()
    outside.write_bytes(body_bytes)
    blobs = FileBlobStore(root)
    blob_id = blob_id_of("image/png", PNG)
    shard = root / shard_of(blob_id)
    shard.mkdir()
    link = shard / (str(blob_id)[len("sha256:") :] + ".json")
    link.symlink_to(outside)

    async def body() -> None:
        reads: list[Callable[[], Awaitable[object]]] = [
            lambda: blobs.get(blob_id),
            lambda: blobs.exists(blob_id),
        ]
        for call in reads:
            with pytest.raises(BlobStoreError.Internal, match="symbolic link"):
                await call()
        await blobs.put_image("image/png", PNG)
        assert not link.is_symlink()
        assert (await blobs.get(blob_id)).data == PNG

    run(body)
    assert outside.read_bytes() == body_bytes


def blob_id_of(media_type: str, data: str) -> BlobId:
    raw = media_type.encode() + b"\0" + data.encode()
    return BlobId("sha256:" + hashlib.sha256(raw).hexdigest())

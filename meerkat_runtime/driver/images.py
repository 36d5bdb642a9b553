"""Moving inline images to a blob store and back (T-20, T-22).

A durable input's record must stay small and must not carry megabytes of
base64: before it is written, each inline image block is put into the blob
store and replaced by a reference. ``hydrate_images`` is the inverse, for
handing an executor the images inline (decision 13).
"""

from __future__ import annotations

from meerkat_runtime.blobs import BlobStore
from meerkat_runtime.inputs import (
    AnyContentBlock,
    BlobImage,
    ExternalEventInput,
    FlowStepInput,
    ImageBlock,
    InlineImage,
    Input,
    PeerInput,
    PromptInput,
)

_WITH_BLOCKS = (PromptInput, PeerInput, FlowStepInput, ExternalEventInput)


def has_inline_images(inp: Input) -> bool:
    """Cheap test, so image-less inputs skip the blob store entirely."""
    blocks = inp.blocks if isinstance(inp, _WITH_BLOCKS) else None
    return bool(blocks) and any(
        isinstance(b, ImageBlock) and isinstance(b.data, InlineImage)
        for b in blocks or ()
    )


async def externalize_images(blobs: BlobStore, inp: Input) -> Input:
    """A copy of ``inp`` whose inline images live in ``blobs``."""
    if not isinstance(inp, _WITH_BLOCKS) or not inp.blocks:
        return inp
    if not any(
        isinstance(b, ImageBlock) and isinstance(b.data, InlineImage)
        for b in inp.blocks
    ):
        return inp
    blocks: list[AnyContentBlock] = []
    for block in inp.blocks:
        if isinstance(block, ImageBlock) and isinstance(block.data, InlineImage):
            ref = await blobs.put_image(block.media_type, block.data.data)
            block = ImageBlock(
                media_type=ref.media_type, data=BlobImage(blob_id=ref.blob_id)
            )
        blocks.append(block)
    return _with_blocks(inp, blocks)


async def hydrate_images(blobs: BlobStore, inp: Input) -> Input:
    """A copy of ``inp`` with every blob image inline again (errors propagate)."""
    if not isinstance(inp, _WITH_BLOCKS) or not inp.blocks:
        return inp
    if not any(
        isinstance(b, ImageBlock) and isinstance(b.data, BlobImage) for b in inp.blocks
    ):
        return inp
    blocks: list[AnyContentBlock] = []
    for block in inp.blocks:
        if isinstance(block, ImageBlock) and isinstance(block.data, BlobImage):
            payload = await blobs.get(block.data.blob_id)
            block = ImageBlock(
                media_type=payload.media_type, data=InlineImage(data=payload.data)
            )
        blocks.append(block)
    return _with_blocks(inp, blocks)


def _with_blocks(inp: Input, blocks: list[AnyContentBlock]) -> Input:
    import msgspec

    return msgspec.structs.replace(inp, blocks=blocks)

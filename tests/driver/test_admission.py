"""Nothing is acknowledged that cannot be read back (issue 12, items 1-3).

Inputs come from strategies derived from the input types
(``meerkat_runtime.testing.strategies``): every field, nested ones included,
and with ``wrong=True`` hostile values anywhere. Each is accepted by a
persistent driver on an SQLite file, then the process "restarts": a new
store object on the same file, a new driver, ``recover()``. Accepted ⇒ the
recovered payload equals what was accepted; refused ⇒ ``ValidationFailed``
naming a field of the input, and nothing stored or changed.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import event, given

from meerkat_runtime import (
    BlobId,
    ContentBlock,
    CorrelationId,
    EphemeralRuntimeDriver,
    ExternalEventInput,
    FlowStepInput,
    IdempotencyKey,
    InputDurability,
    InputHeader,
    InputId,
    InputOrigin,
    InputVisibility,
    LogicalRuntimeId,
    OperationInput,
    PeerConvention,
    PeerInput,
    PromptInput,
    RuntimeDriverError,
    RuntimeTurnMetadata,
    SupersessionKey,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.images import externalize_images
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.driver.validation import DEFAULT_MAX_INPUT_BYTES, MAX_JSON_DEPTH
from meerkat_runtime.ids import MAX_ID_LENGTH
from meerkat_runtime.inputs import BlobImage, Input
from meerkat_runtime.outcomes import Accepted, AcceptOutcome, Rejected
from meerkat_runtime.store import SqliteRuntimeStore
from meerkat_runtime.testing.strategies import inputs, one_field_hostile

RID = LogicalRuntimeId("admission")


class Restartable:
    """One runtime on an SQLite file; ``restart`` is a new process on it."""

    def __init__(self, folder: str) -> None:
        self.path = Path(folder) / "runtime.db"
        self.blobs = MemoryBlobStore()  # blobs are not what is under test
        self.store = self.open()
        self.driver = PersistentRuntimeDriver(RID, self.store, self.blobs)

    def open(self) -> SqliteRuntimeStore:
        # A restart here is a clean close, not a power cut: what reads back
        # does not depend on fsync, which would only slow every example.
        return SqliteRuntimeStore(self.path, synchronous="OFF")

    async def restart(self) -> None:
        await self.store.close()
        self.store = self.open()
        self.driver = PersistentRuntimeDriver(RID, self.store, self.blobs)
        await self.driver.recover()


async def _accept_then_restart(
    inp: Input, *, may_refuse: bool, spoiled: str | None = None
) -> str:
    """What happened, for Hypothesis's statistics. ``spoiled``: the one
    field holding a hostile value, which a refusal must name."""
    with tempfile.TemporaryDirectory(prefix="meerkat-admission-") as folder:
        rt = Restartable(folder)
        before = rt.driver.observe()
        try:
            outcome = await rt.driver.accept_input(inp)
        except RuntimeDriverError.ValidationFailed as err:
            reason = err.reason
            assert may_refuse, f"a well-formed input was refused: {reason}"
            assert _names_a_field(inp, reason), reason
            if spoiled is not None:
                assert _within(reason.partition(": ")[0], spoiled), reason
            assert rt.driver.observe() == before
            assert await rt.store.load_input_states(RID) == []
            await rt.restart()
            assert rt.driver.observe().inputs == ()
            return f"refused: {reason.partition(': ')[2][:30]}"
        else:
            await _check_read_back(rt, inp, outcome)
            return type(outcome).__name__
        finally:
            await rt.store.close()


async def _check_read_back(rt: Restartable, inp: Input, outcome: AcceptOutcome) -> None:
    if isinstance(outcome, Rejected):  # legal, refused, not stored
        assert await rt.store.load_input_states(RID) == []
        return
    assert isinstance(outcome, Accepted), outcome
    payload = outcome.state.persisted_input
    await rt.restart()
    recovered = rt.driver.input_state(inp.id())
    if inp.header.durability is InputDurability.EPHEMERAL:
        assert recovered is None  # decision 13: never written
        return
    assert recovered is not None
    assert recovered.persisted_input == payload
    if payload is not None:  # consumed on accept keeps no payload
        # What was accepted, inline images moved to the blob store (T-20).
        assert payload == await externalize_images(rt.blobs, inp)


_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z_0-9]*)|\[(\d+)\]")


def _names_a_field(inp: Input, reason: str) -> bool:
    """The reason opens with "input:" or a path that exists in ``inp``, read
    through structs and lists (a free-form value is named by its field)."""
    path, _, problem = reason.partition(": ")
    if not problem:
        return False
    if path == "input":
        return True
    value: object = inp
    for match in _STEP.finditer(path):
        if not isinstance(value, msgspec.Struct | list):
            return True  # inside a free-form value: its field exists
        name, index = match.groups()
        if name is not None:
            if (
                not isinstance(value, msgspec.Struct)
                or name not in value.__struct_fields__
            ):
                return False
            value = getattr(value, name)
        elif not isinstance(value, list) or int(index) >= len(value):
            return False
        else:
            value = value[int(index)]
    return True


def _within(named: str, field: str) -> bool:
    return named == field or named.startswith((f"{field}.", f"{field}["))


@given(inputs())
def test_every_well_formed_input_is_accepted_and_read_back_after_a_restart(
    inp: Input,
) -> None:
    """Item 1: well-typed values in every field, nested ones included, are
    never refused as malformed and come back equal from the file."""
    event(asyncio.run(_accept_then_restart(inp, may_refuse=False)))


@given(inputs(wrong=True))
def test_a_hostile_input_is_refused_naming_the_field_or_read_back_unchanged(
    inp: Input,
) -> None:
    """Items 1-3: whatever a field holds, the input is either refused with
    ValidationFailed naming the field (nothing stored, nothing changed) or
    accepted and read back after a restart exactly as accepted."""
    event(asyncio.run(_accept_then_restart(inp, may_refuse=True)))


@given(one_field_hostile())
def test_one_hostile_field_anywhere_is_named_or_read_back_unchanged(
    spoiled: tuple[Input, str],
) -> None:
    """Items 1-3, one field at a time: a well-formed input with a single
    field (nested structs and list items included) replaced by a hostile
    value is refused naming exactly that field, or read back unchanged."""
    inp, field = spoiled
    event(asyncio.run(_accept_then_restart(inp, may_refuse=True, spoiled=field)))


# ================================================================ the reported cases


def _header(**fields: Any) -> InputHeader:
    return msgspec.structs.replace(InputHeader.new(), **fields)


def _any(value: object) -> Any:
    """Lets a test hand over a value of the wrong type."""
    return value


def _image(blob_id: object) -> list[Any]:
    return [
        ContentBlock.Image(
            media_type="image/png", data=BlobImage(blob_id=_any(blob_id))
        )
    ]


def _meta(**fields: Any) -> PromptInput:
    return PromptInput.new("m", turn_metadata=RuntimeTurnMetadata(**fields))


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


async def _refused(inp: object) -> str:
    """Accept on an SQLite file: ValidationFailed, nothing stored, and a
    restart recovers an empty runtime. Returns the reason."""
    with tempfile.TemporaryDirectory(prefix="meerkat-admission-") as folder:
        rt = Restartable(folder)
        try:
            before = rt.driver.observe()
            with pytest.raises(RuntimeDriverError.ValidationFailed) as caught:
                await rt.driver.accept_input(_any(inp))
            assert rt.driver.observe() == before
            assert await rt.store.load_input_states(RID) == []
            await rt.restart()
            assert rt.driver.observe().inputs == ()
        finally:
            await rt.store.close()
    return caught.value.reason


def _assert_refused(inp: object, field: str) -> str:
    reason = asyncio.run(_refused(inp))
    assert reason.startswith(f"{field}: "), reason
    return reason


NESTED_WRONG_TYPES: list[Any] = [
    pytest.param(lambda: _meta(model=123), "turn_metadata.model", id="model-int"),
    pytest.param(
        lambda: _meta(provider=["p"]), "turn_metadata.provider", id="provider"
    ),
    pytest.param(
        lambda: _meta(keep_alive="yes"), "turn_metadata.keep_alive", id="keep_alive"
    ),
    pytest.param(
        lambda: _meta(skill_references=[1]),
        "turn_metadata.skill_references[0]",
        id="skill_references-item",
    ),
    pytest.param(
        lambda: _meta(skill_references="abc"),
        "turn_metadata.skill_references",
        id="skill_references-str",
    ),
    pytest.param(
        lambda: _meta(additional_instructions=("a",)),
        "turn_metadata.additional_instructions",
        id="additional_instructions-tuple",
    ),
    pytest.param(
        lambda: PromptInput(
            header=_header(visibility=InputVisibility(transcript_eligible=_any("no"))),
            text="m",
        ),
        "header.visibility.transcript_eligible",
        id="visibility",
    ),
    pytest.param(
        lambda: FlowStepInput(
            header=_header(source=InputOrigin.Flow(flow_id="f", step_index=_any("1"))),
            step_id="s",
            instructions="i",
        ),
        "header.source.step_index",
        id="flow-origin-step_index",
    ),
    pytest.param(
        lambda: FlowStepInput(
            header=_header(source=InputOrigin.Flow(flow_id=_any(7), step_index=0)),
            step_id="s",
            instructions="i",
        ),
        "header.source.flow_id",
        id="flow-origin-flow_id",
    ),
    pytest.param(
        lambda: FlowStepInput(
            header=_header(),
            step_id="s",
            instructions="i",
            turn_metadata=RuntimeTurnMetadata(execution_kind=_any(3)),
        ),
        "turn_metadata.execution_kind",
        id="flow-step-metadata",
    ),
    pytest.param(
        lambda: PeerInput(
            header=_header(source=InputOrigin.Peer(peer_id="p", runtime_id=_any(5))),
            body="b",
        ),
        "header.source.runtime_id",
        id="peer-origin-runtime_id",
    ),
    pytest.param(
        lambda: PeerInput(
            header=_header(),
            body="b",
            convention=PeerConvention.Request(request_id=_any(1), intent="i"),
        ),
        "convention.request_id",
        id="peer-request-request_id",
    ),
    pytest.param(
        lambda: PeerInput(
            header=_header(),
            body="b",
            convention=PeerConvention.ResponseProgress(
                request_id="r", phase=_any("accepted")
            ),
        ),
        "convention.phase",
        id="peer-progress-phase",
    ),
    pytest.param(
        lambda: PromptInput.new("m", blocks=_image(123)),
        "blocks[0].data.blob_id",
        id="blob_id-int",
    ),
    pytest.param(
        lambda: PromptInput.new("m", blocks=_image("sha256:00")),
        "blocks[0].data.blob_id",
        id="blob_id-str",
    ),
]


@pytest.mark.parametrize(("make", "field"), NESTED_WRONG_TYPES)
def test_a_nested_field_of_the_wrong_type_is_refused_not_stored(
    make: Callable[[], Input], field: str
) -> None:
    """Item 1: such an input used to be Accepted, and its runtime could not
    recover afterwards (ReadFailed at the nested path)."""
    _assert_refused(make(), field)


OVER_THE_DEFAULT = "x" * (DEFAULT_MAX_INPUT_BYTES + 1)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        pytest.param(
            lambda: _meta(provider_params={"blob": OVER_THE_DEFAULT}),
            "turn_metadata.provider_params",
            id="provider_params",
        ),
        pytest.param(
            lambda: _meta(model=OVER_THE_DEFAULT), "turn_metadata.model", id="model"
        ),
        pytest.param(
            lambda: PromptInput(
                header=_header(correlation_id=CorrelationId(OVER_THE_DEFAULT)), text="m"
            ),
            "header.correlation_id",
            id="correlation_id",
        ),
        pytest.param(
            lambda: PeerInput(
                header=_header(source=InputOrigin.Peer(peer_id=OVER_THE_DEFAULT)),
                body="b",
            ),
            "header.source.peer_id",
            id="peer_id",
        ),
    ],
)
def test_the_size_limit_covers_every_field(
    make: Callable[[], Input], field: str
) -> None:
    """Item 2: the limit is on the whole encoded input; these fields were
    not counted at all."""
    reason = _assert_refused(make(), field)
    assert f"limit {DEFAULT_MAX_INPUT_BYTES})" in reason


ID_FIELDS: dict[str, Callable[[str], Input]] = {
    "header.id": lambda text: PromptInput(header=_header(id=InputId(text)), text="m"),
    "header.correlation_id": lambda text: PromptInput(
        header=_header(correlation_id=CorrelationId(text)), text="m"
    ),
    "header.idempotency_key": lambda text: PromptInput(
        header=_header(idempotency_key=IdempotencyKey(text)), text="m"
    ),
    "header.supersession_key": lambda text: PromptInput(
        header=_header(supersession_key=SupersessionKey(text)), text="m"
    ),
    "blocks[0].data.blob_id": lambda text: PromptInput.new(
        "m", blocks=_image(BlobId(text))
    ),
}


@pytest.mark.parametrize("field", list(ID_FIELDS))
def test_ids_have_a_maximum_length(field: str) -> None:
    """Item 2: every id a caller hands over is at most MAX_ID_LENGTH
    characters (README "Limits"); one more is refused naming the field."""
    assert MAX_ID_LENGTH == 512
    reason = _assert_refused(ID_FIELDS[field]("i" * (MAX_ID_LENGTH + 1)), field)
    assert reason == f"{field}: longer than {MAX_ID_LENGTH} characters"
    accepted = EphemeralRuntimeDriver(RID).accept_now(
        ID_FIELDS[field]("i" * MAX_ID_LENGTH)
    )
    assert accepted.is_accepted()


@pytest.mark.parametrize(
    ("make", "field"),
    [
        pytest.param(lambda: PromptInput.new("a\ud800b"), "text", id="text"),
        pytest.param(
            lambda: _meta(provider_params={"k\udfff": 1}),
            "turn_metadata.provider_params",
            id="free-form-key",
        ),
        pytest.param(
            lambda: OperationInput(
                header=_header(), operation_id="o", event=["\ud83d"]
            ),
            "event[0]",
            id="free-form-value",
        ),
        pytest.param(
            lambda: PromptInput(header=_header(id=InputId("id-\udc00")), text="m"),
            "header.id",
            id="id",
        ),
    ],
)
def test_a_lone_surrogate_is_a_validation_failure(
    make: Callable[[], Input], field: str
) -> None:
    """Item 3: text that is not valid Unicode cannot be stored as UTF-8; it
    used to surface as InternalError from the store."""
    reason = _assert_refused(make(), field)
    assert "surrogate" in reason


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 5_000])
@pytest.mark.parametrize(
    ("make", "field"),
    [
        pytest.param(
            lambda v: _meta(provider_params={"a": v}),
            "turn_metadata.provider_params",
            id="provider_params",
        ),
        pytest.param(
            lambda v: ExternalEventInput(header=_header(), event_type="e", payload=v),
            "payload",
            id="payload",
        ),
        pytest.param(
            lambda v: OperationInput(header=_header(), operation_id="o", event=v),
            "event",
            id="event",
        ),
        pytest.param(lambda v: PromptInput.new(_any(v)), "text", id="typed-field"),
    ],
)
def test_deep_nesting_is_a_validation_failure(
    make: Callable[[object], Input], field: str, depth: int
) -> None:
    """Item 3: nesting about 1,000 deep raised RecursionError; anything past
    MAX_JSON_DEPTH levels is refused before it can reach a decoder."""
    _assert_refused(make(_nested(depth)), field)


def test_nesting_up_to_the_limit_is_accepted_and_read_back() -> None:
    """The depth limit counts arrays/objects inside the free-form field."""
    inp = ExternalEventInput(
        header=_header(), event_type="e", payload=_nested(MAX_JSON_DEPTH - 1)
    )
    asyncio.run(_accept_then_restart(inp, may_refuse=False))
    refused = ExternalEventInput(
        header=_header(), event_type="e", payload=_nested(MAX_JSON_DEPTH)
    )
    assert _assert_refused(refused, "payload").endswith(
        f"nested deeper than {MAX_JSON_DEPTH} levels"
    )


@pytest.mark.parametrize(
    ("value", "field", "problem"),
    [
        pytest.param(
            float("nan"),
            "turn_metadata.provider_params.x",
            "nan is not a JSON number",
            id="nan",
        ),
        pytest.param(
            float("inf"),
            "turn_metadata.provider_params.x",
            "inf is not a JSON number",
            id="inf",
        ),
        pytest.param(
            {1, 2},
            "turn_metadata.provider_params.x",
            "set is not a JSON value",
            id="set",
        ),
        pytest.param(
            (1, 2),
            "turn_metadata.provider_params.x",
            "tuple is not a JSON value",
            id="tuple",
        ),
        pytest.param(
            b"\x00",
            "turn_metadata.provider_params.x",
            "bytes is not a JSON value",
            id="bytes",
        ),
        pytest.param(
            {1: "a"},
            "turn_metadata.provider_params.x",
            "key int 1 is not text",
            id="int-key",
        ),
        pytest.param(
            {None: "a"},
            "turn_metadata.provider_params.x",
            "key NoneType None is not text",
            id="none-key",
        ),
        pytest.param(
            {(1,): "a"},
            "turn_metadata.provider_params.x",
            "key tuple (1,) is not text",
            id="tuple-key",
        ),
    ],
)
def test_provider_params_json_cannot_hold_is_refused(
    value: object, field: str, problem: str
) -> None:
    """Item 3: these were silently changed on their way to the store (NaN
    to null, a set to a list, 1 to "1"); now refused naming the path."""
    reason = _assert_refused(_meta(provider_params={"x": value}), field)
    assert reason.startswith(f"{field}: {problem}"), reason

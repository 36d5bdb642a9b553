"""Inputs, drivers and assertions the admission validation tests share.

Bad input gets a clear error and leaves nothing behind: nothing is recorded
and no event is emitted.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from meerkat_runtime import (
    AcceptOutcome,
    EphemeralRuntimeDriver,
    Input,
    InputDurability,
    InputHeader,
    InputId,
    InputOrigin,
    LogicalRuntimeId,
    PromptInput,
    RuntimeDriverError,
)
from meerkat_runtime.errors import ValidationFailedError
from meerkat_runtime.inputs import AnyInputOrigin

RT = LogicalRuntimeId("rt")
MIB = 1024 * 1024


def _any(value: object) -> Any:
    """Lets a test hand the driver a value of the wrong type."""
    return value


def _header(
    source: AnyInputOrigin | None = None,
    durability: InputDurability = InputDurability.DURABLE,
    **fields: Any,
) -> InputHeader:
    values: dict[str, Any] = {
        "id": InputId.new(),
        "timestamp": datetime.now(UTC),
        "source": source if source is not None else InputOrigin.Operator(),
        "durability": durability,
    }
    values.update(fields)
    return InputHeader(**values)


def _prompt(text: object = "hi", **fields: Any) -> PromptInput:
    header = fields.pop("header", None) or _header()
    return PromptInput(header=header, text=_any(text), **fields)


def _keyed(key: object) -> PromptInput:
    return _prompt(header=_header(idempotency_key=_any(key)))


def _driver(max_input_bytes: int | None = None) -> EphemeralRuntimeDriver:
    """A driver with some history, so "nothing changed" is not vacuous."""
    if max_input_bytes is None:
        driver = EphemeralRuntimeDriver(RT)
    else:
        driver = EphemeralRuntimeDriver(RT, max_input_bytes=max_input_bytes)
    accepted = driver.accept_now(PromptInput.new("earlier"))
    assert accepted.is_accepted()
    driver.drain_events()
    return driver


def _accept(driver: EphemeralRuntimeDriver, inp: object) -> AcceptOutcome:
    """The public async entry point."""
    return asyncio.run(driver.accept_input(_any(inp)))


def _assert_validation_failed(
    driver: EphemeralRuntimeDriver, inp: object, field: str
) -> ValidationFailedError:
    before = driver.observe()
    with pytest.raises(RuntimeDriverError.ValidationFailed) as caught:
        _accept(driver, inp)
    err = caught.value
    assert isinstance(err, RuntimeDriverError)
    # The reason names the field, or a path inside it (``payload.tags``).
    assert re.match(rf"{re.escape(field)}[:.\[]", err.reason), err.reason
    assert err.reason in str(err)
    assert driver.observe() == before
    assert driver.drain_events() == []
    return err


def _assert_accepted(driver: EphemeralRuntimeDriver, inp: Input) -> None:
    outcome = _accept(driver, inp)
    assert outcome.is_accepted(), outcome
    assert driver.input_state(inp.id()) is not None

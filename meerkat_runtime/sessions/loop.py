"""The per-session runtime loop (docs/behaviour.md §9.1): an asyncio task.

Theory of operation: the loop sleeps until woken (an admission, a recovery,
a control command). Awake, it first applies control commands (they preempt
queued work), then drains the lanes batch by batch: stage the next batch,
call ``executor.apply`` outside the session lock, then commit the boundary
and complete the run, or roll the batch back when the executor failed, hung
past the run timeout, or the loop itself was cancelled. A failed input is
retried (its attempts are bounded by the input lifecycle, decision 3), so no
waiter is left waiting forever; waiters are resolved only at terminal states
(decision 9). Every failure is described as "<exception type>: <message>"
(bounded): the run event carries it, the driver keeps it in the history of
each input the run puts back, and it is logged here.

Only the executor's own failures count against an input's attempts. When
the store cannot record a run (its boundary, W-6a; its end, W-6b, W-7), the
executor is told to stop with the rule's reason, no waiter is answered, and
the loop waits for the store with a bounded, growing pause (``StoreBackoff``)
before anything runs again; a boundary the store refused withdraws the run
(PD-38). A store that refuses for good (not retryable) ends the loop and
writes nothing more: what the store holds is recovered by the next adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from meerkat_runtime import telemetry
from meerkat_runtime.driver.face import RuntimeDriver
from meerkat_runtime.driver.images import hydrate_images
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.errors import (
    InternalError,
    RuntimeDriverError,
    RuntimeStoreError,
    is_retryable,
)
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, RunId
from meerkat_runtime.input_state import bounded_error
from meerkat_runtime.inputs import Input
from meerkat_runtime.ledger import Lane
from meerkat_runtime.runs import RunEvent
from meerkat_runtime.sessions.completion import RuntimeTerminated
from meerkat_runtime.sessions.executor import (
    AnyRunControlCommand,
    CoreApplyOutput,
    CoreExecutor,
    StopRuntimeExecutor,
)
from meerkat_runtime.sessions.primitive import build_primitive, next_batch
from meerkat_runtime.sessions.session import Session

log = logging.getLogger(__name__)

_CAN_RUN = (RuntimeState.IDLE, RuntimeState.ATTACHED, RuntimeState.RETIRED)

# What the executor is told when the store cannot record a run (the reason
# of its StopRuntimeExecutor, followed by ": <the store's error>"): W-6a,
# W-6b and W-7, in upstream's words so an executor written for it reads
# them alike.
BOUNDARY_NOT_RECORDED = "runtime boundary commit failed for run {run_id}"
COMPLETION_NOT_RECORDED = "runtime terminal snapshot failed after completion"
FAILURE_NOT_RECORDED = "runtime failure snapshot failed"

Record = Callable[[RuntimeDriver], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StoreBackoff:
    """How long the loop waits for a store that could not be reached (PD-39):
    ``initial`` seconds after the first refusal, twice as long after each
    further one in a row, never more than ``maximum``."""

    initial: float = 0.05
    maximum: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(
                "StoreBackoff needs 0 < initial <= maximum, got "
                f"initial={self.initial!r}, maximum={self.maximum!r}"
            )

    def pause(self, refusals: int) -> float:
        """The pause after ``refusals`` + 1 refusals in a row."""
        return min(self.initial * 2.0 ** min(refusals, 64), self.maximum)


def store_fault(error: Exception) -> bool:
    """True unless the driver itself refused (not ready, invalid, destroyed):
    a failure under the driver, the store's above all."""
    return not isinstance(error, RuntimeDriverError) or isinstance(error, InternalError)


class RuntimeLoop:
    """Owns one session's executor and drains its lanes."""

    def __init__(
        self,
        session: Session,
        executor: CoreExecutor,
        *,
        run_timeout: float | None,
        retry_delay: float,
        store_backoff: StoreBackoff | None = None,
    ) -> None:
        self.session = session
        self.executor = executor
        self.run_timeout = run_timeout
        self.retry_delay = retry_delay
        self.store_backoff = store_backoff or StoreBackoff()
        self._attention = asyncio.Event()
        # Set while the loop has nothing to do and waits to be woken: tests
        # wait on it to know a turn is over instead of sleeping.
        self.waiting = asyncio.Event()
        self._controls: deque[AnyRunControlCommand] = deque()
        self._stop_sent = asyncio.Event()  # a Stop is queued: pauses end early
        self._withdrawn = 0  # runs withdrawn in a row (store faults, PD-38)
        self._fetch_refusals = 0  # payload loads refused in a row (PD-64)
        self.task: asyncio.Task[None] | None = None
        # Set when an error ended the loop: what its waiters were told.
        self.failure: RuntimeTerminated | None = None
        self.stopped = False
        self._closing = False  # cancel() was called: end retries, then go

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._main(), name=f"meerkat-loop-{self.session.runtime_id}"
        )

    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    def wake(self) -> None:
        self._attention.set()

    def send_control(self, command: AnyRunControlCommand) -> None:
        self._controls.append(command)
        self._attention.set()
        if isinstance(command, StopRuntimeExecutor):
            self._stop_sent.set()

    async def cancel(self) -> None:
        """End the loop and wait for it (a run in flight is rolled back, one
        attempt). ``asyncio.wait``, not ``await task``: a caller's own
        cancellation (new, or pending when this began) then reaches the
        caller instead of being spent on the loop task, which ends anyway."""
        self._closing = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task})
            if not self.task.cancelled():
                self.task.exception()  # _main logged it; retrieved here
        elif self.task is not None and not self.task.cancelled():
            self.task.exception()  # it ended earlier by an error: retrieved too

    async def join(self) -> None:
        """Wait for the loop to end; re-raise whatever ended it abnormally."""
        if self.task is not None:
            await asyncio.wait({self.task})
            if not self.task.cancelled() and self.task.exception() is not None:
                raise self.task.exception()  # type: ignore[misc]

    # ---------------------------------------------------------------- main

    async def _main(self) -> None:
        reason = "runtime loop exited"
        try:
            while not self.stopped:
                self.waiting.set()
                await self._attention.wait()
                self.waiting.clear()
                self._attention.clear()
                if await self._apply_controls():
                    return
                await self._process_queue()
        except Exception as exc:
            log.exception(
                "runtime loop of %s stopped by an error",
                self.session.runtime_id,
                extra=self._fields(),
            )
            reason = f"{reason}: {failure_text(exc)}"
            self.failure = RuntimeTerminated(reason=reason)
            raise
        finally:
            # W-3: whoever is still waiting learns the loop is gone (and why).
            self.session.waiters.resolve_all(RuntimeTerminated(reason=reason))

    async def _apply_controls(self) -> bool:
        """W-4: forward every queued command; True when the loop must stop."""
        while self._controls:
            command = self._controls.popleft()
            try:
                await self.executor.control(command)
            except Exception:
                log.exception(
                    "executor.control(%r) failed", command, extra=self._fields()
                )
            if isinstance(command, StopRuntimeExecutor):
                await self._stop_runtime()
                return True
        return False

    async def _stop_runtime(self) -> None:
        from meerkat_runtime.driver.ephemeral import RuntimeControlCommand

        async with self.session.lock:
            driver = self.session.driver
            if not driver.runtime_state().is_terminal():
                await driver.on_runtime_control(RuntimeControlCommand.STOP)
            self.session.waiters.resolve_all(
                RuntimeTerminated(reason="runtime stopped")
            )
        self.stopped = True

    async def _process_queue(self) -> None:
        """W-5: drain batch after batch until nothing is left to run."""
        while True:
            if await self._apply_controls():
                return
            try:
                staged = await self._stage_next()
            except RuntimeStoreError as exc:
                if not await self._fetch_refused(exc):
                    raise
                continue
            if staged is None:
                return
            run_id, batch, lane = staged
            finished = await self._run(run_id, batch, lane)
            if not finished:
                return

    async def _fetch_refused(self, error: RuntimeStoreError) -> bool:
        """The store could not hand over a batch's payloads (PD-64); the
        batch stays queued. True: it may answer later, so the loop pauses
        (growing, as for any store fault) and tries again. False: it will
        not (a corrupt record above all): the loop stops with the error,
        which names the input, and abandons nothing."""
        if not error.retryable or self._closing:
            log.error("runtime %s: %s", self.session.runtime_id, error)
            return False
        log.warning(
            "runtime %s: payloads not loaded (%s)", self.session.runtime_id, error
        )
        self._fetch_refusals += 1
        await self._pause(self.store_backoff.pause(self._fetch_refusals - 1))
        return True

    async def _stage_next(
        self,
    ) -> tuple[RunId, list[tuple[InputId, Input]], Lane] | None:
        async with self.session.lock:
            driver = self.session.driver
            if driver.runtime_state() not in _CAN_RUN:
                return None
            ids, lane = next_batch(
                driver.queued_input_ids(Lane.STEER),
                driver.queued_input_ids(Lane.QUEUE),
                driver.input_kind,
            )
            if not ids:
                return None
            # PD-64: one read for the batch's payloads left in the store,
            # before anything changes (a failure leaves the batch queued).
            await driver.load_payloads(ids)
            run_id = RunId.new()
            self._fetch_refusals = 0
            driver.start_run(run_id)
            driver.stage_batch(ids, run_id)
            return run_id, [(i, driver.payload(i)) for i in ids], lane

    @telemetry.traced_run
    async def _run(
        self, run_id: RunId, batch: list[tuple[InputId, Input]], lane: Lane
    ) -> bool:
        """One run; False when the loop should stop draining for now."""
        try:
            payloads = await self._hydrated(batch)
            primitive = build_primitive(payloads, lane)
            output = await self._with_timeout(self.executor.apply(run_id, primitive))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # The loop task is being cancelled mid-run: put the batch back
                # (shielded, so the rollback itself is not cancelled), then go.
                await asyncio.shield(
                    self._end_failed(run_id, "run cancelled", cancelled=True)
                )
                raise
            # The executor raised CancelledError itself: an ordinary failure.
            failure = "CancelledError: the executor cancelled the run"
            return await self._retry_later(run_id, failure)
        except Exception as exc:
            return await self._retry_later(run_id, failure_text(exc))
        if not isinstance(output, CoreApplyOutput):
            return await self._retry_later(
                run_id,
                f"TypeError: the executor returned {type(output).__name__}, "
                "not CoreApplyOutput",
            )
        return await self._end_applied(run_id, output)

    async def _retry_later(self, run_id: RunId, error: str) -> bool:
        """Fail the run (its inputs go back, attempts counted) and pause
        before the next one, so a failing executor is not hammered."""
        if not await self._end_failed(run_id, error):
            return False
        await self._pause(self.retry_delay)
        return True

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a Stop arrives: it must not wait out
        a pause that may be the store backoff's longest."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop_sent.wait()

    async def _hydrated(
        self, batch: list[tuple[InputId, Input]]
    ) -> list[tuple[InputId, Input]]:
        """Decision 13: the executor always receives images inline."""
        driver = self.session.driver
        if not isinstance(driver, PersistentRuntimeDriver):
            return batch
        return [(i, await hydrate_images(driver.blob_store, inp)) for i, inp in batch]

    async def _with_timeout(self, call: Awaitable[CoreApplyOutput]) -> CoreApplyOutput:
        if self.run_timeout is None:
            return await call
        try:
            return await asyncio.wait_for(call, self.run_timeout)
        except TimeoutError:
            raise TimeoutError(
                f"executor did not finish within {self.run_timeout} s"
            ) from None

    async def _end_applied(self, run_id: RunId, output: CoreApplyOutput) -> bool:
        """W-6: commit the boundary, then complete the run: in one commit
        when the driver can (PD-70), else in two."""
        boundary = RunEvent.BoundaryApplied(
            run_id=run_id,
            receipt=output.receipt,
            session_snapshot=output.session_snapshot,
        )
        async with self.session.lock:
            driver = self.session.driver
            one_commit = (
                isinstance(driver, PersistentRuntimeDriver)
                and driver.ends_runs_in_one_commit()
            )
            try:
                if one_commit:
                    assert isinstance(driver, PersistentRuntimeDriver)
                    await driver.on_run_end(boundary)
                else:
                    await driver.on_run_event(boundary)
            except Exception as exc:
                # The driver undid the boundary (and the end); the loop must
                # not die holding a run, whatever refused it.
                refused: Exception | None = exc
            else:
                refused = None
                if one_commit:
                    self.session.settle(output)
        if refused is None:
            self._withdrawn = 0
            if one_commit:
                return True
            consumed = list(output.receipt.contributing_input_ids)
            done = RunEvent.RunCompleted(run_id=run_id, consumed_input_ids=consumed)
            return await self._record_end(
                run_id, _event(done), COMPLETION_NOT_RECORDED, output
            )
        if not store_fault(refused):
            # The driver refused the executor's output (no receipt, a snapshot
            # that is not bytes): its failure, one attempt (W-6a, decision 3).
            log.error(
                "run %s: boundary refused (%s)",
                run_id,
                refused,
                extra=self._fields(run_id),
            )
            return await self._retry_later(run_id, f"boundary commit failed: {refused}")
        return await self._withdraw(run_id, refused)

    async def _withdraw(self, run_id: RunId, error: Exception) -> bool:
        """W-6a with PD-38: the store did not record the boundary. The
        executor is told to stop; the run is withdrawn (its inputs back in
        their lanes as before it, no attempt counted, no waiter answered)
        once the store answers again, and the next run waits a growing
        pause, so a store that keeps refusing boundaries is not met with a
        model call each time. A store that refuses for good ends the loop
        with nothing more written: the store still holds the batch as it
        was before the run, for the next recovery."""
        log.error(
            "run %s: boundary not recorded (%s)",
            run_id,
            error,
            extra=self._fields(run_id),
        )
        reason = BOUNDARY_NOT_RECORDED.format(run_id=run_id)
        await self._tell_executor(f"{reason}: {error}")
        if not is_retryable(error):
            return self._end_not_recorded(run_id, error)
        if not await self._record_end(run_id, _withdrawal(run_id), None):
            return False
        self._withdrawn += 1
        await self._pause(self.store_backoff.pause(self._withdrawn - 1))
        return True

    async def _record_end(
        self,
        run_id: RunId,
        record: Record,
        stop_reason: str | None,
        output: CoreApplyOutput | None = None,
    ) -> bool:
        """Record a run's end, then settle its waiters. The first time the
        store fails it, the executor is told to stop (``stop_reason``). A
        store that cannot be reached (a retryable error) is tried again
        until it answers, pausing (without the session lock) longer each
        time: the driver undid each failed attempt, so trying again is safe,
        and until the end is recorded the runtime cannot start another run.
        Stop, unregister or cancellation end the retries. Any other failure
        would fail the same way again: the loop ends (its waiters learn so)
        instead of retrying for ever; the inputs stay in the store for the
        next recovery."""
        attempt = 0
        while True:
            async with self.session.lock:
                try:
                    await record(self.session.driver)
                except Exception as exc:
                    error = exc
                else:
                    self.session.settle(output)
                    return True
            if attempt == 0 and stop_reason is not None and store_fault(error):
                await self._tell_executor(f"{stop_reason}: {error}")
            if not is_retryable(error):
                return self._end_not_recorded(run_id, error)
            log.warning(
                "run %s: end not recorded (%s), attempt %d",
                run_id,
                error,
                attempt + 1,
                extra=self._fields(run_id),
            )
            if self._closing or self._stop_requested():
                # Unregister, close or Stop ends the retries: the driver undid
                # each attempt, so memory still matches the store.
                return False
            await self._pause(self.store_backoff.pause(attempt))
            attempt += 1

    def _end_not_recorded(self, run_id: RunId, error: Exception) -> bool:
        """A run's end refused for good. A driver that refuses the event
        itself (not ready, invalid) leaves the loop waiting for the next
        wake-up, as before; a failure under the driver ends the loop."""
        if not store_fault(error):
            log.error(
                "run %s: end refused (%s)", run_id, error, extra=self._fields(run_id)
            )
            return False
        log.error(
            "run %s: not recorded (%s), not retryable: the loop stops",
            run_id,
            error,
            extra=self._fields(run_id),
        )
        self.stopped = True
        return False

    async def _tell_executor(self, reason: str) -> None:
        """W-6a, W-6b, W-7: the executor learns its run was not recorded. The
        runtime itself is not stopped (no Stop is queued)."""
        try:
            await self.executor.control(StopRuntimeExecutor(reason=reason))
        except Exception:
            log.exception(
                "executor.control(stop: %s) failed", reason, extra=self._fields()
            )

    def _fields(self, run_id: RunId | None = None) -> dict[str, str | None]:
        """The structured fields of this loop's log records."""
        return telemetry.log_fields(self.session.runtime_id, run_id=run_id)

    def _stop_requested(self) -> bool:
        return any(isinstance(c, StopRuntimeExecutor) for c in self._controls)

    async def _end_failed(
        self, run_id: RunId, error: str, cancelled: bool = False
    ) -> bool:
        """W-7: the run's staged inputs go back (decision 2); inputs out of
        attempts are abandoned and their waiters told (decision 3)."""
        if not cancelled:
            log.warning(
                "run %s of runtime %s failed: %s",
                run_id,
                self.session.runtime_id,
                error,
                extra=self._fields(run_id),
            )
        event: RunEvent = (
            RunEvent.RunCancelled(run_id=run_id)
            if cancelled
            else RunEvent.RunFailed(run_id=run_id, error=error, recoverable=True)
        )
        stop_reason = None if cancelled else FAILURE_NOT_RECORDED
        return await self._record_end(run_id, _event(event), stop_reason)


def _event(event: RunEvent) -> Record:
    return lambda driver: driver.on_run_event(event)


def _withdrawal(run_id: RunId) -> Record:
    return lambda driver: driver.withdraw_run(run_id)


def failure_text(exc: BaseException) -> str:
    """What a failed run records: the exception's type and message, bounded."""
    message = str(exc)
    name = type(exc).__name__
    return bounded_error(f"{name}: {message}" if message else name)


Starter = Callable[[Session, CoreExecutor], RuntimeLoop]

"""Traces and metrics on the OpenTelemetry API (imported only when it is installed).

Theory of operation: the library never configures an SDK; it asks the API
for a tracer and a meter (the global ones, which follow whatever provider the
application installs, or those ``configure`` is given) and records through
them. The hooks are decorators put on the seams the work already passes
through, so a call site is one line and the logic stays here:

* ``traced_accept`` (a driver's ``accept_input``): the ``meerkat.accept``
  span, child of the caller's span, and the accepted / deduplicated /
  rejected counters. While it is open, ``current_traceparent`` gives the
  W3C ``traceparent`` the core stores with the accepted input (PD-71).
* ``traced_run`` (the session loop's ``_run``): the ``meerkat.run`` span, the
  root of a trace of its own, LINKED to the accept span of every input in
  its batch through their stored ``traceparent`` (also when another process
  accepted them, or this one before a restart). Its outcome is noted by
  ``traced_run_event`` / ``traced_run_end`` / ``run_withdrawn`` (a driver's
  ``on_run_event`` / ``on_run_end`` /
  ``withdraw_run``), which also open ``meerkat.boundary_commit``.
* ``traced_recovery`` (a driver's ``recover``): ``meerkat.recovery``.
* ``store_commit`` (a store writer's commit): ``meerkat.store.commit``, the
  commit latency and group size.
* ``counts_events`` (a driver's ``drain_events``): superseded and coalesced
  inputs, counted from the event stream when it is drained (the session
  layer drains it after every operation), so an operation the store refused,
  whose events were taken back, is never counted.
* The queue depth per runtime is an observable gauge over the drivers the
  hooks have seen (held weakly).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from inspect import iscoroutinefunction
from typing import Any, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Link, SpanContext, TraceFlags

from meerkat_runtime.events import InputCoalesced, InputLifecycle, InputSuperseded
from meerkat_runtime.ledger import Lane
from meerkat_runtime.outcomes import Accepted, Deduplicated
from meerkat_runtime.runs import BoundaryApplied, RunCancelled, RunCompleted, RunFailed
from meerkat_runtime.telemetry import names as n

F = TypeVar("F", bound=Callable[..., Any])

# Durations in seconds: from a fast commit to a slow model turn.
_SECONDS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)
_SECONDS += (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_GROUPS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
# The API's placeholder meter provider (a private class): a release that
# moved it leaves NoneType here, and the meter then counts as installed.
_PLACEHOLDER_METERS: type = getattr(
    importlib.import_module("opentelemetry.metrics._internal"),
    "_ProxyMeterProvider",
    type(None),
)
_ROOT = otel_context.Context()  # no parent: a run starts a trace of its own


class _Instruments:
    """The meter's instruments, made once per ``configure``."""

    def __init__(self, meter: metrics.Meter) -> None:
        def counter(name: str, text: str, unit: str = "{input}") -> metrics.Counter:
            return meter.create_counter(name, unit=unit, description=text)

        def histogram(
            name: str, text: str, unit: str, bounds: Sequence[float]
        ) -> metrics.Histogram:
            return meter.create_histogram(
                name,
                unit=unit,
                description=text,
                explicit_bucket_boundaries_advisory=bounds,
            )

        self.accepted = counter(n.ACCEPTED, "inputs accepted (durable before ack)")
        self.deduplicated = counter(n.DEDUPLICATED, "inputs found to be duplicates")
        self.rejected = counter(n.REJECTED, "inputs rejected at admission")
        self.superseded = counter(n.SUPERSEDED, "queued inputs superseded")
        self.coalesced = counter(n.COALESCED, "queued inputs coalesced")
        self.fenced = counter(
            n.FENCED_WRITES, "writes refused: the lease moved on", "{write}"
        )
        self.run_duration = histogram(
            n.RUN_DURATION, "one run, staging to recorded end", "s", _SECONDS
        )
        self.commit_latency = histogram(
            n.COMMIT_LATENCY, "one store commit (a group)", "s", _SECONDS
        )
        self.group_size = histogram(
            n.COMMIT_GROUP, "requests per store commit", "{request}", _GROUPS
        )
        self.recovery_duration = histogram(
            n.RECOVERY_DURATION, "one runtime's recovery", "s", _SECONDS
        )
        meter.create_observable_gauge(
            n.QUEUE_DEPTH,
            callbacks=[_queue_depths],
            unit="{input}",
            description="inputs waiting in a runtime's lanes",
        )


# ------------------------------------------------------------ trace context


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, None outside a valid one
    (tracing off: then nothing is stored with the input)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse_traceparent(text: str | None) -> SpanContext | None:
    """The span a stored ``traceparent`` names, None when it names none
    (absent, damaged, or an unknown version's layout)."""
    parts = text.split("-") if text else []
    if len(parts) != 4 or parts[0] != "00":
        return None
    try:
        trace_id, span_id, flags = (int(p, 16) for p in parts[1:])
    except ValueError:
        return None
    ctx = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return ctx if ctx.is_valid else None


# ---------------------------------------------------------- queue depth


_DRIVERS: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_DRIVERS_LOCK = threading.Lock()  # the gauge is read on the exporter's thread


def _track(driver: Any) -> None:
    key = str(driver.runtime_id)
    if _DRIVERS.get(key) is not driver:
        with _DRIVERS_LOCK:
            _DRIVERS[key] = driver


def _queue_depths(_options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    with _DRIVERS_LOCK:
        drivers = list(_DRIVERS.items())
    for key, driver in drivers:
        try:
            depth = len(driver.queued_input_ids(Lane.QUEUE)) + len(
                driver.queued_input_ids(Lane.STEER)
            )
        except RuntimeError:  # a lane changed while copied: skip this reading
            continue
        yield metrics.Observation(depth, {n.RUNTIME: key})


# --------------------------------------------------------------- providers


log = logging.getLogger(__name__)


class _GuardedSpan:
    """A span whose methods never raise: an SDK's span processor runs inside
    ``end`` (and an exporter inside it), and its failure must not fail, or
    seem to fail, the work the span observed (a commit already done)."""

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._span, name)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception:
                log.warning("tracing failed in span.%s", name, exc_info=True)
                return None

        return guarded


class _GuardedTracer:
    """The tracer the hooks use: a span that cannot be started (a processor's
    ``on_start`` raised) is a non-recording one, and a failing ``end`` is
    logged, never raised into the store's writer or the session loop."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    @contextlib.contextmanager
    def start_as_current_span(self, name: str, **kwargs: Any) -> Iterator[Any]:
        try:
            span = self._tracer.start_span(name, **kwargs)
        except Exception:
            log.warning("tracing failed to start span %s", name, exc_info=True)
            span = trace.INVALID_SPAN
        try:
            with trace.use_span(span, end_on_exit=False):
                yield _GuardedSpan(span)
        finally:
            _GuardedSpan(span).end()


@dataclass(slots=True)
class _Telemetry:
    tracer: _GuardedTracer
    instruments: _Instruments
    explicit: bool  # configure() named providers: always record


def _providers(
    tracer_provider: trace.TracerProvider | None,
    meter_provider: metrics.MeterProvider | None,
) -> _Telemetry:
    return _Telemetry(
        _GuardedTracer(trace.get_tracer(n.SCOPE, tracer_provider=tracer_provider)),
        _Instruments(metrics.get_meter(n.SCOPE, meter_provider=meter_provider)),
        tracer_provider is not None or meter_provider is not None,
    )


_T = _providers(None, None)  # the global providers, whenever they are set


def _idle() -> bool:
    """Nothing would be recorded: ``configure`` named no provider and the
    global ones are still the API's placeholders (no SDK installed yet).
    Then every hook skips its work: building spans that record nothing and
    measurements that go nowhere would still cost every accept."""
    return (
        not _T.explicit
        and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        and isinstance(metrics.get_meter_provider(), _PLACEHOLDER_METERS)
    )


def configure(
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> None:
    """Record through these providers instead of the global ones (None: the
    global one). For an application that keeps several providers, and for
    tests and benchmarks, which cannot replace a global provider once set."""
    global _T
    _T = _providers(tracer_provider, meter_provider)


# ------------------------------------------------------------------ accept


def traced_accept(fn: F) -> F:
    """A driver's ``accept_input``: the accept span and the outcome counters."""

    @functools.wraps(fn)
    async def accept_input(driver: Any, input: Any) -> Any:
        if _idle():
            return await fn(driver, input)
        t = _T
        attributes = {n.RUNTIME: str(driver.runtime_id)}
        with t.tracer.start_as_current_span(
            n.ACCEPT_SPAN, attributes=attributes
        ) as span:
            outcome = await fn(driver, input)
            # Read only now: an input the driver refused may be anything.
            kind = input.kind_id()
            span.set_attributes({n.INPUT_ID: str(input.id()), n.INPUT_KIND: kind})
            counted = {n.INPUT_KIND: kind}
            if isinstance(outcome, Accepted):
                decision = outcome.policy
                span.set_attributes({n.OUTCOME: "accepted", n.POLICY: policy(decision)})
                t.instruments.accepted.add(1, counted)
                _track(driver)
            elif isinstance(outcome, Deduplicated):
                span.set_attributes(
                    {n.OUTCOME: "deduplicated", n.EXISTING_ID: str(outcome.existing_id)}
                )
                t.instruments.deduplicated.add(1, counted)
            else:
                span.set_attribute(n.OUTCOME, "rejected")
                t.instruments.rejected.add(1, counted)
            return outcome

    return cast(F, accept_input)


def policy(decision: Any) -> str:
    """The ``meerkat.policy`` attribute of an accepted input."""
    modes = (
        decision.queue_mode,
        decision.apply_mode,
        decision.wake_mode,
        decision.consume_point,
    )
    return "/".join(m.value for m in modes) + f" v{decision.policy_version}"


def counts_events(fn: F) -> F:
    """A driver's ``drain_events``: superseded and coalesced inputs."""

    @functools.wraps(fn)
    def drain_events(driver: Any) -> Any:
        envelopes = fn(driver)
        if _idle():
            return envelopes
        instruments = _T.instruments
        for envelope in envelopes:
            event = envelope.event
            if isinstance(event, InputLifecycle):
                if isinstance(event.data, InputSuperseded):
                    instruments.superseded.add(1)
                elif isinstance(event.data, InputCoalesced):
                    instruments.coalesced.add(1)
        return envelopes

    return cast(F, drain_events)


# -------------------------------------------------------------------- runs


@dataclass(slots=True)
class _RunNote:
    """How the run the current task is in ended, as its driver recorded it."""

    outcome: str = "not_recorded"  # the loop gave up before the store had it
    error: str | None = None


_RUN_NOTE: ContextVar[_RunNote | None] = ContextVar("meerkat_run_note", default=None)
_RUN_OUTCOMES: dict[type[Any], str] = {
    RunCompleted: "completed",
    RunFailed: "failed",
    RunCancelled: "cancelled",
}


def traced_run(fn: F) -> F:
    """The session loop's ``_run(run_id, batch, lane)``: the run span, linked
    to the accept span of every input in the batch, and the run duration."""

    @functools.wraps(fn)
    async def run(loop: Any, run_id: Any, batch: Any, lane: Any) -> Any:
        if _idle():
            return await fn(loop, run_id, batch, lane)
        t = _T
        driver = loop.session.driver
        states = [driver.peek_input_state(input_id) for input_id, _ in batch]
        links = [_link(s) for s in states if s is not None]
        attempts = [s.attempt_count() for s in states if s is not None]
        runtime = str(driver.runtime_id)
        attributes = {
            n.RUNTIME: runtime,
            n.RUN_ID: str(run_id),
            n.BATCH_SIZE: len(batch),
            # Staging counted this run already: the count is its number.
            n.ATTEMPT: max(attempts, default=1),
            n.LANE: lane.value,
        }
        note = _RunNote()
        token = _RUN_NOTE.set(note)
        start = time.perf_counter()
        try:
            with t.tracer.start_as_current_span(
                n.RUN_SPAN,
                context=_ROOT,
                links=[link for link in links if link is not None],
                attributes=attributes,
            ) as span:
                try:
                    return await fn(loop, run_id, batch, lane)
                finally:
                    span.set_attribute(n.OUTCOME, note.outcome)
                    if note.error is not None:
                        span.set_attribute(n.ERROR, note.error)
                        span.set_status(trace.StatusCode.ERROR, note.error)
        finally:
            _RUN_NOTE.reset(token)
            t.instruments.run_duration.record(
                time.perf_counter() - start, {n.OUTCOME: note.outcome}
            )

    return cast(F, run)


def _link(state: Any) -> Link | None:
    ctx = parse_traceparent(state.trace_context)
    if ctx is None:
        return None
    return Link(ctx, {n.INPUT_ID: str(state.input_id)})


def traced_run_event(fn: F) -> F:
    """A driver's ``on_run_event``: the boundary commit span, and the run's
    outcome once the driver has recorded its end."""

    @functools.wraps(fn)
    async def on_run_event(driver: Any, event: Any) -> None:
        if isinstance(event, BoundaryApplied) and not _idle():
            attributes = {
                n.RUNTIME: str(driver.runtime_id),
                n.RUN_ID: str(event.run_id),
            }
            tracer = _T.tracer
            with tracer.start_as_current_span(
                n.BOUNDARY_SPAN, attributes=attributes
            ) as span:
                await fn(driver, event)
                # Read only now: the driver checked the executor's receipt.
                receipt = event.receipt
                span.set_attributes(
                    {
                        n.APPLIED: len(receipt.contributing_input_ids),
                        n.SEQUENCE: receipt.sequence,
                    }
                )
            return
        await fn(driver, event)
        note = _RUN_NOTE.get()
        outcome = _RUN_OUTCOMES.get(type(event))
        if note is not None and outcome is not None:
            note.outcome = outcome
            note.error = event.error if isinstance(event, RunFailed) else None

    return cast(F, on_run_event)


def traced_run_end(fn: F) -> F:
    """A driver's ``on_run_end(boundary)`` (PD-70: the boundary and the run's
    end in one commit): the boundary commit span, then the run completed."""
    boundary_span = traced_run_event(fn)

    @functools.wraps(fn)
    async def on_run_end(driver: Any, event: Any) -> None:
        await boundary_span(driver, event)
        note = _RUN_NOTE.get()
        if note is not None:
            note.outcome, note.error = _RUN_OUTCOMES[RunCompleted], None

    return cast(F, on_run_end)


def run_withdrawn(fn: F) -> F:
    """A driver's ``withdraw_run``: the run ends as withdrawn (PD-38)."""

    @functools.wraps(fn)
    async def withdraw_run(driver: Any, run_id: Any) -> None:
        await fn(driver, run_id)
        note = _RUN_NOTE.get()
        if note is not None:
            note.outcome = "withdrawn"

    return cast(F, withdraw_run)


# ---------------------------------------------------------------- recovery


def traced_recovery(fn: F) -> F:
    """A driver's ``recover``: the recovery span and its duration."""

    @functools.wraps(fn)
    async def recover(driver: Any) -> Any:
        if _idle():
            return await fn(driver)
        t = _T
        attributes = {n.RUNTIME: str(driver.runtime_id)}
        start = time.perf_counter()
        with t.tracer.start_as_current_span(
            n.RECOVERY_SPAN, attributes=attributes
        ) as span:
            report = await fn(driver)
            span.set_attributes(
                {
                    n.RECOVERED: report.inputs_recovered,
                    n.REQUEUED: report.inputs_requeued,
                    n.ABANDONED: report.inputs_abandoned,
                }
            )
        t.instruments.recovery_duration.record(time.perf_counter() - start)
        _track(driver)
        return report

    return cast(F, recover)


def fenced_write(runtime_id: object) -> None:
    """A write refused because another owner holds the runtime now (PD-36)."""
    _T.instruments.fenced.add(1, {n.RUNTIME: str(runtime_id)})


# ------------------------------------------------------------------ stores


def store_commit(system: str, grouped: bool = True) -> Callable[[F], F]:
    """A store writer's commit of a group (its first argument after ``self``,
    when ``grouped``): the commit span, its latency and the group size. Not
    ``grouped``: one write committed inline by its caller, inside the
    caller's own span (an accept's), so only its latency and size are
    recorded; a second span per accept would double what tracing costs it.
    Works on plain and on async functions."""

    def decorate(fn: F) -> F:
        def opened(args: tuple[Any, ...]) -> tuple[Any, int, float]:
            if not grouped:  # a lone write inside its caller's span: no span
                return contextlib.nullcontext(), 1, time.perf_counter()
            size = len(args[1])
            attributes: dict[str, str | int] = {n.DB_SYSTEM: system, n.GROUP_SIZE: size}
            span = _T.tracer.start_as_current_span(
                n.STORE_COMMIT_SPAN, attributes=attributes
            )
            return span, size, time.perf_counter()

        def closed(size: int, start: float) -> None:
            instruments, system_only = _T.instruments, {n.DB_SYSTEM: system}
            instruments.commit_latency.record(time.perf_counter() - start, system_only)
            instruments.group_size.record(size, system_only)

        if iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def commit_async(*args: Any) -> Any:
                if _idle():
                    return await fn(*args)
                span, size, start = opened(args)
                with span:
                    result = await fn(*args)
                closed(size, start)
                return result

            return cast(F, commit_async)

        @functools.wraps(fn)
        def commit(*args: Any) -> Any:
            if _idle():
                return fn(*args)
            span, size, start = opened(args)
            with span:
                result = fn(*args)
            closed(size, start)
            return result

        return cast(F, commit)

    return decorate

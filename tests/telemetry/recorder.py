"""The OpenTelemetry SDK's in-memory exporters, plugged into the telemetry.

``recording()`` points ``meerkat_runtime.telemetry`` at a fresh tracer and
meter provider (never the global ones, which a process can set only once)
and hands back what they recorded; leaving it points the telemetry back at
the global providers.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from meerkat_runtime import telemetry
from meerkat_runtime.telemetry import names

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Recorded:
    tracer_provider: TracerProvider
    spans_exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        finished = self.spans_exporter.get_finished_spans()
        return [s for s in finished if name is None or s.name == name]

    def points(self, metric: str) -> list[Any]:
        """Every data point of ``metric`` (empty when it recorded nothing)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data is not None else []:
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name == metric:
                        found.extend(item.data.data_points)
        return found

    def depths(self) -> dict[str, int]:
        """The queue depth gauge, by runtime id (other tests' runtimes too,
        until their drivers are collected)."""
        return {
            str(p.attributes[names.RUNTIME]): int(p.value)
            for p in self.points(names.QUEUE_DEPTH)
        }

    def total(self, metric: str) -> int:
        """A counter's sum over all its attributes."""
        return sum(int(p.value) for p in self.points(metric))


@contextmanager
def recording() -> Iterator[Recorded]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.configure(tracer_provider, meter_provider)
    try:
        yield Recorded(tracer_provider, exporter, reader)
    finally:
        telemetry.configure()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def span_id(span: ReadableSpan) -> tuple[int, int]:
    """(trace id, span id): what a parent or a link names."""
    context = span.get_span_context()
    assert context is not None
    return context.trace_id, context.span_id


def dump(spans: list[ReadableSpan]) -> str:
    """One line per span: name, own id, parent, links, attributes (the
    text form of an exported trace, for reports and failure messages)."""
    lines = []
    for s in sorted(spans, key=lambda s: s.start_time or 0):
        own = span_id(s)
        parent = f"{s.parent.span_id:016x}" if s.parent is not None else "-"
        links = ",".join(f"{link.context.span_id:016x}" for link in s.links)
        attributes = dict(s.attributes or {})
        lines.append(
            f"{s.name} span={own[1]:016x} trace={own[0]:032x} parent={parent} "
            f"links=[{links}] {attributes}"
        )
    return "\n".join(lines)


def python(*args: str) -> subprocess.CompletedProcess[str]:
    """This interpreter on ``args``, from the repository root (so that
    ``tests`` imports), its output captured."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

"""A worker that accepts one prompt with tracing on, reports its accept span,
and dies before any run (``os._exit``: no close, no clean-up).

Run as ``python -m tests.telemetry.traced_child DB BLOBS SESSION`` from the
repository root. Prints one JSON line: the input's id and the accept span's
trace and span ids (hex), which the parent finds again as the link of the
run that applies the input after it recovers the session.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from meerkat_runtime import (
    FileBlobStore,
    RuntimeSessionAdapter,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.telemetry import names
from tests.sessions.helpers import CHILD_OWNER, prompt

from .recorder import recording, span_id


async def main(db: str, blobs: str, session: str) -> None:
    with recording() as recorded:
        store = SqliteRuntimeStore(db)
        adapter = RuntimeSessionAdapter.persistent(
            store, FileBlobStore(blobs), owner=CHILD_OWNER
        )
        sid = SessionId(session)
        await adapter.register_session(sid)
        inp = prompt("traced across a crash", key="once")
        client = recorded.tracer_provider.get_tracer("client")
        with client.start_as_current_span("client.request"):
            await adapter.accept_input(sid, inp)
        (accept,) = recorded.spans(names.ACCEPT_SPAN)
        trace_id, accept_id = span_id(accept)
        report = {"input": str(inp.id()), "trace": f"{trace_id:032x}"}
        print(json.dumps({**report, "span": f"{accept_id:016x}"}), flush=True)
        os._exit(1)  # the crash: the input is on disk, nothing ran


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

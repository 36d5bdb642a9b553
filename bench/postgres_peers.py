"""The peers ``bench/postgres.py`` measures beside meerkat, when installed
(the ``bench`` extra): LangGraph's ``PostgresSaver.put`` and DBOS's queue
enqueue, each doing what an agent framework does to make one step durable.

Each peer runs in a child process of its own (``python
bench/postgres_peers.py PEER DSN SESSIONS SECONDS``, printing operations per
second): DBOS is one instance per process with threads of its own, and
neither peer should share an interpreter with the other or with meerkat.
Both are synchronous libraries, so each session is a thread with a
connection of its own (DBOS: its pool, one connection per session).

Not a benchmark itself.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

PEERS = {"langgraph": "langgraph.checkpoint.postgres", "dbos": "dbos"}
TEXT = "x" * 200  # the same prompt text meerkat accepts


def installed(peer: str) -> bool:
    try:
        return importlib.util.find_spec(PEERS[peer]) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def peer_rate(peer: str, dsn: str, sessions: int, seconds: float) -> float:
    """``peer``'s operations per second, measured in a child process."""
    done = subprocess.run(
        [sys.executable, __file__, peer, dsn, str(sessions), str(seconds)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300 + seconds * 4,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{peer} failed: {done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def threaded(operations: list[Callable[[], None]], seconds: float) -> float:
    """Operations per second: one thread per operation, each repeating it
    until the time is up."""
    counts = [0] * len(operations)
    start_line = threading.Barrier(len(operations) + 1)
    stop = [0.0]

    def loop(index: int) -> None:
        start_line.wait()
        while time.perf_counter() < stop[0]:
            operations[index]()
            counts[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(operations))]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    stop[0] = started + seconds
    start_line.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def langgraph(dsn: str, sessions: int, seconds: float) -> float:
    """One checkpoint ``put`` per operation, each session its own thread."""
    import psycopg
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    conns: list[psycopg.Connection[Any]] = [
        psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        for _ in range(sessions)
    ]
    savers = [PostgresSaver(conn) for conn in conns]
    savers[0].setup()

    def put(n: int) -> Callable[[], None]:
        config: Any = {"configurable": {"thread_id": f"t{n}", "checkpoint_ns": ""}}

        def once() -> None:
            checkpoint = empty_checkpoint()  # a new checkpoint id each time
            checkpoint["channel_values"] = {"prompt": TEXT}
            savers[n].put(config, checkpoint, {}, {})

        return once

    rate = threaded([put(n) for n in range(sessions)], seconds)
    for conn in conns:
        conn.close()
    return rate


def dbos(dsn: str, sessions: int, seconds: float) -> float:
    """One workflow enqueued per operation; no worker of this process runs
    them (``listen_queues([])``): the enqueue is what makes a step durable."""
    from dbos import DBOS
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    url = f"postgresql://{params['user']}@/meerkat_bench_dbos?host={params['host']}"
    DBOS(
        config={
            "name": "meerkat-bench",
            "system_database_url": url,
            "sys_db_pool_size": sessions + 4,
            "log_level": "WARNING",
        }
    )

    def echo(text: str) -> str:
        return text

    step = DBOS.workflow()(echo)  # registered before launch, as DBOS requires
    DBOS.listen_queues([])
    DBOS.launch()
    queue = DBOS.register_queue("meerkat_bench")

    def enqueue() -> None:
        queue.enqueue(step, TEXT)

    rate = threaded([enqueue] * sessions, seconds)
    DBOS.destroy()
    return rate


if __name__ == "__main__":
    name, target, count, span = sys.argv[1:5]
    runner = {"langgraph": langgraph, "dbos": dbos}[name]
    print(f"{name} {runner(target, int(count), float(span)):.1f}")
    sys.stdout.flush()
    os._exit(0)  # DBOS may leave threads behind that would hold the exit

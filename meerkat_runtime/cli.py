"""The ``meerkat-runtime`` command: demo, inspect, audit, worker, verify,
diagrams.

Each subcommand is one small function returning the exit status; ``main``
parses, dispatches and turns the expected failures (a missing file, a file
that is not a meerkat database, a corrupt row, no spec) into one ``error:``
line on stderr and a non-zero status, never a traceback.

``verify`` and ``diagrams`` are the spec tooling of a checkout: they run
``python -m codegen`` (a directory of the repository, not an installed
package) in a child process, and say so plainly when there is no checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from meerkat_runtime import __version__
from meerkat_runtime.audit import audit_records, audit_views, report_lines
from meerkat_runtime.ids import name_problem
from meerkat_runtime.inspection import (
    InspectionError,
    RuntimeView,
    load_database,
    print_views,
    runtimes_table,
    to_json,
)
from meerkat_runtime.store.base import RuntimeStoreError
from meerkat_runtime.store.redaction import redact
from meerkat_runtime.targets import is_dsn
from meerkat_runtime.terminal_text import markup_safe, printable

SPEC_FILE = Path("spec") / "lifecycle.yaml"
CODEGEN = Path("codegen") / "__main__.py"
# Where this package runs from: a checkout when it is run in place or
# installed editable; site-packages (no spec, no codegen/) when installed.
PACKAGE_PARENT = Path(__file__).resolve().parent.parent
# Inputs and receipts `inspect` shows per runtime (its counts cover all).
DEFAULT_INSPECT_LIMIT = 100


def _console() -> Console:
    """Wide enough for the tables when the output is not a terminal."""
    return Console(width=None if sys.stdout.isatty() else 120, highlight=False)


def _error(message: str) -> int:
    # Errors name runtimes and records, which are stored text, and may
    # quote a DSN or the driver's conninfo: never its password.
    shown = printable(redact(message), keep="\n\t")
    print(f"meerkat-runtime: error: {shown}", file=sys.stderr)
    return 1


def _unreadable(target: object, exc: InspectionError | RuntimeStoreError) -> int:
    """The exit status of a target ``inspect`` or ``audit`` could not read:
    2 when it cannot be read at all (missing, not a meerkat store,
    unreachable: InspectionError), 1 when it was read and holds a record
    that does not decode or is damaged (RuntimeStoreError), as a violation
    is 1 (README, "Exit status")."""
    if isinstance(exc, InspectionError):
        _error(str(exc))
        return 2
    _error(f"{target}: {exc}")
    return 1


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count (0 or more), not {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds (above 0), not {text!r}")
    return value


# ---------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace) -> int:
    from meerkat_runtime.demo import DemoError, run_demo

    try:
        if args.fleet:
            from meerkat_runtime.demo_fleet import run_fleet_demo

            return run_fleet_demo(args.dir, args.keep, _console())
        return run_demo(args.dir, args.keep, _console())
    except (DemoError, InspectionError, RuntimeStoreError, OSError) as exc:
        return _error(str(exc))


def cmd_inspect(args: argparse.Namespace) -> int:
    target: str = args.path
    if _schema_without_dsn("inspect", target, args.schema):
        return 2
    if args.watch:
        return _watch(target, args)
    try:
        views, path = _load_target(target, args.schema or "meerkat", args.limit or None)
    except (InspectionError, RuntimeStoreError) as exc:
        return _unreadable(target, exc)
    audits = [audit_records(v.runtime_id, v.state, v.inputs, v.receipts) for v in views]
    if args.json:
        report = to_json(path, views)
        for runtime, audit in zip(report["runtimes"], audits, strict=True):
            runtime["audit"] = audit.to_json()
        print(json.dumps(report, indent=2))
        return 0
    console = _console()
    if not views:
        console.print(markup_safe(f"{path}: a meerkat database with no runtimes yet"))
        return 0
    console.print(runtimes_table(views))
    for audit in audits:  # one line each; `audit` prints the details
        console.print(markup_safe(f"{audit.runtime_id}: {audit.verdict()}"))
    print_views(console, views)
    return 0


def _watch(target: str, args: argparse.Namespace) -> int:
    """``inspect --watch``: the live view (``inspection_watch``) until
    interrupted or ``--iterations`` refreshes. A target unreadable at the
    start exits as ``inspect`` does; later failures show in the view."""
    from meerkat_runtime.inspection_watch import watch

    if args.json:
        print("meerkat-runtime inspect: error: --watch and --json", file=sys.stderr)
        return 2
    schema, limit = args.schema or "meerkat", args.limit or None
    try:
        _, label = _load_target(target, schema, limit)
    except (InspectionError, RuntimeStoreError) as exc:
        return _unreadable(target, exc)
    with contextlib.suppress(KeyboardInterrupt):  # how a live view is left
        watch(
            lambda: _load_target(target, schema, limit)[0],
            str(label),
            _console(),
            interval=args.interval,
            iterations=args.iterations or None,
        )
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Exit 0 when every runtime is clean, 1 on a violation (a record that
    does not decode is one), 2 when the target cannot be audited at all."""
    target: str = args.path
    if _schema_without_dsn("audit", target, args.schema):
        return 2
    try:
        views, path = _load_target(target, args.schema or "meerkat", None)
        _check_inbox(target, args.schema or "meerkat")
    except (InspectionError, RuntimeStoreError) as exc:
        return _unreadable(target, exc)
    audits = audit_views(views)
    clean = all(a.clean for a in audits)
    if args.json:
        report = {"database": str(path), "clean": clean}
        print(
            json.dumps({**report, "runtimes": [a.to_json() for a in audits]}, indent=2)
        )
    else:
        for line in report_lines(audits) or [f"{path}: no runtimes to audit"]:
            print(printable(line))
    return 0 if clean else 1


def _schema_without_dsn(command: str, target: str, schema: str | None) -> bool:
    """``--schema`` given for a SQLite file: said, and the command exits 2."""
    if schema is None or is_dsn(target):
        return False
    print(
        f"meerkat-runtime {command}: error: --schema names a PostgreSQL schema; "
        f"{printable(target)!r} is a SQLite file, which has none",
        file=sys.stderr,
    )
    return True


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds > 0, not {text!r}")
    return value


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds ≥ 0, not {text!r}")
    return value


def _owner(text: str) -> str:
    problem = name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem}, not {text[:60]!r}")
    return text


def cmd_worker(args: argparse.Namespace) -> int:
    """One fleet worker until SIGTERM/SIGINT (``meerkat_runtime.worker``)."""
    from meerkat_runtime.worker import WorkerOptions, WorkerSetupError, run_worker

    if _schema_without_dsn("worker", args.target, args.schema):
        return 2
    options = WorkerOptions(
        target=args.target,
        schema=args.schema or "meerkat",
        executor=args.executor,
        lease_ttl=args.lease_ttl,
        max_runtimes=args.max_runtimes,
        idle_release=args.idle_release,
        scan_interval=args.scan_interval,
        drain=args.drain,
        owner=args.owner,
        blobs=args.blobs,
        quiet=args.quiet,
    )
    try:
        return run_worker(options)
    except (WorkerSetupError, RuntimeStoreError, OSError) as exc:
        _error(str(exc))
        return 2


def _load_target(
    target: str, schema: str, limit: int | None
) -> tuple[list[RuntimeView], Path]:
    """The views of a SQLite file or, for a ``postgresql://`` DSN, of a
    PostgreSQL store's schema (the ``postgres`` extra), and what to call it;
    ``limit`` as for ``load_database``."""
    if not is_dsn(target):
        return load_database(Path(target), limit), Path(target)
    try:
        from meerkat_runtime.inspection_postgres import label, load_postgres
    except ImportError as exc:
        raise InspectionError(
            f"inspecting PostgreSQL needs the postgres extra ({exc})"
        ) from None
    return load_postgres(target, schema, limit), Path(label(target, schema))


def _check_inbox(target: str, schema: str) -> None:
    """PD-72: every inbox row decoded and checked (``audit_inbox``); a
    damaged one raises ``Corrupt``. Only after ``_load_target`` read the
    target, so what cannot be read at all is already said."""
    from meerkat_runtime.audit_inbox import check_postgres_inbox, check_sqlite_inbox

    if is_dsn(target):
        check_postgres_inbox(target, schema)
    else:
        check_sqlite_inbox(Path(target))


def find_checkout(root: Path) -> Path | None:
    """The checkout whose ``codegen/`` runs the spec tooling: ``root`` itself,
    else the one this package runs from. Both a spec and ``codegen/`` are
    required, so an unrelated ``codegen`` beside an installed package is
    never taken for ours."""
    for candidate in (root, PACKAGE_PARENT):
        if (candidate / CODEGEN).is_file() and (candidate / SPEC_FILE).is_file():
            return candidate
    return None


NEEDS_CHECKOUT = (
    "`{command}` is spec tooling: it needs a checkout of the meerkat-runtime "
    "repository (spec/ and codegen/) and the `spec` extra; run it from the "
    "checkout or pass --root with its directory"
)


def _codegen(command: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        root: Path = args.root.resolve()
        needs = NEEDS_CHECKOUT.format(command=command)
        if not (root / SPEC_FILE).is_file():
            return _error(f"no {SPEC_FILE} under {root}: {needs}")
        checkout = find_checkout(root)
        if checkout is None:
            return _error(f"no {CODEGEN.parent}/ under {root}: {needs}")
        sys.stdout.flush()  # the child writes to the same descriptors
        done = subprocess.run(
            [sys.executable, "-m", "codegen", command, "--root", str(root)],
            cwd=checkout,  # `-m` imports codegen/ from the working directory
            check=False,
        )
        return done.returncode

    return run


# ---------------------------------------------------------------- parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meerkat-runtime",
        description="Durable control plane for LLM-agent sessions.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="run three agent sessions, SIGKILL one mid-run, recover"
    )
    demo.add_argument(
        "--dir", type=Path, help="where to put the SQLite file (default: a temp dir)"
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the SQLite file afterwards"
    )
    demo.add_argument(
        "--fleet",
        action="store_true",
        help="the story across processes: worker processes share the sessions, "
        "one is SIGKILLed mid-run, the others finish its work",
    )
    demo.set_defaults(handler=cmd_demo)
    inspect = sub.add_parser(
        "inspect",
        help="show the runtimes, inputs and receipts in a SQLite file or a "
        "PostgreSQL store",
    )
    inspect.add_argument(
        "path", help="a meerkat SQLite database, or a postgresql:// DSN"
    )
    inspect.add_argument(
        "--schema",
        help="the PostgreSQL store's schema (default: meerkat; a DSN only)",
    )
    inspect.add_argument("--json", action="store_true", help="print JSON instead")
    inspect.add_argument(
        "--limit",
        type=_non_negative,
        default=DEFAULT_INSPECT_LIMIT,
        metavar="N",
        help=f"show the first N inputs and receipts of each runtime (counts "
        f"always cover all; 0: show all; default {DEFAULT_INSPECT_LIMIT})",
    )
    inspect.add_argument(
        "--watch",
        action="store_true",
        help="a live view (queue depths, inputs in a run, owners, recent "
        "failures) refreshed in place; read-only, safe beside a running owner",
    )
    inspect.add_argument(
        "--interval",
        type=_seconds,
        default=2.0,
        metavar="SECONDS",
        help="seconds between refreshes of --watch (default 2)",
    )
    inspect.add_argument(
        "--iterations",
        type=_non_negative,
        default=0,
        metavar="N",
        help="stop --watch after N refreshes (default 0: until Ctrl-C)",
    )
    inspect.set_defaults(handler=cmd_inspect)
    audit = sub.add_parser(
        "audit",
        help="replay every stored history (a SQLite file or a PostgreSQL "
        "store) through the spec and check it",
    )
    audit.add_argument("path", help="a meerkat SQLite database, or a postgresql:// DSN")
    audit.add_argument(
        "--schema",
        help="the PostgreSQL store's schema (default: meerkat; a DSN only)",
    )
    audit.add_argument("--json", action="store_true", help="print JSON instead")
    audit.set_defaults(handler=cmd_audit)
    _add_worker(sub)
    for name, text in (
        ("verify", "validate and model-check spec/ (needs a checkout)"),
        ("diagrams", "render the lifecycle diagrams to SVG (needs a checkout)"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument(
            "--root", type=Path, default=Path("."), help="repository root (default: .)"
        )
        command.set_defaults(handler=_codegen(name))
    return parser


def _add_worker(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from meerkat_runtime.sessions import fleet
    from meerkat_runtime.store.leases import DEFAULT_LEASE_TTL
    from meerkat_runtime.worker import DEFAULT_EXECUTOR

    worker = sub.add_parser(
        "worker",
        help="run one fleet worker: claim runtimes with work, run them, "
        "release them on SIGTERM",
    )
    worker.add_argument(
        "target", help="a meerkat SQLite file, or a PostgreSQL DSN (URL or conninfo)"
    )
    worker.add_argument(
        "--schema", help="the PostgreSQL store's schema (default: meerkat; a DSN only)"
    )
    worker.add_argument(
        "--executor",
        default=DEFAULT_EXECUTOR,
        metavar="MODULE:FACTORY",
        help="callable(session_id) -> executor (default: the echo executor, "
        "which applies each run at once and answers its text back)",
    )
    worker.add_argument(
        "--lease-ttl",
        type=_positive,
        default=DEFAULT_LEASE_TTL,
        metavar="SECONDS",
        help="lifetime of this worker's leases: how soon others take over "
        f"if it dies (default {DEFAULT_LEASE_TTL:g})",
    )
    worker.add_argument(
        "--max-runtimes",
        type=_count_at_least_one,
        default=fleet.DEFAULT_MAX_RUNTIMES,
        metavar="N",
        help=f"runtimes held at once, at most (default {fleet.DEFAULT_MAX_RUNTIMES})",
    )
    worker.add_argument(
        "--idle-release",
        type=_non_negative_seconds,
        default=fleet.DEFAULT_IDLE_RELEASE,
        metavar="SECONDS",
        help="release a runtime without work after this long "
        f"(default {fleet.DEFAULT_IDLE_RELEASE:g})",
    )
    worker.add_argument(
        "--scan-interval",
        type=_positive,
        default=fleet.DEFAULT_SCAN_INTERVAL,
        metavar="SECONDS",
        help=f"between two looks for work (default {fleet.DEFAULT_SCAN_INTERVAL:g})",
    )
    worker.add_argument(
        "--drain",
        type=_non_negative_seconds,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM, wait up to this long for held work to finish first",
    )
    worker.add_argument(
        "--owner",
        type=_owner,
        help="this worker's owner id (default: host:pid:random)",
    )
    worker.add_argument(
        "--blobs",
        type=Path,
        help="shared image blob directory (default: beside a SQLite file; "
        "in memory for PostgreSQL)",
    )
    worker.add_argument("--quiet", action="store_true", help="log warnings only")
    worker.set_defaults(handler=cmd_worker)


def _count_at_least_one(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a count of 1 or more, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())

"""A throwaway PostgreSQL server for tests and benchmarks (PD-50).

``ThrowawayPostgres().start()`` runs ``initdb`` in a new temporary directory
and starts a server on a Unix socket in that directory only
(``listen_addresses=''``: nothing listens on the network), with ``fsync``
and data checksums on, so what it acknowledges is as durable as a real
server's. ``stop()`` removes it all.

PostgreSQL refuses to run as root, and CI runs as root: then every server
command runs as the unprivileged user ``nobody`` (``runuser``), and the
temporary directory is handed to that user. Clients connect over the
socket as the server's superuser (the user that ran ``initdb``).

The binaries are found on ``PATH`` or, as Debian installs them, in the
newest ``/usr/lib/postgresql/<version>/bin``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

__all__ = ["ThrowawayPostgres", "postgres_bin"]

UNPRIVILEGED_USER = "nobody"
_DEBIAN_ROOT = Path("/usr/lib/postgresql")


def postgres_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; a clear error when
    the server is not installed (``scripts/install-system-deps`` does)."""
    found = shutil.which("pg_ctl")
    if found is not None:
        return Path(found).resolve().parent
    versions = sorted(
        (p for p in _DEBIAN_ROOT.glob("*/bin") if (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        raise FileNotFoundError(
            "PostgreSQL's server binaries (pg_ctl, initdb) were not found on PATH "
            f"nor under {_DEBIAN_ROOT}/<version>/bin: install the Debian package "
            "`postgresql` (scripts/install-system-deps does)"
        )
    return versions[-1]


class ThrowawayPostgres:
    """One private server in a temporary directory; see the module notes."""

    def __init__(self, *, max_connections: int = 200) -> None:
        self.max_connections = max_connections
        self.bin = postgres_bin()
        self.root: Path | None = None
        self._as_root = os.geteuid() == 0

    @property
    def data(self) -> Path:
        return self._root() / "data"

    @property
    def user(self) -> str:
        if self._as_root:
            return UNPRIVILEGED_USER
        import getpass

        return getpass.getuser()

    @property
    def dsn(self) -> str:
        """A libpq connection string for the server's ``postgres`` database."""
        return f"host={self._root()} dbname=postgres user={self.user}"

    def start(self) -> ThrowawayPostgres:
        # tempfile's directory is private (0700); handed to the server's
        # user below. The socket lives here too: its path must stay short.
        self.root = Path(tempfile.mkdtemp(prefix="meerkat-pg-", dir=self._parent()))
        if self._as_root:
            os.chown(self.root, *_ids(UNPRIVILEGED_USER))
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                self.user,
                "--data-checksums",
                "--no-sync",  # the cluster is new; the server's own writes fsync
            )
            settings = {
                "listen_addresses": "''",
                "unix_socket_directories": f"'{self.root}'",
                "fsync": "on",
                "synchronous_commit": "on",
                "max_connections": str(self.max_connections),
                "shared_buffers": "64MB",
                "logging_collector": "off",
            }
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
            self._pg_ctl("start")
        except BaseException:
            self.stop()
            raise
        return self

    def restart_immediate(self) -> None:
        """``pg_ctl restart -m immediate``: every backend is killed without a
        checkpoint, as a crash would, and the server recovers from its WAL."""
        self._pg_ctl("restart", "-m", "immediate")

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- plumbing

    def _root(self) -> Path:
        if self.root is None:
            raise RuntimeError("the server is not started")
        return self.root

    def _parent(self) -> str | None:
        """The temporary directory, unless the server's user could not reach
        it (a private TMPDIR while running as root): then /tmp."""
        parent = Path(tempfile.gettempdir()).resolve()
        if not self._as_root or all(
            p.stat().st_mode & stat.S_IXOTH for p in (parent, *parent.parents)
        ):
            return None
        return "/tmp"

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        log = str(self._root() / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", *args, check=check)

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", UNPRIVILEGED_USER, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=self._root(), check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({done.returncode}): {done.stderr.strip()}"
                f"{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        log = self._root() / "server.log"
        if not log.exists():
            return ""
        return "\nserver log:\n" + "\n".join(log.read_text().splitlines()[-15:])


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid

"""A real, throw-away PostgreSQL 15 server for tests: loopback only, temporary directory, bounded startup.

Used by the ``postgres_server`` / ``postgres_url`` fixtures in ``conftest.py`` and usable from any other
harness code (benchmarks, end-to-end drivers)::

    server = PostgresServer()
    server.start()
    try:
        url = server.password_url(server.create_database("demo"))
    finally:
        server.stop()

PostgreSQL refuses to run as root. When this process is root, ``initdb`` and ``pg_ctl`` run as the
unprivileged ``postgres`` system user (the Debian package creates it) and the temporary directory is
handed to that user. Two roles exist: the superuser ``postgres`` (trust on loopback and the socket, for
set-up) and ``alphapulse`` with a random password (scram-sha-256, so password handling is really tested).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

PG_BIN_DIR = Path(os.environ.get("ALPHAPULSE_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"
PASSWORD_USER = "alphapulse"
_RUN_AS = "postgres"  # the system user the server runs as when we are root


class PostgresBinariesMissing(RuntimeError):
    """initdb / pg_ctl / postgres are not installed where expected."""


class PostgresStartError(RuntimeError):
    """The server did not come up; the message carries the tail of its log."""


def pg_binaries_present(bin_dir: Path = PG_BIN_DIR) -> bool:
    return all((bin_dir / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def end_on_sigterm() -> None:
    """Make a SIGTERM (a CI timeout, `kill`) end this process as Ctrl-C does, so its ``finally`` blocks and
    fixture finalizers stop the servers it started; by default a SIGTERM ends it at once and leaves them running."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (start() retries if it gets taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:<free port> only."""

    def __init__(self, bin_dir: Path | str = PG_BIN_DIR, startup_timeout: float = 30.0):
        self.bin_dir = Path(bin_dir)
        self.startup_timeout = startup_timeout
        self.password = "apw-" + secrets.token_hex(12)
        self.port: int | None = None
        self.base_dir: Path | None = None
        self._running = False
        self._as_root = os.geteuid() == 0
        self._user: pwd.struct_passwd | None = None

    # -- paths ---------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "server.log"

    @property
    def running(self) -> bool:
        return self._running

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        """Create the cluster on first call, then start the server; returns self. Bounded by startup_timeout."""
        if self._running:
            return self
        if not pg_binaries_present(self.bin_dir):
            raise PostgresBinariesMissing(
                f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in {self.bin_dir}: "
                "install postgresql-15 (apt-get install postgresql-15) or set ALPHAPULSE_PG_BIN"
            )
        deadline = time.monotonic() + self.startup_timeout
        try:
            if self.base_dir is None:
                self._init_cluster(deadline)
            self._start_server(deadline)
            if not (self.data_dir / ".alphapulse_roles").exists():
                self._create_roles(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Fast shutdown and delete the temporary directory. Safe to call twice and after a failed start."""
        try:
            self._stop_server()
        finally:
            if self.base_dir is not None:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self.base_dir = None
            self.port = None

    def restart(self) -> None:
        """Stop the server and start it again on the same data directory and port (fault injection)."""
        self.stop_server_only()
        self.start()

    def stop_server_only(self) -> None:
        """Stop the server but keep the data directory and port, so ``start`` brings the same cluster back."""
        self._stop_server()

    # -- URLs and databases --------------------------------------------------------------------------
    def url(self, dbname: str = "postgres", *, user: str = SUPERUSER, password: str | None = None) -> str:
        """A SQLAlchemy/psycopg URL for ``dbname``; the default user is the trusted superuser."""
        assert self.port is not None, "server not started"
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def password_url(self, dbname: str = "postgres") -> str:
        """URL for the password-authenticated role ``alphapulse`` (scram-sha-256)."""
        return self.url(dbname, user=PASSWORD_USER, password=self.password)

    def create_database(self, name: str, owner: str = PASSWORD_USER, template: str | None = None) -> str:
        """Create a database owned by ``owner`` (a copy of ``template`` if given, else empty); returns its name."""
        import psycopg
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
        if template is not None:  # PostgreSQL copies it file by file: no session may be connected to it
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            conn.execute(statement)
        return name

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AssertionError):
            return "<no server log>"

    # -- internals -----------------------------------------------------------------------------------
    def _conninfo(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname} connect_timeout=5"

    def _run(self, args: list[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess:
        kwargs: dict = {}
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"}
        if self._as_root:
            assert self._user is not None
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
            env["HOME"] = str(self.base_dir)
        proc = subprocess.run(
            args,
            cwd=self.base_dir,  # the server user must be able to read its working directory
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=max(timeout, 1.0),
            **kwargs,
        )
        if check and proc.returncode != 0:
            raise PostgresStartError(
                f"{Path(args[0]).name} failed with exit code {proc.returncode}:\n{proc.stdout}\n{proc.stderr}\n"
                f"server log:\n{self.log_tail()}"
            )
        return proc

    def _init_cluster(self, deadline: float) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="alphapulse-pg-"))
        self.socket_dir.mkdir()
        if self._as_root:
            try:
                self._user = pwd.getpwnam(_RUN_AS)
            except KeyError as exc:
                raise PostgresStartError(
                    f"running as root, and there is no {_RUN_AS!r} system user to run PostgreSQL as "
                    "(the postgresql-15 package creates it)"
                ) from exc
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
            timeout=deadline - time.monotonic(),
        )
        # Loopback only. The password role must authenticate with scram; everyone else is trusted.
        (self.data_dir / "pg_hba.conf").write_text(
            f"local all all trust\n"
            f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
            f"host all all 127.0.0.1/32 trust\n"
        )

    def _start_server(self, deadline: float) -> None:
        keep_port = self.port is not None  # a restart must come back where clients expect it
        for _attempt in range(5):  # a fresh free port can be taken between probing and binding
            if not keep_port:
                self.port = free_port()
            self._write_conf()
            proc = self._run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(max(int(deadline - time.monotonic()), 1)),
                    "start",
                ],
                timeout=deadline - time.monotonic() + 5,
                check=False,
            )
            if proc.returncode == 0:
                self._running = True
                return
            log = self.log_tail()
            port_taken = "could not bind" in log or "Address already in use" in log
            self._kill_leftover()
            if not port_taken or keep_port or time.monotonic() >= deadline:
                raise PostgresStartError(
                    f"PostgreSQL did not start on 127.0.0.1:{self.port} within {self.startup_timeout:.0f} s:\n"
                    f"{proc.stdout}\n{proc.stderr}\nserver log:\n{log}"
                )
        raise PostgresStartError(f"no free port found for PostgreSQL after 5 attempts:\n{self.log_tail()}")

    def _write_conf(self) -> None:
        # postgresql.auto.conf is read last, so these settings win over postgresql.conf.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",  # throw-away data: durability costs time and buys nothing
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            "shared_buffers": "32MB",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            "password_encryption": "'scram-sha-256'",
        }
        path = self.data_dir / "postgresql.auto.conf"
        path.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        if self._as_root:
            assert self._user is not None
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _create_roles(self, deadline: float) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(PASSWORD_USER), sql.Literal(self.password)
                )
            )
        (self.data_dir / ".alphapulse_roles").touch()

    def _stop_server(self) -> None:
        if self.base_dir is None or not self.data_dir.exists():
            self._running = False
            return
        if self._running or (self.data_dir / "postmaster.pid").exists():
            try:
                proc = self._run(
                    [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "20", "stop"],
                    timeout=25,
                    check=False,
                )
                if proc.returncode != 0:
                    self._kill_leftover()
            except subprocess.TimeoutExpired:
                self._kill_leftover()
        self._running = False

    def _kill_leftover(self) -> None:
        """SIGKILL the postmaster named in postmaster.pid, if it is still there (ours only, by pid)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError, AssertionError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        try:
            (self.data_dir / "postmaster.pid").unlink()
        except OSError:
            pass

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

"""Throw-away servers for tests and benchmarks, on 127.0.0.1 and a free port, each in its own process group.

- ``S3Server``: moto's standalone S3 server with one empty bucket (the shared store's object store);
- ``RedisServer``: Debian's ``redis-server`` (the Celery broker), persistence off, run as the current user.

Both are bounded at start (an error carries the tail of the server's log) and ``stop()`` signals only their own
process group, SIGKILL after a bound. Usable as context managers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from alphapulse_assets_tests.pg_harness import free_port

BIN_DIR = Path(sys.executable).parent
BUCKET = "alphapulse-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "alphapulse-test", "AWS_SECRET_ACCESS_KEY": "alphapulse-test-secret"}
REDIS_SERVER = os.environ.get("ALPHAPULSE_REDIS_SERVER", "/usr/bin/redis-server")


class _Server:
    name = "server"

    def __init__(self, startup_timeout: float = 60.0):
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.base_dir: Path | None = None
        self._proc: subprocess.Popen | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _after_start(self) -> None:
        pass

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / f"{self.name}.log"

    def start(self):
        self.base_dir = Path(tempfile.mkdtemp(prefix=f"alphapulse-{self.name}-"))
        self.port = free_port()
        with open(self.log_file, "wb") as log:
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self._env(),
            )
        try:
            deadline = time.monotonic() + self.startup_timeout
            while not self._ready():
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} did not start: {self.log_file.read_text(errors='replace')[-2000:]}"
                    )
                time.sleep(0.2)
            self._after_start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after 10 s; delete its directory. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(10)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class S3Server(_Server):
    """moto's S3 server with the bucket ``BUCKET``; ``endpoint`` is its http URL."""

    name = "moto"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        return [str(BIN_DIR / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]

    def _env(self) -> dict[str, str]:
        # Requests are recorded only between /moto-api/recorder/start- and stop-recording (test_shared_store's
        # s3_requests); the recording lives in the server's folder.
        return {**os.environ, "MOTO_RECORDER_FILEPATH": str(self.base_dir / "recording.jsonl")}

    def _ready(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2).close()
            return True
        except OSError:
            return False

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(
            endpoint_url=self.endpoint,
            key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def _after_start(self) -> None:
        self.filesystem().mkdir(BUCKET)

    def store_env(self, prefix: str) -> dict[str, str]:
        """The settings and credentials that put every store kind under s3://BUCKET/<prefix> on this server."""
        return {
            "ALPHAPULSE_STORE__URL": f"s3://{BUCKET}/{prefix}",
            "ALPHAPULSE_STORE__ENDPOINT_URL": self.endpoint,
            **CREDENTIALS,
        }


class RedisServer(_Server):
    """Debian's redis-server, in memory only (no RDB snapshots, no append-only file); ``url`` is db 0."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        if not Path(REDIS_SERVER).is_file():
            raise RuntimeError(f"{REDIS_SERVER} not found: install redis-server (apt-get install redis-server)")
        return [
            REDIS_SERVER,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.base_dir),
            "--protected-mode", "yes",
        ]  # fmt: skip

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

"""Host resource samples: a non-blocking sampler and the samples table in the platform database.

The sampler never sleeps. Rates (CPU %, network bytes/s) come from the difference between two counter
readings, and the previous reading is passed in by the caller (a sensor keeps it in its cursor, since a
sensor may run in a fresh process each tick). So the first sample has no CPU % and no network rates
(``None``): a missing value, which threshold rules ignore, rather than a made-up 0.

``psutil`` is injected (``ps=``) so tests can feed fixed readings. This module does not import Dagster.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from alphapulse_assets.platform_db import platform_engine, redact
from alphapulse_assets.recovery.errors import SystemResourceError, TransientError


@dataclass(frozen=True)
class Counters:
    """Monotonic counters read at ``at``; the next sample turns their differences into rates."""

    at: float
    cpu_busy: float
    cpu_total: float
    net_recv: int
    net_sent: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Counters | None:
        if not data:
            return None
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError):
            return None  # an old or damaged cursor: start over rather than fail the sensor


@dataclass(frozen=True)
class ResourceSample:
    at: float
    cpu_percent: float | None
    memory_percent: float | None
    disk_percent: dict[str, float] = field(default_factory=dict)  # mount point -> % used
    disk_free_bytes: dict[str, int] = field(default_factory=dict)
    net_recv_bytes_per_s: float | None = None
    net_sent_bytes_per_s: float | None = None
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    dagster_rss_bytes: int | None = None
    dagster_processes: int | None = None
    host: str = ""

    @property
    def disk_percent_max(self) -> float | None:
        return max(self.disk_percent.values()) if self.disk_percent else None

    def metrics(self) -> dict[str, float]:
        """Flat numeric values (what the UI plots); missing values are left out."""
        out: dict[str, float | int | None] = {
            "cpu_percent": self.cpu_percent,
            "memory_percent": self.memory_percent,
            "disk_percent": self.disk_percent_max,
            "net_recv_bytes_per_s": self.net_recv_bytes_per_s,
            "net_sent_bytes_per_s": self.net_sent_bytes_per_s,
            "load1": self.load1,
            "load5": self.load5,
            "load15": self.load15,
            "dagster_rss_mb": None if self.dagster_rss_bytes is None else self.dagster_rss_bytes / 2**20,
            "dagster_processes": self.dagster_processes,
        }
        for mount, pct in self.disk_percent.items():
            out[f"disk_percent {mount}"] = pct
        return {k: float(v) for k, v in out.items() if v is not None}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ResourceSample:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _cpu_counters(times: Any) -> tuple[float, float]:
    """(busy, total) seconds from ``psutil.cpu_times()``; guest time is already inside user time on Linux."""
    fields = times._asdict() if hasattr(times, "_asdict") else dict(times)
    total = sum(v for k, v in fields.items() if k not in ("guest", "guest_nice"))
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total - idle, total


def _rate(new: float, old: float, seconds: float) -> float | None:
    """A per-second rate; None when the counter went backwards (reboot, wrap) or no time passed."""
    if seconds <= 0 or new < old:
        return None
    return (new - old) / seconds


def _resolved(path: str | None) -> str | None:
    return os.path.realpath(path) if path else None


class ResourceSampler:
    """Reads CPU, memory, disk, network, load and the Dagster processes' memory without blocking."""

    def __init__(
        self,
        mount_points: Sequence[str] = ("/",),
        process_match: str = "dagster",
        *,
        ps: Any = None,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        instance_home: str | None = None,
    ):
        if ps is None:
            import psutil as ps
        self.ps = ps
        self.mount_points = tuple(mount_points)
        self.process_match = process_match
        #: Count only processes of this Dagster instance (their ``DAGSTER_HOME``), not every Dagster on the host.
        self.instance_home = _resolved(instance_home) if instance_home else None
        self.clock = clock
        self.host = host or socket.gethostname()

    def counters(self, now: float) -> Counters:
        busy, total = _cpu_counters(self.ps.cpu_times())
        net = self.ps.net_io_counters()
        return Counters(
            at=now, cpu_busy=busy, cpu_total=total, net_recv=int(net.bytes_recv), net_sent=int(net.bytes_sent)
        )

    def dagster_memory(self) -> tuple[int, int]:
        """(total RSS bytes, process count) of processes whose command line mentions ``process_match`` and,
        when ``instance_home`` is set, whose ``DAGSTER_HOME`` is that folder (webserver, daemon, code server
        and run workers of this instance inherit it; other instances on the host do not count)."""
        rss, count = 0, 0
        attrs = ["cmdline", "memory_info"] + (["environ"] if self.instance_home else [])
        for proc in self.ps.process_iter(attrs):
            info = proc.info
            cmdline = info.get("cmdline") or ()
            mem = info.get("memory_info")
            if mem is None or not any(self.process_match in part for part in cmdline):
                continue  # gone, not ours, or not readable (AccessDenied leaves the fields None)
            if self.instance_home and _resolved((info.get("environ") or {}).get("DAGSTER_HOME")) != self.instance_home:
                continue  # another instance's process, or one whose environment we may not read
            rss += int(mem.rss)
            count += 1
        return rss, count

    def sample(self, previous: Counters | None = None) -> tuple[ResourceSample, Counters]:
        """One sample at ``clock()``, with rates against ``previous``; also the counters for the next one."""
        now = self.clock()
        counters = self.counters(now)
        cpu = recv = sent = None
        if previous is not None:
            seconds = counters.at - previous.at
            d_total = counters.cpu_total - previous.cpu_total
            d_busy = counters.cpu_busy - previous.cpu_busy
            if d_total > 0 and d_busy >= 0:
                cpu = min(100.0, max(0.0, 100.0 * d_busy / d_total))
            recv = _rate(counters.net_recv, previous.net_recv, seconds)
            sent = _rate(counters.net_sent, previous.net_sent, seconds)
        disk_pct, disk_free = {}, {}
        for mount in self.mount_points:
            try:
                usage = self.ps.disk_usage(mount)
            except OSError:
                continue  # an unmounted path is reported by the health check, not here
            disk_pct[mount] = float(usage.percent)
            disk_free[mount] = int(usage.free)
        try:
            load1, load5, load15 = (float(v) for v in self.ps.getloadavg())
        except (AttributeError, OSError):
            load1 = load5 = load15 = None
        rss, procs = self.dagster_memory()
        sample = ResourceSample(
            at=now,
            cpu_percent=cpu,
            memory_percent=float(self.ps.virtual_memory().percent),
            disk_percent=disk_pct,
            disk_free_bytes=disk_free,
            net_recv_bytes_per_s=recv,
            net_sent_bytes_per_s=sent,
            load1=load1,
            load5=load5,
            load15=load15,
            dagster_rss_bytes=rss,
            dagster_processes=procs,
            host=self.host,
        )
        return sample, counters


# -- storage ---------------------------------------------------------------------------------------------

metadata = sa.MetaData()
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

samples_table = sa.Table(
    "alphapulse_resource_samples",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("cpu_percent", sa.Float),
    sa.Column("memory_percent", sa.Float),
    sa.Column("disk_percent", sa.Float),  # the fullest mount point
    sa.Column("net_recv_bytes_per_s", sa.Float),
    sa.Column("net_sent_bytes_per_s", sa.Float),
    sa.Column("load1", sa.Float),
    sa.Column("dagster_rss_bytes", sa.BigInteger),
    sa.Column("sample_json", sa.Text, nullable=False),  # the whole sample, per mount point included
)


class SampleStore:
    """Resource samples in the platform database, pruned to a retention window."""

    def __init__(self, url: str):
        self._where = f"alphapulse_resource_samples at {redact(url)}"
        self.engine = platform_engine(url)

    def add(self, sample: ResourceSample) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    samples_table.insert().values(
                        at=sample.at,
                        host=sample.host,
                        cpu_percent=sample.cpu_percent,
                        memory_percent=sample.memory_percent,
                        disk_percent=sample.disk_percent_max,
                        net_recv_bytes_per_s=sample.net_recv_bytes_per_s,
                        net_sent_bytes_per_s=sample.net_sent_bytes_per_s,
                        load1=sample.load1,
                        dagster_rss_bytes=sample.dagster_rss_bytes,
                        sample_json=json.dumps(sample.to_dict(), sort_keys=True),
                    )
                )
        except sa.exc.OperationalError as exc:
            if "disk" in str(exc.orig).lower() and "full" in str(exc.orig).lower():
                raise SystemResourceError(f"cannot store a resource sample: {exc.orig}", where=self._where) from exc
            raise TransientError(f"cannot store a resource sample: {exc.orig}", where=self._where) from exc

    def prune(self, before: float) -> int:
        """Delete samples older than ``before`` (epoch seconds); returns how many went."""
        with self.engine.begin() as conn:
            return conn.execute(samples_table.delete().where(samples_table.c.at < before)).rowcount or 0

    def latest(self) -> ResourceSample | None:
        q = (
            sa.select(samples_table.c.sample_json)
            .order_by(samples_table.c.at.desc(), samples_table.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            raw = conn.execute(q).scalar()
        return ResourceSample.from_dict(json.loads(raw)) if raw else None

    def since(self, after: float) -> list[ResourceSample]:
        q = (
            sa.select(samples_table.c.sample_json)
            .where(samples_table.c.at >= after)
            .order_by(samples_table.c.at, samples_table.c.id)
        )
        with self.engine.connect() as conn:
            return [ResourceSample.from_dict(json.loads(r)) for r in conn.execute(q).scalars()]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(samples_table)).scalar() or 0)


__all__ = ["Counters", "ResourceSample", "ResourceSampler", "SampleStore", "samples_table"]

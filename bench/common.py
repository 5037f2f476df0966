"""Shared helpers for the bench scripts: databases, the server subprocess, wrk, payloads, figures.

Nothing here asserts a timing: the scripts print what they measure.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from service.config import Settings, normalize_database_url

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
#: Generated data, server logs and profiles (git-ignored).
RESULTS = REPO / "bench" / "results"
DEFAULT_BENCH_URL = "postgresql://127.0.0.1:5432/tierline_bench"
#: The one shop of the seeded database (and of the intake and worker runs).
BENCH_SHOP = "bench-shop.myshopify.com"
API_VERSION = "2026-04"
RTO_STATES = ("rto_initiated", "rto_in_transit", "rto_delivered")


def log(message: str) -> None:
    """Progress on stdout, flushed (the scripts are often piped through tee)."""
    print(message, flush=True)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``finally`` blocks stop the subprocesses we started."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# --- databases ------------------------------------------------------------------------------


def bench_url() -> str:
    """``BENCH_DATABASE_URL`` or the default seeded database."""
    return os.environ.get("BENCH_DATABASE_URL", DEFAULT_BENCH_URL)


def libpq_url(url: str) -> str:
    """A URL psycopg.connect accepts (no SQLAlchemy driver suffix)."""
    parsed = make_url(normalize_database_url(url))
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    """The same server, another database."""
    parsed = make_url(normalize_database_url(url))
    return parsed.set(drivername="postgresql", database=name).render_as_string(hide_password=False)


def database_name(url: str) -> str:
    name = make_url(normalize_database_url(url)).database
    if not name:
        raise SystemExit(f"no database name in {url!r}")
    return name


def create_database(url: str, *, drop: bool) -> bool:
    """Create the database of ``url`` (dropping it first with ``drop``). True when it was created."""
    name = database_name(url)
    with psycopg.connect(libpq_url(with_database(url, "postgres")), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        if exists and drop:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            exists = False
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    return False


def settings_for(url: str) -> Settings:
    """Service settings pointing at ``url`` (secrets are irrelevant for direct domain calls)."""
    return Settings.model_validate({"DATABASE_URL": url})


def migrate(url: str) -> str | None:
    """``service.migrate.upgrade`` to head; returns the revision."""
    from service.migrate import upgrade

    return asyncio.run(upgrade(settings_for(url)))


def shop_id_for(url: str, domain: str = BENCH_SHOP) -> int:
    """The shop's id, creating its row through the service's own function."""
    from service.db import make_engine, make_sessionmaker, session_scope
    from service.domain.shops import get_or_create_shop_id

    async def run() -> int:
        engine = make_engine(settings_for(url))
        try:
            async with session_scope(make_sessionmaker(engine)) as session:
                return await get_or_create_shop_id(session, domain)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def postgres_version(url: str) -> str:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


# --- figures --------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))]


@dataclass(frozen=True, slots=True)
class Latency:
    """Latencies in seconds: count, p50, p99, mean, max."""

    count: int
    p50: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Latency:
        if not values:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        return cls(
            len(values),
            percentile(values, 0.5),
            percentile(values, 0.99),
            sum(values) / len(values),
            max(values),
        )

    def describe(self) -> str:
        return (
            f"p50 {ms(self.p50)} ms  p99 {ms(self.p99)} ms  mean {ms(self.mean)} ms  "
            f"max {ms(self.max)} ms  (n={self.count})"
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "n/a"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |"]
    lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells[1:]
    ]
    return "\n".join(lines)


def machine_summary() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return f"{os.cpu_count()} CPUs ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB RAM"


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


def cpu_busy(interval: float = 1.0) -> float:
    """Share of all cores busy during ``interval`` (0..1), from /proc/stat."""
    total0, idle0 = _cpu_times()
    time.sleep(interval)
    total1, idle1 = _cpu_times()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait (up to ``max_wait`` s) until the machine's CPUs are mostly idle for 3 s in a row.

    Other processes on the machine (test suites, builds) distort every figure here; the scripts
    print the background load they started with. Returns the last busy share measured.
    """
    started = time.monotonic()
    quiet = 0
    said = -1e9
    busy = cpu_busy(1.0)
    while True:
        quiet = quiet + 1 if busy < threshold else 0
        now = time.monotonic()
        if quiet >= 3 or now - started >= max_wait:
            break
        if quiet == 0 and now - said >= 30:
            said = now
            log(
                f"  machine busy ({busy:.0%} of all CPUs in use by other processes); "
                f"waiting up to {max_wait - (now - started):.0f} s more for it to calm down ..."
            )
        busy = cpu_busy(1.0)
    return busy


def background_note(max_wait: float) -> str:
    """Wait for a quiet machine (see :func:`wait_for_quiet`) and describe the background load."""
    busy = wait_for_quiet(max_wait) if max_wait > 0 else cpu_busy(1.0)
    load = Path("/proc/loadavg").read_text().split()[:3]
    return f"background CPU use before the run: {busy:.0%} of all CPUs; load average {' '.join(load)}"


# --- processes ------------------------------------------------------------------------------


def proc_status_kb(pid: int, field: str = "VmHWM") -> int | None:
    """A ``/proc/<pid>/status`` memory field in KiB (VmHWM: peak resident set size)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class PeakRssPoller:
    """Polls VmHWM of a process until it exits (VmHWM only grows, so the last read is the peak
    up to ~``interval`` before exit)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = proc_status_kb(self.pid)
            if value is None:
                return
            self.peak_kb = max(self.peak_kb, value)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRssPoller:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def child_pids(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def free_port(preferred: int) -> int:
    """``preferred`` or the next free port above it on 127.0.0.1 (never 8000)."""
    for port in range(preferred, preferred + 100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"no free port in {preferred}..{preferred + 99}")


@dataclass(frozen=True, slots=True)
class Secrets:
    api_key: str
    api_secret: str
    encryption_key: str

    @classmethod
    def random(cls) -> Secrets:
        return cls(
            api_key="bench" + secrets.token_hex(12),
            api_secret="bench" + secrets.token_hex(24),
            encryption_key="bench" + secrets.token_urlsafe(32),
        )


def production_env(database_url: str, secret: Secrets, **extra: str) -> dict[str, str]:
    """The environment of a production ``tierline`` process (explicit, non-placeholder secrets)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TIERLINE_", "SHOPIFY_")) and k not in ("DATABASE_URL", "HOST", "PORT", "SCOPES")
    }
    env.update(
        TIERLINE_ENV="production",
        DATABASE_URL=database_url,
        SHOPIFY_API_KEY=secret.api_key,
        SHOPIFY_API_SECRET=secret.api_secret,
        TIERLINE_ENCRYPTION_KEY=secret.encryption_key,
        SHOPIFY_APP_URL="https://bench.example.com",
        TIERLINE_WORKER="off",
    )
    env.update(extra)
    return env


class Server:
    """``tierline serve`` as a subprocess on 127.0.0.1:<port>; stopped (SIGTERM, then kill) on exit."""

    def __init__(self, env: Mapping[str, str], port: int, log_path: Path) -> None:
        self.env = dict(env)
        self.port = port
        self.log_path = log_path
        self.base = f"http://127.0.0.1:{port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.peak_rss_kb = 0

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc.pid

    def start(self, timeout: float = 40.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [str(BIN / "tierline"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"tierline serve exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"tierline serve did not answer /health within {timeout:.0f} s:\n{self.log_tail()}"
        )

    def vmhwm_kb(self) -> int:
        """Peak RSS of the serving process (the largest, with TIERLINE_WEB_PROCESSES above 1)."""
        value = max(proc_status_kb(pid) or 0 for pid in self.pids())
        self.peak_rss_kb = max(self.peak_rss_kb, value)
        return self.peak_rss_kb

    def pids(self) -> list[int]:
        """The process and its children (the serving processes when it forks several)."""
        return [self.pid, *child_pids(self.pid)]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            self.peak_rss_kb = max(self.peak_rss_kb, proc_status_kb(proc.pid) or 0)
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()


def http_json(
    method: str, url: str, *, body: object = None, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    """One request to the local server (status, decoded JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status, raw = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, raw = int(exc.code), exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


# --- wrk ------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of wrk, installing it with apt-get when missing (root only)."""
    found = shutil.which("wrk")
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk not found: installing it with apt-get ...")
        subprocess.run(["apt-get", "update", "-qq"], check=False, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, timeout=300)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("wrk is required (Debian: apt-get install -y wrk; `make bench` installs it)")


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What the bench Lua scripts' ``done()`` reports (times in seconds)."""

    connections: int
    requests: int
    duration: float
    non200: int
    socket_errors: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    @property
    def rate(self) -> float:
        return self.requests / self.duration if self.duration > 0 else 0.0

    @property
    def ok_rate(self) -> float:
        return (self.requests - self.non200) / self.duration if self.duration > 0 else 0.0


def run_wrk(
    url: str,
    script: Path,
    *,
    connections: int,
    duration_s: int,
    script_args: Sequence[str] = (),
    threads: int | None = None,
    timeout_s: int = 10,
) -> WrkResult:
    """Run wrk with one of the bench Lua scripts (which print a ``BENCH_JSON`` line in ``done``)."""
    wrk = ensure_wrk()
    threads = threads or min(connections, 2)
    command = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration_s}s",
        "--timeout",
        f"{timeout_s}s",
        "-s",
        str(script),
        url,
        "--",
        *script_args,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    for line in completed.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            return WrkResult(
                connections=connections,
                requests=int(data["requests"]),
                duration=float(data["duration_us"]) / 1e6,
                non200=int(data["non200"]),
                socket_errors=int(data["connect"])
                + int(data["read"])
                + int(data["write"])
                + int(data["timeout"]),
                p50=float(data["p50_us"]) / 1e6,
                p90=float(data["p90_us"]) / 1e6,
                p99=float(data["p99_us"]) / 1e6,
                max=float(data["max_us"]) / 1e6,
                mean=float(data["mean_us"]) / 1e6,
            )
    raise RuntimeError(
        f"wrk gave no BENCH_JSON line (exit {completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
    )


# --- realistic payloads (Shopify REST shapes, API 2026-04) -----------------------------------

SHOP_TZ = timezone(timedelta(hours=5, minutes=30))
CURRENCY = "INR"

# (product id, variant id, title, variant title, vendor, sku, grams, price in paise)
_P = 8_100_000_000_000  # product ids
_V = 8_200_000_000_000  # variant ids
CATALOGUE: tuple[tuple[int, int, str, str | None, str, str, int, int], ...] = (
    (_P + 1, _V + 1, "Cotton Kurta", "Red / M", "Weavers Co", "KURTA-RED-M", 350, 79_900),
    (_P + 1, _V + 2, "Cotton Kurta", "Indigo / L", "Weavers Co", "KURTA-INDIGO-L", 350, 84_900),
    (_P + 2, _V + 3, "Linen Shirt", "White / M", "Loom & Thread", "LINEN-WHITE-M", 300, 129_900),
    (_P + 2, _V + 4, "Linen Shirt", "Sky Blue / XL", "Loom & Thread", "LINEN-SKY-XL", 300, 134_900),
    (_P + 3, _V + 5, "Banarasi Silk Saree", "Maroon", "Banaras Looms", "SAREE-MAROON", 800, 449_900),
    (_P + 4, _V + 6, "Block Print Dupatta", "Red", "Jaipur Prints", "DUPATTA-RED", 200, 54_900),
    (_P + 5, _V + 7, "Kolhapuri Chappal", "Tan / 8", "Kolhapur Crafts", "CHAPPAL-TAN-8", 600, 99_900),
    (_P + 6, _V + 8, "Masala Chai Gift Box", "500 g", "Assam Leaf", "CHAI-500G", 500, 79_900),
    (_P + 7, _V + 9, "Brass Diya Set", None, "Moradabad Metals", "DIYA", 900, 69_900),
)
FIRST_NAMES = ("Aarav", "Ananya", "Vivaan", "Diya", "Aditya", "Kavya", "Ishaan", "Meera", "Rohan", "Priya")
LAST_NAMES = ("Sharma", "Iyer", "Reddy", "Patel", "Nair", "Gupta", "Singh", "Khan", "Das", "Menon", "Rao")
CITIES = (
    ("Mumbai", "Maharashtra", "MH", "4000"),
    ("Bengaluru", "Karnataka", "KA", "5600"),
    ("New Delhi", "Delhi", "DL", "1100"),
    ("Chennai", "Tamil Nadu", "TN", "6000"),
    ("Jaipur", "Rajasthan", "RJ", "3020"),
    ("Kochi", "Kerala", "KL", "6820"),
)


def shop_time(moment: datetime) -> str:
    """ISO 8601 with the shop's offset, as Shopify writes payload times."""
    return moment.astimezone(SHOP_TZ).isoformat(timespec="seconds")


def utc_header(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rupees(paise: int) -> str:
    return f"{paise // 100}.{paise % 100:02d}"


def money_set(paise: int) -> dict[str, dict[str, str]]:
    amount = {"amount": rupees(paise), "currency_code": CURRENCY}
    return {"shop_money": amount, "presentment_money": dict(amount)}


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    first_name: str
    last_name: str
    email: str
    phone: str
    city: tuple[str, str, str, str]
    street: str


def make_person(rng: random.Random, customer_id: int) -> Person:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return Person(
        id=customer_id,
        first_name=first,
        last_name=last,
        email=f"{first}.{last}.{customer_id % 1_000_000}@example.com".lower(),
        phone=f"+91{rng.choice('6789')}{rng.randint(0, 999_999_999):09d}",
        city=rng.choice(CITIES),
        street=f"{rng.randint(1, 220)} MG Road",
    )


def address_payload(person: Person) -> dict[str, Any]:
    city, province, code, pin = person.city
    return {
        "first_name": person.first_name,
        "address1": person.street,
        "phone": person.phone,
        "city": city,
        "zip": f"{pin}{person.id % 97:02d}",
        "province": province,
        "country": "India",
        "last_name": person.last_name,
        "address2": None,
        "company": None,
        "latitude": None,
        "longitude": None,
        "name": f"{person.first_name} {person.last_name}",
        "country_code": "IN",
        "province_code": code,
    }


def customer_object(person: Person) -> dict[str, Any]:
    """The ``customer`` object embedded in an order payload."""
    address = address_payload(person) | {"id": person.id + 1, "customer_id": person.id, "default": True}
    return {
        "id": person.id,
        "created_at": None,
        "updated_at": None,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "state": "disabled",
        "note": None,
        "verified_email": True,
        "multipass_identifier": None,
        "tax_exempt": False,
        "email": person.email,
        "phone": person.phone,
        "currency": CURRENCY,
        "tax_exemptions": [],
        "admin_graphql_api_id": f"gid://shopify/Customer/{person.id}",
        "default_address": address,
    }


def line_payload(
    line_id: int, item: tuple[int, int, str, str | None, str, str, int, int], quantity: int
) -> dict[str, Any]:
    product_id, variant_id, title, variant_title, vendor, sku, grams, price = item
    return {
        "id": line_id,
        "admin_graphql_api_id": f"gid://shopify/LineItem/{line_id}",
        "current_quantity": quantity,
        "fulfillable_quantity": quantity,
        "fulfillment_service": "manual",
        "fulfillment_status": None,
        "gift_card": False,
        "grams": grams,
        "name": title if variant_title is None else f"{title} - {variant_title}",
        "price": rupees(price),
        "price_set": money_set(price),
        "product_exists": True,
        "product_id": product_id,
        "properties": [],
        "quantity": quantity,
        "requires_shipping": True,
        "sku": sku,
        "taxable": True,
        "title": title,
        "total_discount": "0.00",
        "total_discount_set": money_set(0),
        "variant_id": variant_id,
        "variant_inventory_management": "shopify",
        "variant_title": variant_title,
        "vendor": vendor,
        "tax_lines": [],
        "duties": [],
        "discount_allocations": [],
    }


def order_payload(
    rng: random.Random,
    *,
    order_id: int,
    number: int,
    person: Person,
    created: datetime,
    first_line_id: int,
    lines: int = 3,
    cod: bool = False,
) -> dict[str, Any]:
    """An ``orders/create`` body in Shopify's REST Order shape with ``lines`` line items."""
    items = [rng.choice(CATALOGUE) for _ in range(lines)]
    quantities = [rng.choice((1, 1, 1, 2)) for _ in range(lines)]
    line_total = sum(item[7] * q for item, q in zip(items, quantities, strict=True))
    shipping = 0 if line_total >= 99_900 else 7_900
    total = line_total + shipping
    tax = round(line_total * 12 / 112)
    gateway = "Cash on Delivery (COD)" if cod else rng.choice(("shopify_payments", "razorpay"))
    address = address_payload(person)
    token = f"{rng.getrandbits(128):032x}"
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "browser_ip": f"203.0.113.{rng.randint(1, 254)}",
        "buyer_accepts_marketing": False,
        "cancel_reason": None,
        "cancelled_at": None,
        "closed_at": None,
        "confirmation_number": f"{rng.getrandbits(40):010X}"[:9],
        "confirmed": True,
        "contact_email": person.email,
        "created_at": shop_time(created),
        "currency": CURRENCY,
        "current_subtotal_price": rupees(line_total),
        "current_subtotal_price_set": money_set(line_total),
        "current_total_discounts": "0.00",
        "current_total_discounts_set": money_set(0),
        "current_total_price": rupees(total),
        "current_total_price_set": money_set(total),
        "current_total_tax": rupees(tax),
        "current_total_tax_set": money_set(tax),
        "customer_locale": "en-IN",
        "discount_codes": [],
        "email": person.email,
        "estimated_taxes": False,
        "financial_status": "pending" if cod else "paid",
        "fulfillment_status": None,
        "name": f"#{number}",
        "note": None,
        "note_attributes": [],
        "number": number - 1000,
        "order_number": number,
        "order_status_url": f"https://{BENCH_SHOP}/orders/{token}/authenticate?key={token[:16]}",
        "payment_gateway_names": [gateway],
        "phone": None,
        "presentment_currency": CURRENCY,
        "processed_at": shop_time(created),
        "source_name": "web",
        "subtotal_price": rupees(line_total),
        "subtotal_price_set": money_set(line_total),
        "tags": "cod-verified" if cod and rng.random() < 0.3 else "",
        "tax_exempt": False,
        "tax_lines": [{"price": rupees(tax), "rate": 0.12, "title": "IGST", "price_set": money_set(tax)}],
        "taxes_included": True,
        "test": False,
        "token": token,
        "total_discounts": "0.00",
        "total_discounts_set": money_set(0),
        "total_line_items_price": rupees(line_total),
        "total_line_items_price_set": money_set(line_total),
        "total_outstanding": rupees(total) if cod else "0.00",
        "total_price": rupees(total),
        "total_price_set": money_set(total),
        "total_shipping_price_set": money_set(shipping),
        "total_tax": rupees(tax),
        "total_tax_set": money_set(tax),
        "total_tip_received": "0.00",
        "total_weight": sum(item[6] * q for item, q in zip(items, quantities, strict=True)),
        "updated_at": shop_time(created),
        "user_id": None,
        "billing_address": address,
        "customer": customer_object(person),
        "discount_applications": [],
        "fulfillments": [],
        "line_items": [
            line_payload(first_line_id + i, item, q)
            for i, (item, q) in enumerate(zip(items, quantities, strict=True))
        ],
        "payment_terms": None,
        "refunds": [],
        "shipping_address": dict(address),
        "shipping_lines": [
            {
                "id": order_id + 7,
                "carrier_identifier": None,
                "code": "Standard",
                "discounted_price": rupees(shipping),
                "discounted_price_set": money_set(shipping),
                "price": rupees(shipping),
                "price_set": money_set(shipping),
                "source": "shopify",
                "title": "Standard Shipping",
                "tax_lines": [],
                "discount_allocations": [],
            }
        ],
        "returns": [],
    }


def fulfillment_payload(
    fulfillment_id: int, order_id: int, created: datetime, shipment_status: str | None
) -> dict[str, Any]:
    """A ``fulfillments/create`` body."""
    return {
        "id": fulfillment_id,
        "order_id": order_id,
        "status": "success",
        "created_at": shop_time(created),
        "updated_at": shop_time(created),
        "service": "manual",
        "tracking_company": "Delhivery",
        "tracking_number": f"DL{fulfillment_id}",
        "tracking_numbers": [f"DL{fulfillment_id}"],
        "tracking_url": f"https://www.delhivery.com/track/package/DL{fulfillment_id}",
        "shipment_status": shipment_status,
        "location_id": 7_300_000_000_001,
        "name": f"#{order_id % 100_000}.1",
        "admin_graphql_api_id": f"gid://shopify/Fulfillment/{fulfillment_id}",
        "line_items": [],
    }


def fulfillment_event_payload(
    event_id: int, fulfillment_id: int, order_id: int, status: str, happened: datetime
) -> dict[str, Any]:
    """A ``fulfillment_events/create`` body."""
    return {
        "id": event_id,
        "fulfillment_id": fulfillment_id,
        "order_id": order_id,
        "status": status,
        "message": f"Shipment is {status}",
        "happened_at": shop_time(happened),
        "created_at": shop_time(happened),
        "updated_at": shop_time(happened),
        "estimated_delivery_at": None,
        "city": "Mumbai",
        "province": "Maharashtra",
        "country": "IN",
        "zip": "400001",
        "address1": None,
        "latitude": None,
        "longitude": None,
        "shop_id": 7_400_000_000_001,
        "admin_graphql_api_id": f"gid://shopify/FulfillmentEvent/{event_id}",
    }


def body_bytes(payload: object) -> bytes:
    """Compact JSON, as Shopify sends it (no newline or tab outside strings)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def python_version() -> str:
    return sys.version.split()[0]


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- profiles -------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PROJECT_CODE = ("service/", "webhooks/", "shopify_client/")
#: Leaf frames of an event loop waiting for I/O (py-spy does not always flag them idle).
_WAITING = ("select (selectors.py)", "poll (selectors.py)")


def py_spy_path() -> str | None:
    return shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")


def short_frame(frame: str) -> str:
    """``func (path:line)`` → ``func (path)``, without the line and the site-packages prefix."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3.11/", str(REPO) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def summarize_pyspy(raw: Path, rate: int, wall: float, *, top: int = 20) -> str:
    """Markdown summary of py-spy ``--format raw`` output: own and inclusive shares of busy samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = waiting = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short_frame(f) for f in stack.split(";")]
        total += count
        if any(frames[-1].endswith(w) for w in _WAITING):
            waiting += count
            continue
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    busy = max(1, total - waiting)
    roots = {name for name, n in inclusive.items() if n > 0.9 * busy}

    def share(n: int) -> str:
        return f"{100 * n / busy:.1f}"

    lines = [
        f"py-spy at {rate} Hz over {wall:.1f} s: {total:,} samples, {waiting:,} of them in the event loop's "
        f"select (waiting for I/O), {busy:,} busy = {busy / rate:.1f} s of Python CPU "
        f"({busy / rate / wall:.0%} of wall time). Shares below are of the busy samples.",
        "",
        markdown_table(["function (own time)", "own %"], [[n, share(c)] for n, c in own.most_common(top)]),
        "",
        markdown_table(
            ["project function (inclusive)", "incl. %"],
            [
                [n, share(c)]
                for n, c in inclusive.most_common()
                if any(p in n for p in PROJECT_CODE) and n not in roots
            ][:top],
        ),
        "",
        markdown_table(
            ["library function (inclusive)", "incl. %"],
            [
                [n, share(c)]
                for n, c in inclusive.most_common()
                if not any(p in n for p in PROJECT_CODE) and n not in roots and "<module>" not in n
            ][:top],
        ),
    ]
    return "\n".join(lines)


class PySpyAttach:
    """``py-spy record`` attached to a running process for ``seconds`` (raw format)."""

    def __init__(self, pid: int, seconds: int, output: Path, rate: int = 250) -> None:
        self.rate = rate
        self.output = output
        self.started = 0.0
        self.wall = 0.0
        path = py_spy_path()
        self._proc: subprocess.Popen[bytes] | None = None
        if path is None:
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        self._proc = subprocess.Popen(
            [
                *(path, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate)),
                *("--format", "raw", "--nonblocking", "--output", str(output)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    @property
    def available(self) -> bool:
        return self._proc is not None

    def finish(self) -> str | None:
        """Wait for py-spy and return the summary (None without py-spy or on failure)."""
        if self._proc is None:
            return None
        try:
            _, err = self._proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            return None
        self.wall = time.perf_counter() - self.started
        if self._proc.returncode != 0 or not self.output.exists():
            log(f"  py-spy failed: {err.decode(errors='replace')[-500:]}")
            return None
        return summarize_pyspy(self.output, self.rate, self.wall)


# --- CPU accounting (robust to other load on the machine) -----------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_sched(pid: int) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds waiting in the run queue) of a process, all threads, from
    /proc/<pid>/task/*/schedstat (nanoseconds); falls back to /proc/<pid>/stat (10 ms ticks)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        on_cpu = waiting = 0
        for task in tasks:
            fields = (task / "schedstat").read_text().split()
            on_cpu += int(fields[0])
            waiting += int(fields[1])
        return on_cpu / 1e9, waiting / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, 0.0


def proc_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of a process (all threads)."""
    sched = proc_sched(pid)
    return None if sched is None else sched[0]


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """CPU seconds used during a measured interval."""

    process: float  # the measured processes (server, worker, or this process)
    postgres: float  # PostgreSQL backends connected to the measured database
    wall: float
    process_wait: float = 0.0  # time the measured processes were runnable but waited for a CPU

    def per(self, count: int) -> tuple[float, float]:
        """(process, postgres) CPU seconds per operation."""
        return (self.process / count, self.postgres / count) if count else (0.0, 0.0)


class CpuMeter:
    """CPU used by some processes and by the PostgreSQL backends of one database, polled every
    ``interval`` s (a backend that exits between two polls loses at most one interval of CPU).

    Wall-clock figures on a shared machine depend on what else runs; CPU per operation does much
    less, so the scripts print both.
    """

    def __init__(self, url: str, pids: Sequence[int] = (), interval: float = 0.1) -> None:
        self._admin = libpq_url(with_database(url, "postgres"))
        self._database = database_name(url)
        self._interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._wait_first: dict[int, float] = {}
        self._wait_last: dict[int, float] = {}
        self._backend: set[int] = set()
        self._tracked: set[int] = set(pids)
        self._baseline_done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.usage = CpuUsage(0.0, 0.0, 0.0)

    def add_pid(self, pid: int, *, from_zero: bool = True) -> None:
        """Track a process started after the meter (its CPU counts from its start)."""
        with self._lock:
            self._tracked.add(pid)
            if from_zero:
                self._first[pid] = 0.0
                self._wait_first[pid] = 0.0

    def _poll(self, conn: psycopg.Connection) -> None:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
            (self._database,),
        ).fetchall()
        backends = {int(r[0]) for r in rows}
        with self._lock:
            for pid in backends - self._backend:
                # Backends that exist at the first poll count from then; newer ones from their start.
                self._first.setdefault(pid, 0.0 if self._baseline_done else proc_cpu_seconds(pid) or 0.0)
            self._backend |= backends
            for pid in self._tracked | backends:
                sched = proc_sched(pid)
                if sched is None:
                    continue
                self._first.setdefault(pid, sched[0])
                self._last[pid] = sched[0]
                self._wait_first.setdefault(pid, sched[1])
                self._wait_last[pid] = sched[1]
            self._baseline_done = True

    def _run(self) -> None:
        with psycopg.connect(self._admin, autocommit=True) as conn:
            self._poll(conn)
            self._ready.set()
            while not self._stop.wait(self._interval):
                self._poll(conn)
            self._poll(conn)

    def __enter__(self) -> CpuMeter:
        self._thread.start()
        self._ready.wait(timeout=10)
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> CpuUsage:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=10)
            self.usage = self._usage(time.perf_counter() - self._started)
        return self.usage

    def _usage(self, wall: float) -> CpuUsage:
        with self._lock:

            def spent(pids: set[int]) -> float:
                return sum(self._last.get(p, 0.0) - self._first.get(p, 0.0) for p in pids if p in self._last)

            wait = sum(
                self._wait_last.get(p, 0.0) - self._wait_first.get(p, 0.0)
                for p in self._tracked
                if p in self._wait_last
            )
            return CpuUsage(spent(self._tracked), spent(self._backend - self._tracked), wall, wait)


def children_cpu_seconds() -> float:
    """CPU seconds of this process's waited-for children (wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu_seconds() -> float:
    """CPU seconds of this process, all threads."""
    return time.process_time()


# --- pgbench ----------------------------------------------------------------------------------


def pgbench_path() -> str | None:
    """PostgreSQL's own load generator: on PATH, or in a server's bin directory (Debian keeps
    it in /usr/lib/postgresql/<major>/bin when only the server package is installed)."""
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)
    return str(candidates[0]) if candidates else None


def ensure_pgbench() -> str:
    """The path of pgbench, installing PostgreSQL's client tools with apt-get when missing."""
    found = pgbench_path()
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log("pgbench not found: installing postgresql-client with apt-get ...")
        subprocess.run(["apt-get", "update", "-qq"], check=False, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql-client"], check=False, timeout=300)
        found = pgbench_path()
        if found:
            return found
    raise SystemExit(
        "pgbench is required (Debian: apt-get install -y postgresql-client; `make bench` installs it)"
    )


@dataclass(frozen=True, slots=True)
class PgbenchResult:
    clients: int
    transactions: int
    failed: int
    duration: float
    latency: Latency

    @property
    def rate(self) -> float:
        return self.transactions / self.duration if self.duration > 0 else 0.0


def run_pgbench(
    url: str,
    script: Path,
    *,
    clients: int,
    duration_s: float,
    variables: Mapping[str, str],
    log_dir: Path,
) -> PgbenchResult:
    """pgbench with a custom script (prepared statements, ``clients`` connections, up to two
    threads), every transaction logged so that percentiles come from the same latencies as the
    rate. Returns transactions per second (without connection time) and the latency."""
    pgbench = ensure_pgbench()
    log_dir.mkdir(parents=True, exist_ok=True)
    prefix = log_dir / f"pgbench_c{clients}"
    for old in log_dir.glob(f"{prefix.name}.*"):
        old.unlink()
    command = [
        pgbench,
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={clients}",
        f"--jobs={min(clients, 2)}",
        f"--time={max(1, round(duration_s))}",
        f"--file={script}",
        "--log",
        f"--log-prefix={prefix}",
    ]
    for name, value in variables.items():
        command.append(f"--define={name}={value}")
    command.append(libpq_url(url))
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 120, check=False, cwd=log_dir
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"pgbench exited with {completed.returncode}:\n{completed.stdout}\n{completed.stderr}"
        )
    latencies: list[float] = []
    for path in log_dir.glob(f"{prefix.name}.*"):
        with path.open() as lines:
            for line in lines:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1e6)
    tps = failed = 0.0
    processed = 0
    for line in completed.stdout.splitlines():
        text = line.strip()
        if text.startswith("tps =") and "without initial connection time" in text:
            tps = float(text.split("=", 1)[1].split()[0])
        elif text.startswith("number of transactions actually processed:"):
            processed = int(text.split(":", 1)[1].split("/")[0].strip())
        elif text.startswith("number of failed transactions:"):
            failed = float(text.split(":", 1)[1].split()[0])
    if not tps or not processed:
        raise RuntimeError(f"pgbench printed no rate:\n{completed.stdout}\n{completed.stderr}")
    return PgbenchResult(clients, processed, int(failed), processed / tps, Latency.of(latencies))

"""Soak harness: the daemon on a saturated 500 kbit/s simulated bus with faults, for minutes.

Two phases, each a fresh daemon: ``steady`` (the bus filled by the simulator's one-id
filler) and ``random-ids`` (filled by random 29-bit identifiers instead, the flood that
grew the daemon by 112 MB a minute before its per-id structures were capped, issue 13).
Each runs :mod:`soak.child` (``candiag run`` plus a sent-frame count) as a subprocess,
scrapes ``/metrics`` every second, samples ``/proc/PID`` (VmRSS, tasks, fds)
and counts the systemd watchdog pings it receives on its own ``NOTIFY_SOCKET``
(``WATCHDOG_USEC=2000000``).  At the end the child stops its simulator, and
the harness checks, printing a table and exiting 1 if any check fails:

* frames: sum of ``candiag_can_frames_total{bus="sim0"}`` over kinds, scraped
  after the simulator stopped and the loop drained, equals the simulator's
  ``frames_sent`` (every frame python-can's ``send`` accepted);
* every scrape answered 200 with ``candiag_can_frames_total`` in it;
* RSS growth after warm-up < 5 MB (median of the last 10 samples minus the median
  of the first 10 after warm-up, 5 each in short runs); threads and fds do not
  grow (same windows, max of the late window vs max of the early one).  The random-id
  phase's warm-up lasts at least ``RANDOM_IDS_WARMUP_S``: its bounded structures are
  full only after the first id epoch closes (a minute: 3 x 4096 ids of statistics);
* no gap between watchdog pings (from READY=1 to the end) longer than 2 s;
* SIGTERM ends the daemon with exit code 0 within 5 s.

We wrote our own instead of using a load-test tool because the criteria are
about this one process's /proc and its notify socket.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

WATCHDOG_USEC = 2_000_000
RSS_LIMIT_KB = 5 * 1024
BUS = "sim0"
PHASES = ("steady", "random-ids")
# candiag.health.pipeline.CYCLE_EPOCH_S (60 s) plus time for the first epoch to fill.
RANDOM_IDS_WARMUP_S = 75.0

CONFIG = """
[[can.buses]]
name = "sim0"
interface = "virtual"
channel = "soak"
bitrate = 500000

[[can.buses.families]]
name = "power_module"
expected = ["1-8"]

[[can.buses.families]]
name = "contactor"
expected = [0]

[metrics]
listen = "127.0.0.1:0"

[log]
level = "info"

[daemon]
processing_interval_s = 0.25

[simulator]
buses = ["sim0"]
scenario = "soak"
meters = true
"""

_LOAD = re.compile(r'^candiag_can_bus_load_ratio\{bus="sim0",window="10s"\} (\S+)$', re.M)
_BUS_OFF = re.compile(r'^candiag_can_bus_off_total\{bus="sim0"\} (\S+)$', re.M)
_DROPPED = re.compile(r'^candiag_can_frames_dropped_total\{bus="sim0",source="\w+"\} (\S+)$', re.M)
_FRAMES = re.compile(r'^candiag_can_frames_total\{bus="sim0",kind="(\w+)"\} (\S+)$', re.M)


@dataclass
class Sample:
    t: float
    rss_kb: int
    threads: int
    fds: int


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    scrapes: int = 0
    scrape_failures: list[str] = field(default_factory=list)
    scrape_seconds_max: float = 0.0
    load_max: float = 0.0
    bus_offs: int = 0
    dropped: int = 0
    pings: list[float] = field(default_factory=list)
    notify: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


def proc_sample(pid: int) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]
    threads = len(os.listdir(f"/proc/{pid}/task"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Sample(time.monotonic(), rss, threads, fds)


def frames_counted(text: str) -> int:
    return int(sum(float(v) for _, v in _FRAMES.findall(text)))


def _pump(stream: object, into: list[str], echo: bool) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.append(line.rstrip("\n"))
        if echo:
            print("  daemon:", line.rstrip("\n"), file=sys.stderr)  # noqa: T201


def _listen_notify(sock: socket.socket, run: Run, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            continue
        except OSError:
            return
        now = time.monotonic()
        for line in data.split("\n"):
            run.notify.append(line)
            if line == "WATCHDOG=1":
                run.pings.append(now)


def wait_for(lines: list[str], pattern: str, timeout: float, proc: subprocess.Popen[str]) -> str:
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            if m := rx.search(line):
                return m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"daemon never printed {pattern!r}")


def observe(run: Run, text: str) -> None:
    """Keep the figures that show the bus was loaded and faulted."""
    if m := _LOAD.search(text):
        run.load_max = max(run.load_max, float(m.group(1)))
    if m := _BUS_OFF.search(text):
        run.bus_offs = int(float(m.group(1)))
    run.dropped = int(sum(float(v) for v in _DROPPED.findall(text)))


def scrape(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


def soak(
    seconds: float, warmup: float, period: float, verbose: bool, random_ids: bool = False
) -> tuple[bool, str]:
    """Run one soak phase; returns (all criteria met, the summary table)."""
    run = Run()
    with tempfile.TemporaryDirectory(prefix="candiag-soak-") as tmp:
        config = Path(tmp) / "soak.toml"
        config.write_text(CONFIG)
        sock_path = str(Path(tmp) / "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(0.2)
        stop_listening = threading.Event()
        listener = threading.Thread(
            target=_listen_notify, args=(sock, run, stop_listening), name="soak-notify"
        )
        listener.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        env.update(NOTIFY_SOCKET=sock_path, WATCHDOG_USEC=str(WATCHDOG_USEC), PYTHONUNBUFFERED="1")
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "soak.child", "--config", str(config), "--seconds",
             str(seconds), "--quiesce-after", str(seconds), "--period", str(period),
             *(["--random-ids"] if random_ids else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, run.stdout, verbose), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, run.stderr, verbose), daemon=True),
        ]
        for t in pumps:
            t.start()
        exit_code: int | None = None
        stop_seconds = float("nan")
        sent = counted = -1
        try:
            url = wait_for(run.stderr, r"event=metrics_listening url=(\S+)", 30, proc)
            last_report = started
            while proc.poll() is None and not any(s == "SOAK_QUIESCED" for s in run.stdout):
                tick = time.monotonic()
                run.samples.append(proc_sample(proc.pid))
                t0 = time.monotonic()
                status, text = scrape(url + "/metrics")
                run.scrape_seconds_max = max(run.scrape_seconds_max, time.monotonic() - t0)
                run.scrapes += 1
                observe(run, text)
                if status != 200 or "candiag_can_frames_total" not in text:
                    run.scrape_failures.append(f"{time.monotonic() - started:.0f}s: HTTP {status}")
                if tick - last_report >= 60:
                    last_report = tick
                    s = run.samples[-1]
                    print(  # noqa: T201
                        f"soak: {tick - started:5.0f} s  frames {frames_counted(text):>10}  "
                        f"rss {s.rss_kb / 1024:6.1f} MB  threads {s.threads}  fds {s.fds}",
                        file=sys.stderr,
                    )
                time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
            last_ping_before_end = time.monotonic()
            sent = sum(
                int(m.group(1))
                for line in run.stdout
                if (m := re.search(r"SOAK_SENT .*frames_sent=(\d+)", line))
            )
            # The reader hands frames over every 0.1 s and the loop drains every 0.25 s.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.5)
                counted = frames_counted(scrape(url + "/metrics")[1])
                if counted >= sent:
                    break
            t_stop = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            exit_code = proc.wait(10)
            stop_seconds = time.monotonic() - t_stop
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for t in pumps:
                t.join(5)
            stop_listening.set()
            listener.join(5)
            sock.close()
    return report(run, sent, counted, exit_code, stop_seconds, started + warmup,
                  last_ping_before_end)  # fmt: skip


def report(
    run: Run,
    sent: int,
    counted: int,
    exit_code: int | None,
    stop_seconds: float,
    warm_at: float,
    end: float,
) -> tuple[bool, str]:
    rows: list[tuple[str, str, str, bool]] = []
    rows.append(("frames counted == sent", f"{counted} / {sent}", "equal, > 0",
                 counted == sent and sent > 0))  # fmt: skip
    ok_scrapes = run.scrapes - len(run.scrape_failures)
    rows.append(("scrapes answered 200", f"{ok_scrapes} / {run.scrapes}", "all",
                 not run.scrape_failures and run.scrapes > 0))  # fmt: skip
    rows.append(("frames dropped (reader/driver)", str(run.dropped), "0", run.dropped == 0))
    rows.append(("highest 10 s bus load", f"{100 * run.load_max:.1f} %", "(info)", True))
    rows.append(("bus-off events seen", str(run.bus_offs), "(info)", True))
    rows.append(("slowest scrape", f"{run.scrape_seconds_max * 1000:.0f} ms", "(info)", True))
    warm = [s for s in run.samples if s.t >= warm_at]
    window = min(10, len(warm) // 2)
    if window >= 5:
        early, late = warm[:window], warm[-window:]
        rss_growth = statistics.median(s.rss_kb for s in late) - statistics.median(
            s.rss_kb for s in early
        )
        rows.append(("RSS growth after warm-up", f"{rss_growth / 1024:+.2f} MB",
                     f"< {RSS_LIMIT_KB / 1024:.0f} MB", rss_growth < RSS_LIMIT_KB))  # fmt: skip
        rows.append(("RSS at end", f"{late[-1].rss_kb / 1024:.1f} MB", "(info)", True))
        for name in ("threads", "fds"):
            before = max(getattr(s, name) for s in early)
            after = max(getattr(s, name) for s in late)
            rows.append((f"{name} after warm-up", f"{before} -> {after}", "no growth",
                         after <= before))  # fmt: skip
    else:
        rows.append(("samples after warm-up", str(len(warm)), ">= 10", False))
    ready = run.notify.count("READY=1") >= 1
    gaps = [b - a for a, b in zip(run.pings, [*run.pings[1:], end], strict=True)]
    worst = max(gaps, default=float("inf"))
    limit = WATCHDOG_USEC / 1e6
    rows.append(("watchdog pings", str(len(run.pings)), "> 0, READY=1 sent",
                 ready and len(run.pings) > 0))  # fmt: skip
    rows.append(("longest watchdog gap", f"{worst:.2f} s", f"<= {limit:.1f} s", worst <= limit))
    rows.append(("SIGTERM exit", f"code {exit_code} in {stop_seconds:.2f} s", "code 0 in < 5 s",
                 exit_code == 0 and stop_seconds < 5))  # fmt: skip
    tracebacks = sum("Traceback" in line for line in run.stderr)
    rows.append(("tracebacks in the log", str(tracebacks), "0", tracebacks == 0))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'criterion':<{width}}  {'measured':<24}  {'required':<18}  result"]
    for name, got, want, ok in rows:
        lines.append(f"{name:<{width}}  {got:<24}  {want:<18}  {'ok' if ok else 'FAIL'}")
    lines.extend(f"  scrape failure {f}" for f in run.scrape_failures[:5])
    return all(r[3] for r in rows), "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--minutes",
        type=float,
        default=float(os.environ.get("SOAK_MINUTES", "30")),
        help="run length (default: $SOAK_MINUTES or 30)",
    )
    parser.add_argument(
        "--random-ids-minutes",
        type=float,
        default=float(os.environ.get("SOAK_RANDOM_IDS_MINUTES", "0")) or None,
        help="length of the random-id phase (default: $SOAK_RANDOM_IDS_MINUTES, else as "
        "--minutes up to 10)",
    )
    parser.add_argument(
        "--phase", choices=(*PHASES, "all"), default="all", help="which phases (default all)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        help="seconds ignored for growth (default 20 %%, max 120; random ids: at least "
        f"{RANDOM_IDS_WARMUP_S:.0f})",
    )
    parser.add_argument("--period", type=float, default=60.0, help="seconds between faults")
    parser.add_argument("-v", "--verbose", action="store_true", help="echo the daemon's log")
    args = parser.parse_args(argv)
    ok = True
    for phase in PHASES if args.phase == "all" else (args.phase,):
        random_ids = phase == "random-ids"
        minutes = args.minutes
        if random_ids:
            minutes = args.random_ids_minutes or min(args.minutes, 10.0)
        seconds = minutes * 60
        warmup = args.warmup if args.warmup is not None else min(120.0, 0.2 * seconds)
        if random_ids and args.warmup is None:
            warmup = max(warmup, RANDOM_IDS_WARMUP_S)
        filler = "random 29-bit ids" if random_ids else "a one-id filler"
        print(  # noqa: T201
            f"soak phase {phase}: {seconds:.0f} s on a ~92 % loaded 500 kbit/s simulated bus "
            f"({filler}), a fault every {args.period:.0f} s, warm-up {warmup:.0f} s",
            file=sys.stderr,
        )
        phase_ok, table = soak(seconds, warmup, args.period, args.verbose, random_ids)
        print(f"phase {phase}: {'ok' if phase_ok else 'FAIL'}\n{table}\n", flush=True)  # noqa: T201
        ok = ok and phase_ok
    return 0 if ok else 1

"""What bench/fastagi.py and bench/ami.py share: CPU pinning, a forked child process (a server or a
fake) driven over a pipe, and a meter of wall time, CPU time and what the rest of the machine did."""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any, Self

from bench.case_intake import tree_cpu

TICK = os.sysconf("SC_CLK_TCK")


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def cpu_split(no_pin: bool) -> tuple[int | None, int | None]:
    """(CPU for the child process, CPU for this one), or (None, None) when not pinning."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if no_pin or len(cpus) < 2:
        return None, None
    return cpus[1], cpus[0]


def cpu_ticks() -> tuple[int, int, int]:
    """(all, process time — user + nice + system, kernel interrupts — irq + softirq) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v), v[0] + v[1] + v[2], v[5] + v[6]


class Meter:
    """Wall time, CPU of the child process (and its descendants) and of this one, and what the rest of
    the machine did: processes outside the benchmark ("other jobs": depresses the figures if not ~0)
    and interrupt time (loopback TCP is mostly softirq work, part of the cost of the benchmark itself)."""

    def __init__(self, child_pid: int | None = None) -> None:
        self.pid = child_pid

    def __enter__(self) -> Self:
        self.m0, self.s0, self.c0 = cpu_ticks(), tree_cpu(self.pid), time.process_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        m1, s1, c1 = cpu_ticks(), tree_cpu(self.pid), time.process_time()
        self.child, self.own = s1 - self.s0, c1 - self.c0
        capacity = max(self.wall, 1e-9) * (os.cpu_count() or 1)
        self.others = max(0.0, ((m1[1] - self.m0[1]) / TICK - self.child - self.own) / capacity)
        self.irq = (m1[2] - self.m0[2]) / TICK / capacity


async def serve_until_stopped(conn: Any, on_command: Callable[[Any], None]) -> None:
    """In the child: hand every message from the parent to `on_command` until it sends "stop"."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def command() -> None:
        while conn.poll():
            what = conn.recv()
            if what != "stop":
                on_command(what)
            elif not stop.done():
                stop.set_result(None)

    loop.add_reader(conn.fileno(), command)
    try:
        await stop
    finally:
        loop.remove_reader(conn.fileno())


class Child:
    """A process forked before this one starts its event loop (so large arguments are inherited, not
    pickled) running `target(conn, *args)`, which first sends its listening port on `conn`."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], name: str,
                 start_timeout: float = 30) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), name=name, daemon=True)
        self.proc.start()
        if not self.conn.poll(start_timeout):
            raise RuntimeError(f"{name} did not start")
        self.port: int = self.conn.recv()

    def stop(self, timeout: float = 10) -> None:
        if self.proc.is_alive():
            self.conn.send("stop")
            self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)

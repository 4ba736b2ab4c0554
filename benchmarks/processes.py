"""Drain rate of ``aqueue worker --processes P`` for P = 1 and 2: does a second process pay off?

Run from the repository root::

    python benchmarks/processes.py [--jobs 100000] [--concurrency 100] [--processes 1,2] [--repeat 1]
                                   [--redis URL]

For each P (and each of ``--repeat`` rounds) it enqueues N no-op jobs on a fresh queue (``enqueue_many`` in
chunks of 20,000), then runs the real CLI as a subprocess::

    python -m aqueue worker _bench_tasks:tasks --processes P --burst --concurrency C --queue Q --redis URL

with ``benchmarks/`` on ``PYTHONPATH`` (the task module is ``benchmarks/_bench_tasks.py``). With P > 1 the CLI
supervises P child processes (``python -m aqueue worker ... --processes 1``); ``--burst`` makes each exit once
the queue is drained. The drain is measured from the Redis side, so process start-up (interpreter, imports,
connecting) does not count: ``stats.succeeded`` is polled every 50 ms, and the rate is the jobs counted between
the first poll that saw a success with all P workers registered (the queue's ``workers`` set: a child that is
still importing does not make the 2-process figure a 1-process one) and the poll that saw all N, over the time
between those two polls. Spawn to
exit (wall) and the start-up part of it are printed too, with the CPU time of the worker processes (including
start-up) and Redis' CPU time during the drain: when Redis is near one full core, more worker processes cannot
make the drain faster.

Target (2-core machine): **P=2 drains >= 1.7x as fast as P=1**. Each run checks that all N jobs succeeded and the
ready streams are empty; every key of each queue is deleted afterwards. Times are printed, never asserted; the exit
code is 1 if a run failed (a worker exit code != 0, a job not succeeded, or a timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from _bench_tasks import NOOP, noop_fn
from _common import delete_keys

import aqueue

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ENQUEUE_CHUNK = 20_000
POLL = 0.05  # seconds between stats polls
RATIO_TARGET = 1.7


@dataclass(frozen=True)
class Run:
    processes: int
    jobs: int
    drain_seconds: float  # first observed success -> all succeeded
    drained: int  # jobs counted over drain_seconds
    wall_seconds: float  # spawn -> exit
    startup_seconds: float  # spawn -> first observed success with every worker registered
    worker_cpu: float  # user + sys of the worker processes, start-up included
    redis_cpu: float  # Redis' user + sys over drain_seconds
    drain_worker_cpu: float  # user + sys of the worker processes over drain_seconds (from /proc)
    exit_code: int
    ok: bool

    @property
    def rate(self) -> float:
        return self.drained / self.drain_seconds if self.drain_seconds > 0 else float("nan")

    @property
    def worker_us(self) -> float:
        """Worker-process CPU per drained job, in µs (the drain only: start-up excluded)."""
        return 1e6 * self.drain_worker_cpu / self.drained if self.drained else float("nan")

    @property
    def redis_us(self) -> float:
        """Redis CPU per drained job, in µs."""
        return 1e6 * self.redis_cpu / self.drained if self.drained else float("nan")

    def describe(self) -> str:
        return (
            f"  P={self.processes}: {self.rate:>8,.0f} jobs/s ({self.drained:,} jobs in {self.drain_seconds:.2f} s)"
            f" | spawn->exit {self.wall_seconds:.2f} s, start-up {self.startup_seconds:.2f} s"
            f" | cpu: workers {self.worker_cpu:.2f} s, redis {self.redis_cpu:.2f} s"
            f" ({100 * self.redis_cpu / self.drain_seconds:.0f}% of the drain) | exit {self.exit_code}"
            f" | {'OK' if self.ok else 'FAILED'}"
        )


async def redis_cpu(r: aioredis.Redis) -> float:
    cpu = await r.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + sys) used so far by process ``pid`` and its descendants (live, or exited and reaped),
    from ``/proc`` (Linux): the CLI and, with ``--processes P``, its P worker children. 0 where ``/proc`` cannot
    tell."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            # utime, stime, and cutime, cstime: children that exited and were reaped (a worker child that finished
            # its burst) count in their parent's (fields 14 to 17 of the line)
            total += sum(int(f) for f in fields[11:15]) / _TICK
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


async def run_once(r: aioredis.Redis, url: str, processes: int, n: int, concurrency: int, timeout: float) -> Run:
    queue = f"bench-proc-{uuid.uuid4().hex[:10]}"
    tasks = aqueue.Tasks(queue, url)
    noop = tasks.task(name=NOOP)(noop_fn)
    proc: asyncio.subprocess.Process | None = None
    try:
        for start in range(0, n, ENQUEUE_CHUNK):
            await tasks.enqueue_many([noop.spec() for _ in range(min(ENQUEUE_CHUNK, n - start))])
        queued = sum((await tasks.info()).queued.values())
        if queued != n:
            raise RuntimeError(f"{queued} jobs queued, expected {n}")

        cmd = [sys.executable, "-m", "aqueue", "worker", "_bench_tasks:tasks", "--processes", str(processes),
               "--burst", "--concurrency", str(concurrency), "--queue", queue, "--redis", url,
               "--log-level", "warning"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
        cpu0 = children_cpu()
        spawned = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, env=env)
        # (time, succeeded, redis cpu, workers' cpu) at the first poll that saw a success with all P workers
        # registered, and at the one that saw all N
        first: tuple[float, int, float, float] | None = None
        last: tuple[float, int, float, float] | None = None
        while True:
            now = time.perf_counter()
            succeeded = int(await r.hget(tasks._keys.stats, "succeeded") or 0)
            if succeeded and first is None and await r.zcard(tasks._keys.workers) >= processes:
                first = (now, succeeded, await redis_cpu(r), tree_cpu(proc.pid))
            if succeeded >= n:
                last = (now, succeeded, await redis_cpu(r), tree_cpu(proc.pid))
                break
            if proc.returncode is not None or now - spawned > timeout:
                break
            await asyncio.sleep(POLL)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=max(10.0, timeout - (time.perf_counter() - spawned)))
        except TimeoutError:
            proc.terminate()
            code = await proc.wait()
        wall = time.perf_counter() - spawned
        worker_cpu = children_cpu() - cpu0

        stats = (await tasks.info()).stats
        ready = [int(await r.xlen(s)) for s in tasks._keys.streams]
        succeeded = int(stats.get("succeeded", 0))
        ok = code == 0 and succeeded == n and not any(ready) and last is not None
        if not ok:
            print(f"  P={processes}: exit {code}, succeeded={succeeded}/{n}, ready={ready}, stats={stats}", flush=True)
        if first is None or last is None or last[0] <= first[0]:
            drain, drained, rcpu, wcpu = float("nan"), 0, float("nan"), float("nan")
            startup = (first[0] - spawned) if first is not None else float("nan")
        else:
            drain, drained, rcpu = last[0] - first[0], last[1] - first[1], last[2] - first[2]
            wcpu = last[3] - first[3]
            startup = first[0] - spawned
        return Run(processes, n, drain, drained, wall, startup, worker_cpu, rcpu, wcpu, code, ok)
    finally:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            await proc.wait()
        await tasks.close()
        await delete_keys(r, tasks._keys.prefix)


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def main_async(args: argparse.Namespace) -> int:
    r = aioredis.Redis.from_url(args.redis, decode_responses=True)
    try:
        server = await r.info("server")
        print(
            f"aqueue processes: N={args.jobs} C={args.concurrency} per process, P in {args.processes},"
            f" repeat={args.repeat}, {os.cpu_count()} CPUs, redis={args.redis} (Redis {server['redis_version']})",
            flush=True,
        )
        best: dict[int, Run] = {}
        all_ok = True
        for round_ in range(args.repeat):
            for p in args.processes:
                run = await run_once(r, args.redis, p, args.jobs, args.concurrency, args.timeout)
                print(run.describe() + (f" [round {round_ + 1}]" if args.repeat > 1 else ""), flush=True)
                all_ok &= run.ok
                if run.ok and (p not in best or run.rate > best[p].rate):
                    best[p] = run
        print()
        label = "best of " + str(args.repeat) if args.repeat > 1 else "drain"
        print(f"{'processes':<10} {label + ' jobs/s':>20} {'vs P=1':>8}")
        base = best.get(1)
        for p in args.processes:
            if p in best:
                versus = f"{best[p].rate / base.rate:.2f}x" if base is not None else "-"
                print(f"{p:<10} {best[p].rate:>20,.0f} {versus:>8}")
            else:
                print(f"{p:<10} {'failed':>20}")
        print()
        print(f"{'processes':<10} {'workers us/job':>15} {'redis us/job':>13} {'total us/job':>13} {'vs P=1':>8}")
        for p in args.processes:
            if p in best:
                run = best[p]
                total = run.worker_us + run.redis_us
                base_total = base.worker_us + base.redis_us if base is not None else float("nan")
                ratio = total / base_total
                print(f"{p:<10} {run.worker_us:>15.1f} {run.redis_us:>13.1f} {total:>13.1f} {ratio:>7.2f}x")
        if base is not None:
            # One Redis core does at most 1e6 / redis_us jobs/s; the other cores run worker processes, each job
            # costing worker_us of them. Whichever bound is lower is the projected drain.
            print()
            print("projected one-queue drain with one Redis (from P=1's per-job CPU):")
            for cores in (2, 4, 8, 16):
                redis_bound = 1e6 / base.redis_us
                worker_bound = (cores - 1) * 1e6 / base.worker_us
                bound = "Redis" if redis_bound <= worker_bound else "workers"
                print(f"  {cores:>2} cores: {min(redis_bound, worker_bound):>9,.0f} jobs/s (bound by {bound})")
        print()
        print("targets:")
        if 1 in best and 2 in best:
            ratio = best[2].rate / best[1].rate
            print(f"  {'--processes 2 drains >= 1.7x one process':<48} {ratio:>8.2f}x  {mark(ratio >= RATIO_TARGET)}")
        else:
            print(f"  {'--processes 2 drains >= 1.7x one process':<48} {'n/a':>9}  (needs P=1 and P=2 runs)")
        if 1 in best and 2 in best:
            one, two = (best[k].worker_us + best[k].redis_us for k in (1, 2))
            print(f"  {'CPU per job with 2 processes <= 1.10x one':<48} {two / one:>8.2f}x  {mark(two / one <= 1.10)}")
        print(f"  {'every run: all jobs succeeded, workers exited 0':<48} {'':>9}  {mark(all_ok)}")
        return 0 if all_ok else 1
    finally:
        await r.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs per run (default 100000)")
    parser.add_argument("--concurrency", type=int, default=100, help="concurrency per process (default 100)")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts (default 1,2)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the best run per P is compared (default 1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a run may take (default 600)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    args = parser.parse_args()
    try:
        args.processes = [int(p) for p in args.processes.split(",") if p.strip()]
    except ValueError:
        parser.error(f"--processes: expected comma-separated integers, got {args.processes!r}")
    if args.jobs < 1 or args.concurrency < 1 or args.repeat < 1 or not args.processes or min(args.processes) < 1:
        parser.error("--jobs, --concurrency, --repeat and every --processes value must be >= 1")
    raise SystemExit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()

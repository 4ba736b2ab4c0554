"""The autoscaling supervisor against fixed concurrency, on a real Redis, in three load shapes.

Run from the repository root::

    python benchmarks/autoscale.py [--redis URL] [--quick] [--out docs] [--no-plots] [--trace]
                                   [--scenarios burst,ramp,errors] [--configs fixed-min,default,...]
                                   [--min 2] [--max 500] [--scale-interval 0.5] [--cooldown 2]

Scenarios (jobs ``await asyncio.sleep(0.05)``, ``max_attempts=1``; producer and worker share one event loop):

- **burst**: 10,000 jobs enqueued at once (one ``enqueue_many``).
- **ramp**: a paced producer whose arrival rate rises linearly from 20 to 600 jobs/s over 20 s.
- **errors**: 200 jobs/s for 20 s; from 5 s to 13 s a simulated downstream is failing and 90% of the attempts
  that call it then raise (``max_attempts=1``, so a failure does not come back as a retry).

Each scenario runs once per configuration: ``fixed-min`` (``concurrency=min``), ``fixed-max``
(``concurrency=max``) and the strategies ``default``, ``aggressive``, ``conservative``, ``predictive`` with
``min_concurrency=min``, ``max_concurrency=max``. Every run uses a fresh queue whose keys are deleted afterwards.
An autoscaled worker starts idle at ``min`` and the load begins half a ``scale_interval`` after the supervisor's
second tick, so every run meets the load at the same phase. A run that has not drained by its time limit
(25 s after the first enqueue for the burst, 12 s and 15 s after the producer's end for ramp and errors;
``fixed-min`` cannot keep up with any of these loads) is stopped, and its figures are marked as lower bounds.
After a drain the sampler goes on for 3 s, to show the first scale-down steps.

Measured per run: drain time (first enqueue → last job finished, Redis clock, from the job records), queue wait
(``started_at - enqueued_at``) p50/p95/max, peak and mean concurrency, the applied scaling changes and how often
the target changed direction (both counted up to the drain, not in the idle tail), the largest event-loop lag the
supervisor saw, and this process' CPU time. For ``errors``, also the attempts made while the downstream was
failing (the load put on it) and how long after the outage the backlog took to clear. A sampler records
``worker.concurrency`` and the backlog every 0.1 s; one PNG per scenario is written to ``--out`` (needs
matplotlib: ``pip install 'aqueue[bench]'``). ``--trace`` prints every applied change and every decision the
Governor held, with the strategy's reason. ``--quick`` shrinks every scenario (about 2 minutes in all instead of
about 7).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import logging
import math
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from _common import delete_keys

import aqueue
from aqueue.autoscale.scaling import Decision
from aqueue.autoscale.supervisor import ScalingRecord

SERVICE_TIME = 0.05  # seconds each job awaits
SAMPLE_EVERY = 0.1  # seconds between samples of concurrency and backlog
OUTAGE_FAILURE_P = 0.9  # share of the attempts that fail while the downstream is failing
CLEAR_BACKLOG = 20  # "the backlog has cleared" once it stays at or below this many jobs
STRATEGIES = ("default", "aggressive", "conservative", "predictive")
CONFIG_NAMES = ("fixed-min", "fixed-max", *STRATEGIES)
#: Line style per configuration: colour, width, dash. Where lines coincide (e.g. every strategy at max during a
#: burst) the wider ones drawn first stay visible around the narrower and dashed ones drawn over them.
STYLES: dict[str, tuple[str, float, str]] = {
    "fixed-max": ("#000000", 4.5, "-"),
    "fixed-min": ("#8c8c8c", 4.5, "-"),
    "default": ("#1f77b4", 3.5, "-"),
    "conservative": ("#2ca02c", 2.5, "-"),
    "aggressive": ("#d62728", 1.8, "-"),
    "predictive": ("#ff7f0e", 1.8, "--"),
}


class DownstreamError(Exception):
    """What a job raises while the simulated downstream is failing."""


# -- scenarios -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One load shape: how many jobs have arrived ``t`` seconds after the first enqueue, and when it is over."""

    key: str
    title: str
    jobs: int  # total jobs the producer enqueues
    duration: float  # seconds the producer runs (0: everything at once)
    limit: float  # seconds after the first enqueue after which an undrained run is stopped
    start_rate: float = 0.0  # jobs/s at t=0 (paced scenarios)
    end_rate: float = 0.0  # jobs/s at t=duration (equal to start_rate for a steady rate)
    outage: tuple[float, float] | None = None  # seconds after the first enqueue when the downstream fails

    def arrived(self, t: float) -> int:
        """Jobs enqueued by ``t`` seconds after the first enqueue."""
        if self.duration <= 0 or t >= self.duration:
            return self.jobs
        slope = (self.end_rate - self.start_rate) / self.duration
        return min(self.jobs, math.floor(self.start_rate * t + slope * t * t / 2))

    def rate(self, t: float) -> float:
        """Arrival rate at ``t`` (jobs/s)."""
        if self.duration <= 0 or not 0 <= t <= self.duration:
            return 0.0
        return self.start_rate + (self.end_rate - self.start_rate) * t / self.duration

    def describe(self) -> str:
        if self.duration <= 0:
            return f"{self.jobs:,} jobs of {SERVICE_TIME * 1000:.0f} ms enqueued at once"
        if self.start_rate == self.end_rate:
            shape = f"{self.start_rate:g} jobs/s for {self.duration:g} s"
        else:
            shape = f"arrival rate {self.start_rate:g} → {self.end_rate:g} jobs/s over {self.duration:g} s"
        text = f"{shape} ({self.jobs:,} jobs of {SERVICE_TIME * 1000:.0f} ms)"
        if self.outage is not None:
            a, b = self.outage
            text += f"; downstream failing {a:g}-{b:g} s ({OUTAGE_FAILURE_P:.0%} of its calls raise)"
        return text


def _paced(key: str, title: str, rate0: float, rate1: float, seconds: float, limit: float, **kw: Any) -> Scenario:
    jobs = math.floor(rate0 * seconds + (rate1 - rate0) * seconds / 2)
    return Scenario(key, title, jobs, seconds, seconds + limit, rate0, rate1, **kw)


def scenarios(quick: bool) -> list[Scenario]:
    if quick:
        return [
            Scenario("burst", "Burst", 2_000, 0.0, 6.0),
            _paced("ramp", "Linear ramp", 20, 300, 5.0, 4.0),
            _paced("errors", "Error spike", 100, 100, 6.0, 5.0, outage=(1.5, 3.5)),
        ]
    return [
        Scenario("burst", "Burst", 10_000, 0.0, 25.0),
        _paced("ramp", "Linear ramp", 20, 600, 20.0, 12.0),
        _paced("errors", "Error spike", 200, 200, 20.0, 15.0, outage=(5.0, 13.0)),
    ]


# -- configurations ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    label: str
    kwargs: dict[str, Any]


def configs(names: Sequence[str], low: int, high: int, interval: float, cooldown: float) -> list[Config]:
    out = []
    for name in names:
        if name == "fixed-min":
            out.append(Config(name, {"concurrency": low}))
        elif name == "fixed-max":
            out.append(Config(name, {"concurrency": high}))
        else:
            kwargs = {"min_concurrency": low, "max_concurrency": high, "strategy": name}
            out.append(Config(name, {**kwargs, "scale_interval": interval, "cooldown": cooldown}))
    return out


# -- one run -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the first enqueue
    concurrency: int
    running: int
    backlog: int


@dataclass(frozen=True, slots=True)
class Change:
    t: float  # seconds since the first enqueue
    old: int
    new: int
    reason: str


@dataclass(frozen=True, slots=True)
class Held:
    """A decision the supervisor took that did not become the applied target (held or clamped)."""

    t: float
    concurrency: int
    wanted: int
    reason: str


@dataclass
class JobTimes:
    enqueued: list[float] = field(default_factory=list)  # Redis clock, seconds
    started: list[float | None] = field(default_factory=list)
    finished: list[float | None] = field(default_factory=list)


@dataclass
class Outage:
    """The simulated failing dependency: counts the calls made while it is down and fails most of them."""

    window: tuple[float, float] | None
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    t0: float = 0.0  # loop time of the first enqueue
    calls: int = 0  # attempts that called it while it was down
    failures: int = 0

    def down(self, now: float) -> bool:
        return self.window is not None and self.window[0] <= now - self.t0 < self.window[1]


@dataclass
class RunResult:
    scenario: Scenario
    config: Config
    jobs: int
    finished: int
    drained: bool
    drain: float  # first enqueue -> last finished (s); when not drained, first enqueue -> stop
    after_last_enqueue: float  # last enqueue -> last finished (s)
    waits: list[float]  # per job; for jobs not started by the stop, the wait so far (a lower bound)
    peak: int
    mean_concurrency: float
    ups: int
    downs: int
    direction_changes: int
    max_lag: float
    cpu: float
    peak_backlog: int
    outage_calls: int
    outage_failures: int
    cleared_after: float | None  # s after the outage ended until the backlog stayed <= CLEAR_BACKLOG
    samples: list[Sample]
    changes: list[Change]
    held: list[Held]


def _direction_changes(changes: Sequence[Change]) -> int:
    signs = [1 if c.new > c.old else -1 for c in changes if c.new != c.old]
    return sum(1 for a, b in itertools.pairwise(signs) if a != b)


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def _job_times(r: aioredis.Redis, tasks: aqueue.Tasks, ids: Sequence[str]) -> JobTimes:
    out = JobTimes()
    fields = ("enqueued_at", "started_at", "finished_at")
    for start in range(0, len(ids), 5_000):
        async with r.pipeline(transaction=False) as pipe:
            for job_id in ids[start : start + 5_000]:
                pipe.hmget(tasks._keys.job(job_id), *fields)
            replies = await pipe.execute()
        for enq, sta, fin in replies:
            out.enqueued.append(int(enq) / 1000)
            out.started.append(int(sta) / 1000 if sta else None)
            out.finished.append(int(fin) / 1000 if fin else None)
    return out


async def _delete_queue(r: aioredis.Redis, tasks: aqueue.Tasks) -> int:
    return await delete_keys(r, tasks._keys.prefix)


async def run_one(
    r: aioredis.Redis, url: str, scenario: Scenario, config: Config, lead_in: float, tail: float
) -> RunResult:
    """Start a worker, let it idle (autoscaled: until half an interval after the supervisor's second tick; fixed:
    ``lead_in`` s), produce the scenario, wait for the drain (or the limit), sample ``tail`` more seconds, stop,
    and read every job's record."""
    loop = asyncio.get_running_loop()
    tasks = aqueue.Tasks(f"bench-autoscale-{uuid.uuid4().hex[:10]}", url)
    outage = Outage(scenario.outage)

    @tasks.task(name="bench.work", max_attempts=1)
    async def work() -> None:
        down = outage.down(loop.time())
        if down:
            outage.calls += 1
        await asyncio.sleep(SERVICE_TIME)
        if down and outage.rng.random() < OUTAGE_FAILURE_P:
            outage.failures += 1
            raise DownstreamError("downstream unavailable")

    ids: list[str] = []
    samples: list[Sample] = []
    records: list[ScalingRecord] = []
    held: list[Held] = []
    max_lag = 0.0
    t0 = wall0 = 0.0  # loop time and wall time of the first enqueue, set by produce()
    produced = asyncio.Event()
    # Producer and sampler stop on this flag, never by cancellation: on Python 3.11 a cancel that lands while
    # redis-py finishes a read can be swallowed (CPython gh-86296), and the task would then run on forever.
    finish = asyncio.Event()

    async def pause(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await finish.wait()

    async def produce() -> None:
        nonlocal t0, wall0
        t0, wall0 = loop.time(), time.time()
        outage.t0 = t0
        sent = 0
        while sent < scenario.jobs and not finish.is_set():
            due = scenario.arrived(loop.time() - t0)
            if due > sent:
                jobs = await tasks.enqueue_many([work.spec() for _ in range(due - sent)])
                ids.extend(j.id for j in jobs)
                sent = due
            if sent < scenario.jobs:
                await pause(0.05)
        produced.set()

    async def sample() -> None:
        nonlocal max_lag
        seen: set[int] = set()
        last: Decision | None = None
        while not finish.is_set():
            info = await tasks.info()
            now = loop.time()  # made relative to the first enqueue after the run
            samples.append(Sample(now, worker.concurrency, worker.running_jobs, sum(info.queued.values())))
            for rec in worker.scaling_history:
                if id(rec) not in seen:
                    seen.add(id(rec))
                    records.append(rec)  # keeps the record alive, so its id() is not reused
            sup = worker.supervisor
            if sup is not None:
                max_lag = max(max_lag, sup.loop_lag)
                d = sup.last_decision
                if d is not None and d is not last:
                    last = d
                    if d.target != worker.concurrency:
                        held.append(Held(now, worker.concurrency, d.target, d.reason))
            await pause(SAMPLE_EVERY)

    worker = aqueue.Worker(tasks, **config.kwargs)
    try:
        await tasks._broker()
        cpu0 = time.process_time()
        running = asyncio.create_task(worker.run(), name="bench-worker")
        sampler = asyncio.create_task(sample(), name="bench-sampler")
        producer: asyncio.Task[None] | None = None
        drained_at: float | None = None
        try:
            if worker.autoscaling:  # start half an interval after the supervisor's second tick, so every run alike
                while worker.supervisor is None or len(worker.supervisor.history) < 2:
                    if running.done():
                        running.result()
                    await asyncio.sleep(0.01)
                await asyncio.sleep(worker.scale_interval / 2)
            else:
                await asyncio.sleep(lead_in)
            producer = asyncio.create_task(produce(), name="bench-producer")
            await asyncio.sleep(0)  # let produce() set t0
            while loop.time() - t0 < scenario.limit:
                if produced.is_set() and worker.processed >= scenario.jobs:
                    drained_at = loop.time()
                    break
                if running.done():
                    running.result()  # a worker that died is a failed benchmark: raise its error
                await asyncio.sleep(0.02)
            if drained_at is not None:
                await asyncio.sleep(tail)
        finally:
            finish.set()
            if producer is not None:
                await producer
            await worker.stop()
            await running
            await sampler
        cpu = time.process_time() - cpu0
        seconds, micros = await r.time()
        stop_wall = int(seconds) + int(micros) / 1e6
        times = await _job_times(r, tasks, ids)
    finally:
        await tasks.close()
        await _delete_queue(r, tasks)

    samples = [replace(s, t=s.t - t0) for s in samples]
    held = [replace(h, t=h.t - t0) for h in held]
    finished = [f for f in times.finished if f is not None]
    first_enqueue = min(times.enqueued) if times.enqueued else stop_wall
    last_enqueue = max(times.enqueued) if times.enqueued else stop_wall
    drained = drained_at is not None and len(finished) == scenario.jobs
    end = max(finished) if drained else stop_wall
    waits = [(s if s is not None else stop_wall) - e for e, s in zip(times.enqueued, times.started, strict=True)]
    changes = [Change(rec.at - wall0, rec.old, rec.new, rec.reason) for rec in records]
    active_end = (drained_at - t0) if drained_at is not None else scenario.limit
    active = [s.concurrency for s in samples if 0 <= s.t <= active_end]
    active_changes = [c for c in changes if c.t <= active_end]  # not the step-downs of the idle tail
    cleared_after: float | None = None
    if scenario.outage is not None:
        after = [s for s in samples if s.t >= scenario.outage[1]]
        if after and after[-1].backlog <= CLEAR_BACKLOG:
            over = [s.t for s in after if s.backlog > CLEAR_BACKLOG]
            cleared_after = max(0.0, (max(over) if over else scenario.outage[1]) - scenario.outage[1])
    return RunResult(
        scenario=scenario,
        config=config,
        jobs=scenario.jobs,
        finished=len(finished),
        drained=drained,
        drain=end - first_enqueue,
        after_last_enqueue=end - last_enqueue,
        waits=waits,
        peak=max([worker.min_concurrency, *(c.new for c in changes), *(s.concurrency for s in samples)]),
        mean_concurrency=sum(active) / len(active) if active else float(worker.concurrency),
        ups=sum(1 for c in active_changes if c.new > c.old),
        downs=sum(1 for c in active_changes if c.new < c.old),
        direction_changes=_direction_changes(active_changes),
        max_lag=max_lag,
        cpu=cpu,
        peak_backlog=max((s.backlog for s in samples), default=0),
        outage_calls=outage.calls,
        outage_failures=outage.failures,
        cleared_after=cleared_after,
        samples=samples,
        changes=changes,
        held=held,
    )


# -- report --------------------------------------------------------------------------------------------------


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep, *(line(row) for row in rows)])


def report(scenario: Scenario, results: list[RunResult]) -> str:
    """A markdown table of one scenario's runs."""
    paced = scenario.duration > 0
    header = ["config", "drain s"]
    if paced:
        header.append("after last enq. s")
    header += ["wait p50 s", "wait p95 s", "wait max s", "peak backlog", "peak conc.", "mean conc."]
    header += ["ups/downs", "dir. changes"]
    if scenario.outage is not None:
        header += ["calls during outage", "failed", "backlog cleared s"]
    header += ["max loop lag ms", "cpu s"]
    rows = []
    for res in results:
        bound = "" if res.drained else "≥"
        drain = f"{res.drain:.2f}" if res.drained else f">{res.drain:.0f} ({res.jobs - res.finished:,} left)"
        row = [res.config.label, drain]
        if paced:
            row.append(f"{res.after_last_enqueue:.2f}" if res.drained else "-")
        row += [f"{bound}{_percentile(res.waits, q):.2f}" for q in (50, 95, 100)]
        row += [f"{res.peak_backlog:,}", str(res.peak), f"{res.mean_concurrency:.0f}"]
        row += [f"{res.ups}/{res.downs}", str(res.direction_changes)]
        if scenario.outage is not None:
            cleared = f"+{res.cleared_after:.1f}" if res.cleared_after is not None else "not cleared"
            row += [f"{res.outage_calls:,}", f"{res.outage_failures:,}", cleared]
        row += [f"{res.max_lag * 1000:.0f}", f"{res.cpu:.1f}"]
        rows.append(row)
    return _table(rows, header)


def trace(res: RunResult) -> str:
    lines = [f"  {res.config.label}: applied changes"]
    lines += [f"    {c.t:7.2f} s  {c.old:>4} -> {c.new:<4} {c.reason}" for c in res.changes]
    held = [h for h in res.held if h.t >= -0.5]
    if held:
        lines.append(f"  {res.config.label}: decisions not applied (first 40 of {len(held)})")
        lines += [f"    {h.t:7.2f} s  at {h.concurrency:>4} wanted {h.wanted:<4} {h.reason}" for h in held[:40]]
    return "\n".join(lines)


def plot(scenario: Scenario, results: list[RunResult], path: Path, strategy_note: str) -> None:
    """Concurrency (top) and backlog (bottom) over time, one line per configuration."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit(
            "the plots need matplotlib: pip install 'aqueue[bench]' (or matplotlib), or run with --no-plots"
        ) from exc

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 8), sharex=True, height_ratios=[3, 2])
    start = min(-0.5, min((s.t for res in results for s in res.samples), default=0.0))
    # The x range ends with the runs that drained: one that did not (fixed-min) would stretch it to its time limit.
    drained = [res for res in results if res.drained] or results
    end = max((s.t for res in drained for s in res.samples), default=1.0)
    order = list(STYLES)
    for res in sorted(results, key=lambda res: order.index(res.config.label) if res.config.label in order else 99):
        ts = [s.t for s in res.samples]
        color, width, dash = STYLES.get(res.config.label, ("#17becf", 1.8, "-"))
        style: dict[str, Any] = {"color": color, "linewidth": width, "linestyle": dash, "drawstyle": "steps-post"}
        late = "" if res.drained else f" (not drained at {scenario.limit:g} s)"
        top.plot(ts, [s.concurrency for s in res.samples], label=f"{res.config.label}{late}", **style)
        thin = {**style, "linewidth": max(1.2, 0.5 * width)}  # backlog lines overlap less; keep them light
        bottom.plot(ts, [s.backlog for s in res.samples], label=res.config.label, **thin)
    if scenario.duration > 0:
        grid = [i * scenario.duration / 200 for i in range(201)]
        needed = [scenario.rate(t) * SERVICE_TIME for t in grid]
        label = "arrival rate x service time\n(concurrency that keeps up)"
        top.plot(grid, needed, color="#9467bd", linestyle=":", linewidth=2.0, label=label)
    if scenario.outage is not None:
        for ax in (top, bottom):
            ax.axvspan(*scenario.outage, color="#d62728", alpha=0.08, label="downstream failing" if ax is top else None)
    top.set_yscale("log")
    top.set_ylabel("concurrency (worker target, log scale)")
    top.set_title(f"{scenario.title}: {scenario.describe()}\n{strategy_note}", fontsize=10)
    top.grid(True, which="both", alpha=0.3)
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    bottom.set_yscale("symlog", linthresh=10)
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("backlog (jobs waiting, symlog)")
    bottom.set_xlabel("seconds since the first enqueue")
    bottom.grid(True, which="both", alpha=0.3)
    bottom.set_xlim(start, end)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------------------------


def _names(text: str, valid: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise SystemExit(f"unknown {what}: {', '.join(unknown) or text!r}; valid: {', '.join(valid)}")
    return names


async def main_async(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aqueue").setLevel(logging.ERROR)  # a warning per failed job would flood the output
    chosen = _names(args.scenarios, ("burst", "ramp", "errors"), "scenario")
    picked = [s for s in scenarios(args.quick) if s.key in chosen]
    runs = configs(_names(args.configs, CONFIG_NAMES, "configuration"), args.min, args.max, args.scale_interval,
                   args.cooldown)  # fmt: skip
    lead_in, tail = 2.5 * args.scale_interval, 0.5 if args.quick else 3.0
    note = (
        f"fixed-min: concurrency={args.min}, fixed-max: concurrency={args.max}; strategies: min={args.min} "
        f"max={args.max} scale_interval={args.scale_interval:g} s cooldown={args.cooldown:g} s"
    )
    r = aioredis.Redis.from_url(args.redis, decode_responses=True)
    try:
        await r.ping()
        server = await r.info("server")
        print(f"aqueue autoscale benchmark: redis={args.redis} (Redis {server['redis_version']}), {note}", flush=True)
        began = time.perf_counter()
        for scenario in picked:
            print(f"\n## {scenario.title} ({scenario.key}): {scenario.describe()}", flush=True)
            results = []
            for config in runs:
                t = time.perf_counter()
                res = await run_one(r, args.redis, scenario, config, lead_in, tail)
                results.append(res)
                state = "drained" if res.drained else f"stopped at the {scenario.limit:g} s limit"
                print(f"  {config.label:<13} {state} in {time.perf_counter() - t:5.1f} s wall", flush=True)
                if args.trace:
                    print(trace(res), flush=True)
            print()
            print(report(scenario, results), flush=True)
            if not args.no_plots:
                path = Path(args.out) / f"autoscale-{scenario.key}.png"
                plot(scenario, results, path, note)
                print(f"\nwrote {path}", flush=True)
        print(f"\ntotal {time.perf_counter() - began:.0f} s", flush=True)
    finally:
        await r.aclose()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--quick", action="store_true", help="smaller scenarios (about 2 minutes in all)")
    parser.add_argument("--out", default="docs", help="directory for the PNGs (default docs)")
    parser.add_argument("--no-plots", action="store_true", help="print the tables only")
    parser.add_argument("--trace", action="store_true", help="print every scaling change and held decision")
    parser.add_argument("--scenarios", default="burst,ramp,errors", help="comma-separated subset")
    parser.add_argument("--configs", default=",".join(CONFIG_NAMES), help="comma-separated subset")
    parser.add_argument("--min", type=int, default=2, help="min_concurrency, and fixed-min's (default 2)")
    parser.add_argument("--max", type=int, default=500, help="max_concurrency, and fixed-max's (default 500)")
    parser.add_argument("--scale-interval", type=float, default=0.5, help="seconds between decisions (default 0.5)")
    parser.add_argument("--cooldown", type=float, default=2.0, help="Governor cooldown in seconds (default 2)")
    args = parser.parse_args()
    if not 1 <= args.min < args.max or args.scale_interval <= 0 or args.cooldown < 0:
        parser.error("need 1 <= --min < --max, --scale-interval > 0, --cooldown >= 0")
    if not args.no_plots:
        if importlib.util.find_spec("matplotlib") is None:
            parser.error("the plots need matplotlib: pip install 'aqueue[bench]' (or matplotlib), or pass --no-plots")
        Path(args.out).mkdir(parents=True, exist_ok=True)
    raise SystemExit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()

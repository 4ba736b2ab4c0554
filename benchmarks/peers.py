"""aqueue and the other Python job queues side by side: the same workloads, on the same Redis, in one run.

Run from the repository root::

    python benchmarks/peers.py [--jobs 20000] [--rate 500] [--seconds 10] [--redis URL]
                               [--only aqueue,arq,saq,streaq,taskiq,dramatiq,bullmq] [--venvs DIR] [--out FILE]

Each peer is installed at the versions pinned in ``PINS`` into its own virtual environment under ``--venvs``
(default ``benchmarks/.venvs``; made with this interpreter, reused while its pins are unchanged), and measured by a
small runner script, ``benchmarks/peers/run_<peer>.py``, run in that environment as a subprocess that prints one
JSON line. aqueue runs from this repository with this interpreter (``PYTHONPATH`` at the repository root). Every
runner measures, in one process and with a no-op task (``benchmarks/peers/_peerkit.py`` says how):

- **bulk enqueue**: N jobs with the peer's fastest API for many jobs;
- **drain**: those N jobs, from starting the worker until the N-th has run;
- **latency**: a paced producer at R jobs/s for S seconds to the running worker, P50/P99 enqueue -> start (the task
  subtracts the send's ``time.time()``, passed as its argument, from its own; one host clock).

Each runner's docstring and ``CONFIG`` say what its one-process configuration is, and why. Each run uses a fresh
tag as queue name or key prefix, and afterwards every key holding the tag is deleted (never FLUSHALL). A peer that
fails to install or run gets a row saying why, and the run goes on. The table is printed, and written as Markdown
to ``--out`` when given. ``docs/peers.md`` has the figures of a full run and their caveats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
RUNNERS = Path(__file__).resolve().parent / "peers"

#: the versions tested, installed into each peer's own venv (aqueue runs from this repository)
PINS: dict[str, list[str]] = {
    "arq": ["arq==0.28.0"],
    # saq 0.26.4 imports typing_extensions without declaring it
    "saq": ["saq[redis]==0.26.4", "typing_extensions==4.16.0"],
    "streaq": ["streaq==7.2.0"],
    "taskiq": ["taskiq==0.13.0", "taskiq-redis==1.2.4"],
    "dramatiq": ["dramatiq[redis]==2.2.1"],
    "bullmq": ["bullmq==3.4.4"],
}
PEERS = ("aqueue", *PINS)
PIN_FILE = "peers-pins.txt"  # in each venv: the pins it was made with
STREAQ_LIBRARY = "streaq"  # the Redis function library streaq loads (FUNCTION LOAD REPLACE)


class PeerFailed(Exception):
    """A peer could not be installed or run; the message is what its row says."""


@dataclass(frozen=True)
class Row:
    """One system's line of the table (``error`` set when it could not be measured)."""

    name: str
    version: str
    config: str = ""
    drain: float | None = None
    enqueue: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""

    @classmethod
    def from_result(cls, name: str, result: dict[str, Any]) -> Row:
        notes = [result["drain_error"]] if result.get("drain_error") else []
        if result["latency_ran"] < result["latency_sent"]:
            notes.append(f"latency: {result['latency_ran']} of {result['latency_sent']} jobs ran within 30 s")
        return cls(
            name,
            result["version"],
            result["config"],
            result["drain_per_s"],
            result["enqueue_per_s"],
            result["latency_p50_ms"],
            result["latency_p99_ms"],
            "; ".join(notes),
        )

    def cells(self) -> list[str]:
        return [
            self.name,
            self.version,
            self.config,
            rate(self.drain),
            rate(self.enqueue),
            ms(self.p50_ms),
            ms(self.p99_ms),
            self.note,
        ]


HEADERS = [
    "system",
    "version",
    "configuration (one process)",
    "drain jobs/s",
    "bulk enqueue jobs/s",
    "P50 ms",
    "P99 ms",
    "note",
]


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.2f}"  # nan: no sample


# -- venvs ---------------------------------------------------------------------------------------------------


def venv_python(venvs: Path, name: str) -> Path:
    """The interpreter of the peer's venv, made (or remade) and installed unless its pins already match."""
    venv = venvs / name
    python = venv / "bin" / "python"
    pins = "\n".join(PINS[name]) + "\n"
    marker = venv / PIN_FILE
    if python.exists() and marker.exists() and marker.read_text() == pins:
        return python
    print(f"  installing {' '.join(PINS[name])} into {venv} ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS[name]],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PeerFailed(f"install failed: {last_line(done.stderr or done.stdout)}")
    marker.write_text(pins)
    return python


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip() and not line.startswith("WARNING")]
    return lines[-1][:200] if lines else "(no output)"


# -- one peer ------------------------------------------------------------------------------------------------


def run_runner(name: str, python: Path, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """Run the peer's runner script; its last stdout line is its JSON result."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if name == "aqueue":
        env["PYTHONPATH"] = str(ROOT)
    command = [
        str(python),
        str(RUNNERS / f"run_{name}.py"),
        *("--redis", args.redis, "--tag", tag, "--jobs", str(args.jobs)),
        *("--rate", str(args.rate), "--seconds", str(args.seconds)),
    ]
    budget = 2 * max(60.0, args.jobs / 100) + args.seconds + 120
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=budget, check=False)
    except subprocess.TimeoutExpired:
        raise PeerFailed(f"runner did not finish within {budget:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise PeerFailed(f"runner failed (exit {done.returncode}): {last_line(done.stderr)}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def delete_tagged(r: redis.Redis, tag: str) -> int:
    """Unlink every key holding the run's tag (only this run's keys: the tag is fresh)."""
    deleted = 0
    batch: list[Any] = []
    for key in r.scan_iter(match=f"*{tag}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += int(r.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(r.unlink(*batch))
    return deleted


def has_library(r: redis.Redis, library: str) -> bool:
    return bool(r.function_list(library=library))


def measure(name: str, args: argparse.Namespace, r: redis.Redis) -> Row:
    """One peer's row: install, run, clean up; a failure becomes the row's note."""
    version = "this repo" if name == "aqueue" else ", ".join(PINS[name])
    tag = f"peers-{name}-{uuid.uuid4().hex[:8]}"
    streaq_before = has_library(r, STREAQ_LIBRARY)
    try:
        python = Path(sys.executable) if name == "aqueue" else venv_python(args.venvs, name)
        return Row.from_result(name, run_runner(name, python, args, tag))
    except PeerFailed as exc:
        return Row(name, version, note=str(exc))
    finally:
        deleted = delete_tagged(r, tag)
        if name == "streaq" and not streaq_before and has_library(r, STREAQ_LIBRARY):
            r.function_delete(STREAQ_LIBRARY)
        print(f"  {name}: deleted {deleted} keys of {tag}", flush=True)


# -- report --------------------------------------------------------------------------------------------------


def machine(r: redis.Redis) -> str:
    server = r.info("server")
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()} ({platform.machine()}),"
        f" Redis {server['redis_version']}, {datetime.now(UTC):%Y-%m-%d}"
    )


def text_table(rows: list[Row]) -> str:
    grid = [HEADERS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in grid) for i in range(len(HEADERS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in grid)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs of the bulk enqueue and the drain")
    parser.add_argument("--rate", type=float, default=500.0, help="jobs/s of the latency producer")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the latency producer sends")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--only", default=",".join(PEERS), help="comma-separated systems to run")
    parser.add_argument("--venvs", type=Path, default=Path(__file__).resolve().parent / ".venvs")
    parser.add_argument("--out", type=Path, help="also write the table as Markdown to this file")
    args = parser.parse_args()
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(PEERS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; known: {', '.join(PEERS)}")
    return args


def main() -> None:
    args = parse_args()
    r = redis.Redis.from_url(args.redis)
    line = machine(r)
    print(f"{line}; {args.jobs} jobs drained and bulk-enqueued, latency at {args.rate:g}/s for {args.seconds:g} s")
    rows = []
    for name in args.only:
        print(f"{name} ...", flush=True)
        rows.append(measure(name, args, r))
    r.close()
    print()
    print(text_table(rows))
    if args.out:
        workload = f"N = {args.jobs} jobs; latency at {args.rate:g} jobs/s for {args.seconds:g} s"
        args.out.write_text(f"{line}; {workload}\n\n{markdown_table(rows)}\n")
        print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()

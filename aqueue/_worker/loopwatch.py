"""Finding what blocks the event loop.

A job that blocks the loop (``time.sleep`` or CPU work inside an ``async def``, a plain ``def`` holding the GIL)
stops every other job, the heartbeat and the claim loop of its worker with it. :class:`LoopWatch` measures how late
a short timer fires (the loop's lag) and reports every block longer than ``threshold``. While the loop is blocked,
a watchdog thread looks at the loop thread's stack: a frame of :func:`aqueue._worker.runner.run_job` there names the
job that is running at that moment, the culprit. A plain ``def`` holding the GIL in a worker thread stops the
watchdog too; its block is still measured when the loop runs again.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType

__all__ = ["LoopWatch"]

_TICK = 0.1  # seconds between two timer checks of the loop


class LoopWatch:
    """Reports blocks of the running event loop: ``on_block(seconds, culprit)`` is called in the loop once it runs
    again, ``culprit`` being the value of local ``name`` in the innermost frame of ``code`` seen on the loop thread's
    stack while it was blocked (None if none was seen)."""

    def __init__(
        self, threshold: float, code: CodeType, name: str, on_block: Callable[[float, object | None], None]
    ) -> None:
        self.threshold = threshold
        self._code = code
        self._name = name
        self._on_block = on_block
        self._last_tick = time.monotonic()
        self._culprit: object | None = None
        self._stop = threading.Event()

    async def run(self) -> None:
        """Watch until cancelled."""
        loop = asyncio.get_running_loop()
        self._stop.clear()
        watchdog = threading.Thread(
            target=self._watch, args=(threading.get_ident(),), name="aqueue-loop-watchdog", daemon=True
        )
        watchdog.start()
        try:
            while True:
                before = loop.time()
                self._last_tick = time.monotonic()
                await asyncio.sleep(_TICK)
                lag = loop.time() - before - _TICK
                self._last_tick = time.monotonic()
                if lag >= self.threshold:
                    culprit, self._culprit = self._culprit, None
                    self._on_block(lag, culprit)
        finally:
            self._stop.set()

    def _watch(self, loop_thread: int) -> None:
        seen_block = False
        while not self._stop.wait(_TICK):
            if time.monotonic() - self._last_tick < self.threshold:
                seen_block = False
                continue
            if seen_block:
                continue
            seen_block = True  # one look per block: the stack of a blocked loop stays where it is
            frame: FrameType | None = sys._current_frames().get(loop_thread)
            while frame is not None:
                if frame.f_code is self._code:
                    self._culprit = frame.f_locals.get(self._name)
                    break
                frame = frame.f_back

"""A worker's settings, validated once: what the constructor's arguments resolve to."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aqueue._core.errors import ConfigurationError
from aqueue._worker.metadata import check_metadata
from aqueue.autoscale.scaling import Strategy
from aqueue.autoscale.strategies import get_strategy

if TYPE_CHECKING:
    from aqueue._core.tasks import Tasks

__all__ = ["WorkerOptions"]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """The settings of one worker (the concurrency bounds are :class:`~aqueue._worker.sizing.Sizing`'s)."""

    id: str  # ``name``, or ``host-pid-random``
    lease: float  # seconds a claim lives without a heartbeat
    shutdown_timeout: float  # seconds a stop lets running jobs finish
    prefetch: int  # jobs claimed beyond the free slots
    strategy: Strategy
    scale_interval: float  # seconds between two autoscaling decisions
    cooldown: float  # seconds the autoscaler waits before changing direction
    cpu_workers: int  # processes of the pool that runs executor="process" tasks
    metadata: Mapping[str, str]  # user key-values shown in the registry entry (read-only)

    @classmethod
    def resolve(
        cls,
        tasks: Tasks,
        *,
        strategy: str | Strategy,
        scale_interval: float,
        cooldown: float,
        lease: float | None,
        shutdown_timeout: float,
        prefetch: int,
        name: str | None,
        cpu_workers: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> WorkerOptions:
        """The options from the constructor's arguments; :class:`ConfigurationError` for an invalid one."""
        if lease is not None and lease <= 0:
            raise ConfigurationError(f"lease must be > 0 seconds, got {lease}")
        if shutdown_timeout < 0:
            raise ConfigurationError("shutdown_timeout must be >= 0")
        if prefetch < 0:
            raise ConfigurationError(f"prefetch must be >= 0, got {prefetch}")
        if scale_interval <= 0 or cooldown < 0:
            raise ConfigurationError("scale_interval must be > 0 and cooldown >= 0")
        if cpu_workers is not None and not (isinstance(cpu_workers, int) and not isinstance(cpu_workers, bool)
                                            and 1 <= cpu_workers <= 1024):  # fmt: skip
            raise ConfigurationError(f"cpu_workers must be an integer from 1 to 1024, got {cpu_workers!r}")
        return cls(
            id=name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
            lease=lease if lease is not None else tasks.settings.lease,
            shutdown_timeout=shutdown_timeout,
            prefetch=prefetch,
            strategy=get_strategy(strategy),
            scale_interval=scale_interval,
            cooldown=cooldown,
            cpu_workers=cpu_workers if cpu_workers is not None else os.cpu_count() or 1,
            metadata=check_metadata(metadata),
        )

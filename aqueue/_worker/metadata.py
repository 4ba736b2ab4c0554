"""A worker's metadata: user key-values (version, region, deploy id) carried in its registry entry.

They are checked once, at construction: a few short strings, so that every heartbeat stays small and what
``Tasks.info()``, ``/status`` and the dashboard show stays readable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from aqueue._core.errors import ConfigurationError

__all__ = ["MAX_ENTRIES", "MAX_KEY", "MAX_VALUE", "check_metadata"]

MAX_ENTRIES = 32  #: keys a worker's metadata may have
MAX_KEY = 64  #: characters of one key
MAX_VALUE = 256  #: characters of one value
# Keys are names (``version``, ``deploy.id``, ``k8s/pod``): no spaces, no ``=`` (the CLI's separator), no ``,``.
_KEY = re.compile(r"[A-Za-z0-9_.:/-]+")


def check_metadata(metadata: Mapping[str, str] | None) -> Mapping[str, str]:
    """``metadata`` as a read-only mapping; :class:`ConfigurationError` unless it maps at most :data:`MAX_ENTRIES`
    keys (1..:data:`MAX_KEY` characters of letters, digits, ``_ . : / -``) to strings of at most :data:`MAX_VALUE`
    characters."""
    if metadata is None:
        return MappingProxyType({})
    if not isinstance(metadata, Mapping):
        raise ConfigurationError(f"metadata must be a mapping of str to str, got {type(metadata).__name__}")
    if len(metadata) > MAX_ENTRIES:
        raise ConfigurationError(f"metadata may have at most {MAX_ENTRIES} keys, got {len(metadata)}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key) or len(key) > MAX_KEY:
            raise ConfigurationError(f"metadata key {key!r}: expected 1 to {MAX_KEY} letters, digits or _ . : / -")
        if not isinstance(value, str):
            raise ConfigurationError(f"metadata {key}: the value must be a str, got {type(value).__name__}")
        if len(value) > MAX_VALUE:
            raise ConfigurationError(f"metadata {key}: the value has {len(value)} characters, at most {MAX_VALUE}")
    return MappingProxyType(dict(metadata))

"""Everything that talks to Redis: connections, the breaker, key names, the Lua scripts and the broker.

Private. Modules, lowest first (each imports only those above it, and ``aqueue._core``'s errors, codec, settings,
wire and info):

- ``keys``: every key name of a queue (:data:`~aqueue._redis.keys.SUFFIXES`, for Python and Lua);
- ``connect``: URL → client; ``breaker``: the circuit breaker and the sorting of failures;
- ``scripts``: the Lua sources as loaded (``lua/_prelude.lua`` + ``lua/<name>.lua``, ``K.<name>`` substituted);
- ``guard``: the deadline, breaker and error sorting every broker call passes;
- ``base``: the client, its breaker and the scripts called by SHA, shared by the roles;
- ``producer`` (enqueue), ``consumer`` (stream → claim → run → settle, promotion, cron ticks), ``events``
  (events), ``admin`` (inspection, requeue, cleanup, pause): the broker's roles;
- ``broker``: :class:`~aqueue._redis.broker.Broker`, the four roles in one class.
"""

"""Everything that talks to Redis: connections, the breaker, key names, the Lua scripts and the broker.

Private.
"""

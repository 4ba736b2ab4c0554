"""Redis backend: connection from a URL, Lua scripts, and the broker (the only code that speaks Redis)."""

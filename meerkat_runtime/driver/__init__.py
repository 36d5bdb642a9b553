"""Runtime drivers: one in-memory core (``core.RuntimeCore``, no IO) held by
the ephemeral driver (memory only) and by the persistent one (memory plus a
store), both seen by callers as ``face.RuntimeDriver``."""

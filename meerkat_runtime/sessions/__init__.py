"""Sessions with executors: the runtime loop, completion waiters, the control plane."""

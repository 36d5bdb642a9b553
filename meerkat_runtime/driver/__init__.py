"""Runtime drivers: the ephemeral one (all logic, no IO) and, later, the persistent one."""

"""Test kits shipped with the library: store conformance (and, later, faults)."""

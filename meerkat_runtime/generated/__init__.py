# generated from spec/lifecycle.yaml — edit the spec, not this file.
# Regenerate with `make generate` (python -m codegen generate).
"""Modules rendered from spec/ by codegen; never edit them by hand."""

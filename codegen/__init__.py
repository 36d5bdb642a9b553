"""Spec tooling for meerkat_runtime: load, validate, model-check, render.

The lifecycle machines live in ``spec/lifecycle.yaml`` and the default policy in
``spec/policy.yaml``; everything under ``meerkat_runtime/generated/`` and
``diagrams/*.dot`` is derived from them by ``python -m codegen generate``.
"""

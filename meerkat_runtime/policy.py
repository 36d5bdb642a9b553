"""Policy resolution: which decision an accepted input gets (docs/behaviour.md
section 2).

Theory of operation: the default table is data generated from
``spec/policy.yaml`` (``generated.policy_table``), precomputed per kind and
idle/running. ``DefaultPolicyTable.resolve`` applies the one rule that is not
a table lookup: an input with a handling-mode hint takes the override row,
unless its kind is exempt (P-4). Drivers accept any ``PolicyTable``, so users
can route kinds to supersede or coalesce (decision 20). The default table
holds no state, so ``resolve`` is static: the class itself is a
``PolicyTable`` (``policy_table=DefaultPolicyTable``), as is an instance.
"""

from __future__ import annotations

from typing import Protocol

from meerkat_runtime.generated.policy_table import (
    FALLBACK_ROW,
    KIND_ROWS,
    OVERRIDE_EXEMPT_KINDS,
    OVERRIDE_ROWS,
    SILENT_KINDS,
    ApplyMode,
    ConsumePoint,
    DrainPolicy,
    PolicyDecision,
    QueueMode,
    RoutingDisposition,
    WakeMode,
)
from meerkat_runtime.generated.spec_types import HandlingMode


class PolicySubject(Protocol):
    """What policy resolution reads of an input."""

    def kind_id(self) -> str: ...

    def handling_mode_hint(self) -> HandlingMode | None: ...


class PolicyTable(Protocol):
    """Anything that decides how an accepted input is treated."""

    def resolve(self, input: PolicySubject, runtime_idle: bool) -> PolicyDecision: ...


class DefaultPolicyTable:
    """Upstream's default table (P-4, P-5), generated from spec/policy.yaml."""

    __slots__ = ()

    @staticmethod
    def resolve(input: PolicySubject, runtime_idle: bool) -> PolicyDecision:
        kind = input.kind_id()
        hint = input.handling_mode_hint()
        if hint is not None and kind not in OVERRIDE_EXEMPT_KINDS:
            row = OVERRIDE_ROWS[(hint, kind in SILENT_KINDS)]
        else:
            row = KIND_ROWS.get(kind, FALLBACK_ROW)
        return row[0] if runtime_idle else row[1]

    @staticmethod
    def resolve_by_kind(kind: str, runtime_idle: bool) -> PolicyDecision:
        """The kind's own row, ignoring any hint (unknown kinds take the fallback)."""
        row = KIND_ROWS.get(kind, FALLBACK_ROW)
        return row[0] if runtime_idle else row[1]


__all__ = [
    "ApplyMode",
    "ConsumePoint",
    "DefaultPolicyTable",
    "DrainPolicy",
    "PolicyDecision",
    "PolicySubject",
    "PolicyTable",
    "QueueMode",
    "RoutingDisposition",
    "WakeMode",
]

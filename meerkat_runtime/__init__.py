"""meerkat_runtime: the durable control plane for LLM-agent sessions.

``PostgresRuntimeStore`` is imported on first use (as in ``store``): it
needs the ``postgres`` extra, which nothing else here does.
"""

# The one place the version is set: pyproject.toml reads it from here.
__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from meerkat_runtime.blobs import (
    BlobPayload,
    BlobRef,
    BlobStore,
    BlobStoreError,
    FileBlobStore,
    MemoryBlobStore,
)
from meerkat_runtime.driver.ephemeral import (
    EphemeralRuntimeDriver,
    RuntimeControlCommand,
)
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.errors import MeerkatError, RuntimeDriverError, RuntimeOwnedError
from meerkat_runtime.events import (
    InputLifecycleEvent,
    RunLifecycleEvent,
    RuntimeEvent,
    RuntimeEventEnvelope,
)
from meerkat_runtime.generated.input_lifecycle import (
    InputLifecycleAuthority,
    InputLifecycleEffect,
    InputLifecycleError,
    InputLifecycleInput,
    InputLifecycleSnapshot,
    InputLifecycleState,
    InputLifecycleTransition,
)
from meerkat_runtime.generated.runtime_control import (
    RuntimeControlAuthority,
    RuntimeControlEffect,
    RuntimeControlError,
    RuntimeControlInput,
    RuntimeControlSnapshot,
    RuntimeControlTransition,
    RuntimeState,
)
from meerkat_runtime.generated.spec_types import (
    AdmissionEffect,
    HandlingMode,
    InputAbandonReason,
    InputTerminalOutcome,
)
from meerkat_runtime.ids import (
    BlobId,
    CorrelationId,
    IdempotencyKey,
    InputId,
    LogicalRuntimeId,
    RunId,
    SessionId,
    SupersessionKey,
)
from meerkat_runtime.input_state import (
    InputState,
    InputStateHistoryEntry,
    PolicySnapshot,
)
from meerkat_runtime.inputs import (
    ContentBlock,
    ContinuationInput,
    ExternalEventInput,
    FlowStepInput,
    ImageData,
    Input,
    InputDurability,
    InputHeader,
    InputOrigin,
    InputVisibility,
    OperationInput,
    PeerConvention,
    PeerInput,
    PromptInput,
    ResponseProgressPhase,
    ResponseTerminalStatus,
    RuntimeTurnMetadata,
)
from meerkat_runtime.ledger import Lane
from meerkat_runtime.outcomes import (
    AcceptOutcome,
    DestroyReport,
    PostAdmissionSignal,
    RecoveryReport,
    RecycleReport,
    RejectReason,
    ResetReport,
    RetireReport,
)
from meerkat_runtime.policy import (
    ApplyMode,
    ConsumePoint,
    DefaultPolicyTable,
    DrainPolicy,
    PolicyDecision,
    PolicyTable,
    QueueMode,
    RoutingDisposition,
    WakeMode,
)
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt, RunEvent
from meerkat_runtime.sessions.adapter import RuntimeSessionAdapter
from meerkat_runtime.sessions.completion import CompletionHandle, CompletionOutcome
from meerkat_runtime.sessions.control_plane import (
    RuntimeControlPlane,
    RuntimeControlPlaneError,
)
from meerkat_runtime.sessions.executor import (
    CallbackPending,
    CoreApplyOutput,
    CoreExecutor,
    CoreExecutorError,
    RunControlCommand,
    RunPrimitive,
    RunResult,
    receipt_for,
)
from meerkat_runtime.sessions.fleet import FleetWorker
from meerkat_runtime.sessions.submitter import RuntimeSubmitter
from meerkat_runtime.store import (
    InMemoryRuntimeStore,
    RuntimeStore,
    RuntimeStoreError,
    SessionDelta,
    SqliteRuntimeStore,
)
from meerkat_runtime.store.verify import verify

if TYPE_CHECKING:
    from meerkat_runtime.store.postgres import PostgresRuntimeStore


def __getattr__(name: str) -> Any:
    if name == "PostgresRuntimeStore":
        from meerkat_runtime.store.postgres import PostgresRuntimeStore

        return PostgresRuntimeStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AcceptOutcome",
    "AdmissionEffect",
    "ApplyMode",
    "BlobId",
    "BlobPayload",
    "BlobRef",
    "BlobStore",
    "BlobStoreError",
    "CallbackPending",
    "CompletionHandle",
    "CompletionOutcome",
    "ConsumePoint",
    "ContentBlock",
    "ContinuationInput",
    "CoreApplyOutput",
    "CoreExecutor",
    "CoreExecutorError",
    "CorrelationId",
    "DefaultPolicyTable",
    "DestroyReport",
    "DrainPolicy",
    "EphemeralRuntimeDriver",
    "ExternalEventInput",
    "FileBlobStore",
    "FleetWorker",
    "FlowStepInput",
    "HandlingMode",
    "IdempotencyKey",
    "ImageData",
    "InMemoryRuntimeStore",
    "Input",
    "InputAbandonReason",
    "InputDurability",
    "InputHeader",
    "InputId",
    "InputLifecycleAuthority",
    "InputLifecycleEffect",
    "InputLifecycleError",
    "InputLifecycleEvent",
    "InputLifecycleInput",
    "InputLifecycleSnapshot",
    "InputLifecycleState",
    "InputLifecycleTransition",
    "InputOrigin",
    "InputState",
    "InputStateHistoryEntry",
    "InputTerminalOutcome",
    "InputVisibility",
    "Lane",
    "LogicalRuntimeId",
    "MeerkatError",
    "MemoryBlobStore",
    "OperationInput",
    "PeerConvention",
    "PeerInput",
    "PersistentRuntimeDriver",
    "PolicyDecision",
    "PolicySnapshot",
    "PolicyTable",
    "PostAdmissionSignal",
    "PostgresRuntimeStore",
    "PromptInput",
    "QueueMode",
    "RecoveryReport",
    "RecycleReport",
    "RejectReason",
    "ResetReport",
    "ResponseProgressPhase",
    "ResponseTerminalStatus",
    "RetireReport",
    "RoutingDisposition",
    "RunApplyBoundary",
    "RunBoundaryReceipt",
    "RunControlCommand",
    "RunEvent",
    "RunId",
    "RunLifecycleEvent",
    "RunPrimitive",
    "RunResult",
    "RuntimeControlAuthority",
    "RuntimeControlCommand",
    "RuntimeControlEffect",
    "RuntimeControlError",
    "RuntimeControlInput",
    "RuntimeControlPlane",
    "RuntimeControlPlaneError",
    "RuntimeControlSnapshot",
    "RuntimeControlTransition",
    "RuntimeDriverError",
    "RuntimeEvent",
    "RuntimeEventEnvelope",
    "RuntimeOwnedError",
    "RuntimeSessionAdapter",
    "RuntimeState",
    "RuntimeStore",
    "RuntimeStoreError",
    "RuntimeSubmitter",
    "RuntimeTurnMetadata",
    "SessionDelta",
    "SessionId",
    "SqliteRuntimeStore",
    "SupersessionKey",
    "WakeMode",
    "receipt_for",
    "verify",
]

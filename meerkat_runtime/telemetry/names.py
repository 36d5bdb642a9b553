"""The names meerkat-runtime's telemetry uses: spans, metrics, attributes.

They are a contract with an operator's dashboards and alerts (README,
"Telemetry"), so they live in one place, apart from the code that needs the
OpenTelemetry API, and change only with a release note.
"""

from __future__ import annotations

# The instrumentation scope: the tracer's and the meter's name.
SCOPE = "meerkat_runtime"

# ------------------------------------------------------------------ spans
ACCEPT_SPAN = "meerkat.accept"
RUN_SPAN = "meerkat.run"
BOUNDARY_SPAN = "meerkat.boundary_commit"
RECOVERY_SPAN = "meerkat.recovery"
STORE_COMMIT_SPAN = "meerkat.store.commit"

# ------------------------------------------------------------- attributes
RUNTIME = "meerkat.runtime_id"
INPUT_ID = "meerkat.input_id"
INPUT_KIND = "meerkat.input.kind"
EXISTING_ID = "meerkat.input.existing_id"  # what a duplicate duplicates
OUTCOME = "meerkat.outcome"
# The policy decision in one attribute (each one costs the SDK a check):
# "<queue mode>/<apply mode>/<wake mode>/<consume point> v<table version>".
POLICY = "meerkat.policy"
RUN_ID = "meerkat.run_id"
BATCH_SIZE = "meerkat.run.batch_size"
ATTEMPT = "meerkat.run.attempt"
LANE = "meerkat.run.lane"
ERROR = "meerkat.run.error"
APPLIED = "meerkat.boundary.inputs"
SEQUENCE = "meerkat.boundary.sequence"
RECOVERED = "meerkat.recovery.inputs_recovered"
REQUEUED = "meerkat.recovery.inputs_requeued"
ABANDONED = "meerkat.recovery.inputs_abandoned"
GROUP_SIZE = "meerkat.store.group_size"
DB_SYSTEM = "db.system"  # OpenTelemetry's own name: sqlite, postgresql

# ---------------------------------------------------------------- metrics
ACCEPTED = "meerkat.inputs.accepted"
DEDUPLICATED = "meerkat.inputs.deduplicated"
REJECTED = "meerkat.inputs.rejected"
SUPERSEDED = "meerkat.inputs.superseded"
COALESCED = "meerkat.inputs.coalesced"
QUEUE_DEPTH = "meerkat.queue.depth"
RUN_DURATION = "meerkat.run.duration"
COMMIT_LATENCY = "meerkat.store.commit.duration"
COMMIT_GROUP = "meerkat.store.commit.group_size"
RECOVERY_DURATION = "meerkat.recovery.duration"
FENCED_WRITES = "meerkat.store.fenced_writes"

# ------------------------------------------------------------ log records
# The ``extra`` fields every record of the library's loggers carries (None
# when they do not apply), so a formatter may name them unconditionally.
LOG_FIELDS = ("runtime_id", "run_id", "input_id")

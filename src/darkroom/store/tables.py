"""The database schema: SQLAlchemy Core tables. Migrations in ``store/migrations`` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=True),
    Column("tier", String(40), nullable=False),
    Column("balance", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("balance >= 0", name="balance_not_negative"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# Append-only: rows are inserted, never updated or deleted. ``amount`` is signed (+grant, -charge,
# +refund); ``balance_after`` is the account balance once the row's transaction committed.
ledger = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("project_id", String(40), nullable=True),
    Column("note", String(500), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("kind IN ('grant', 'charge', 'refund')", name="kind_known"),
    # One charge and at most one refund per project, enforced by the database itself.
    UniqueConstraint("project_id", "kind", name="uq_ledger_project_kind"),
    Index("ix_ledger_account_id_id", "account_id", "id"),
    Index("ix_ledger_account_id_created_at", "account_id", "created_at"),
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("name", String(500), nullable=True),
    Column("status", String(16), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("image_count", Integer, nullable=False),
    Column("model", String(80), nullable=False),
    Column("backend", String(40), nullable=False),
    Column("resolution", String(16), nullable=False),
    Column("aspect_ratio", String(16), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("tool", String(80), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("final_prompt", Text, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("credits_charged", BigInteger, nullable=False),
    Column("error_code", String(80), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("rendered_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("render_ms", Integer, nullable=True),
    # How the images are encoded on disk: png, jpeg or webp (quality 1..100 for the lossy ones).
    Column("output_format", String(8), nullable=False, server_default="png"),
    Column("output_quality", Integer, nullable=True),
    # Edits: how many source images (and whether a mask) were stored for the backend.
    Column("source_count", Integer, nullable=False, server_default="0"),
    Column("has_mask", Boolean, nullable=False, server_default=false()),
    # Once complete: JSON list, per image, of {"sha256", "bytes", "key"}: the stored object's
    # digest and size, so that a client can verify what it downloaded, and its storage key.
    Column("outputs", Text, nullable=True),
    # When the retention policy deleted the images (the project stays, without downloads).
    Column("outputs_deleted_at", DateTime(timezone=True), nullable=True),
    # Rendered through a vendor's API: what the vendor counted (for the operator's margins).
    Column("upstream_input_tokens", Integer, nullable=True),
    Column("upstream_output_tokens", Integer, nullable=True),
    Column("upstream_images", Integer, nullable=True),
    # What the backend is doing while the project is rendering ("loading the weights"), if not
    # simply rendering; cleared when the project ends.
    Column("status_reason", String(200), nullable=True),
    # The id of the request that created the project, carried into the job's log lines.
    Column("request_id", String(64), nullable=True),
    # While rendering: the node whose worker holds the job, and until when. Every write of the
    # worker's (note, complete, fail) checks both in its own statement; a lease that passes lets
    # another worker take the job over as a new attempt.
    Column("lease_owner", String(40), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    # The node whose request waits for this project's images (the OpenAI dialect answers
    # synchronously); when that node is gone, nobody will receive them: canceled and refunded.
    Column("awaited_by", String(40), nullable=True),
    # That request has still to hand the images over: cleared once it has written its answer.
    # A complete project whose waiter's node is gone before that is canceled and refunded too.
    # (False for projects of older versions' nodes, which never clear it.)
    Column("answer_pending", Boolean, nullable=False, server_default=false()),
    # JSON object of what the caller asked of a vendor beyond the prompt (OpenAI's
    # "moderation", "input_fidelity"); null: nothing.
    Column("options", Text, nullable=True),
    CheckConstraint(
        "status IN ('draft', 'queued', 'rendering', 'complete', 'error', 'canceled')",
        name="status_known",
    ),
    UniqueConstraint("account_id", "idempotency_key", name="uq_projects_account_idempotency"),
    Index("ix_projects_status_created_at", "status", "created_at"),
    Index("ix_projects_account_id_created_at", "account_id", "created_at"),
    Index("ix_projects_status_lease_until", "status", "lease_until"),
    Index("ix_projects_status_completed_at", "status", "completed_at"),
)

# Every darkroom process (API node, worker, embedded server) while it runs: a heartbeat that the
# others read to tell a live node from a dead one.
nodes = Table(
    "nodes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    # JSON list of the models its workers take (null: every model), and how many at once.
    Column("models", Text, nullable=True),
    Column("concurrency", Integer, nullable=False, server_default="0"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, index=True),
    Column("stopped_at", DateTime(timezone=True), nullable=True),
)

# Fair queueing: when each account last had a job claimed; the account served longest ago goes
# first.
queue_turns = Table(
    "queue_turns",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("last_claim_at", DateTime(timezone=True), nullable=False),
)

# Token buckets shared by every node (the per-key rate limit holds for the cluster). ``updated_at``
# is Unix time in seconds.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    # JSON list of event types, e.g. ["image.completed", "image.errored"].
    Column("events", Text, nullable=False),
    # The HMAC key for signatures: shown once at creation, kept to sign every delivery.
    Column("secret", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
    # Set while the owner has the endpoint disabled: nothing is sent to it, and new events are
    # not written for it; what was pending waits, and goes out once it is enabled again.
    Column("disabled_at", DateTime(timezone=True), nullable=True),
)

# One event for one endpoint; written in the same transaction as the status change it reports,
# so it exists before it is sent and survives a crash. Its id is the webhook-id header.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("endpoint_id", String(40), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("account_id", String(40), nullable=False),
    Column("event", String(40), nullable=False),
    Column("project_id", String(40), nullable=True),
    # The exact bytes sent (UTF-8 JSON), the same on every attempt.
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    # A sender holds a delivery until then; one that died mid-send lets it go when it passes.
    Column("lease_until", DateTime(timezone=True), nullable=True),
    # The node whose sender holds the lease; its record of the attempt checks it.
    Column("lease_owner", String(40), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    CheckConstraint(
        "status IN ('pending', 'delivered', 'failed', 'canceled')", name="status_known"
    ),
    # At most one delivery of an event about a project per endpoint.
    UniqueConstraint("endpoint_id", "project_id", "event", name="uq_webhook_deliveries_event"),
    Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "delivery_id", String(40), ForeignKey("webhook_deliveries.id"), nullable=False, index=True
    ),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String(500), nullable=True),
    Column("duration_ms", Integer, nullable=False),
)

# Files uploaded through POST /v1/files/upload-urls (an editor's input images): a row from the
# moment the upload URL is handed out; the object is ``uploads/<id>.<extension>`` in the storage.
# Refused for use, and deleted, once ``expires_at`` (the database's clock) has passed.
uploads = Table(
    "uploads",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("extension", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    # When darkroom received the PUT (its own upload URLs); null until then, and always for a
    # presigned PUT, which goes to the bucket directly.
    Column("stored_at", DateTime(timezone=True), nullable=True),
    Column("bytes", BigInteger, nullable=True),
)

# What stored data means, where a release changed it, so that nodes of the release before keep
# reading it during a rolling upgrade: ``webhook_secrets`` is "clear" while signing secrets may
# still be stored in clear for older nodes, "sealed" once all are encrypted (migration 0011).
data_formats = Table(
    "data_formats",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("format", String(40), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

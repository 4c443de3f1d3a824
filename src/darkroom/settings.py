"""darkroom's configuration: one ``Settings`` object, built at start-up and passed in.

Every field can be set as a ``DARKROOM_<NAME>`` environment variable (or a CLI flag of
``darkroom serve``); nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DARKROOM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path("./darkroom-data")
    # Base URL used in download links; derived from host and port when empty.
    public_url: str = ""
    # SQLAlchemy URL; empty means a SQLite file in the data directory.
    database_url: str = ""
    # SQLite's synchronous pragma: FULL (a commit survives power loss: one fsync per commit, about
    # 0.5 ms here) or NORMAL (WAL: still atomic and survives a process crash, but the last commits
    # may roll back on power loss).
    sqlite_synchronous: str = Field(default="FULL", pattern="^(NORMAL|FULL)$")
    # Where rendered images and edit sources are kept: a directory (empty: the data directory),
    # or an S3-compatible bucket, ``s3://bucket/prefix``, reached with the usual AWS settings
    # (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, or a role). The
    # nodes of a cluster share one bucket (or one mounted directory).
    storage_url: str = ""
    # Every node of a cluster must see the images that any other node made. On a shared database
    # the default storage (each node's own data directory) refuses the start, unless this says
    # that the data directory is itself shared between the nodes (a network mount). A directory
    # given in storage_url is taken to be one that every node mounts.
    storage_shared: bool = False
    # Download links of a bucket: "presigned" URLs of the bucket (the bytes go from the bucket to
    # the client), or "proxy": darkroom's own links, and darkroom streams the bytes (for a bucket
    # that clients cannot reach).
    storage_links: str = Field(default="presigned", pattern="^(presigned|proxy)$")
    # Rendered images older than this many days are deleted (the project stays, and says so);
    # 0 keeps them for ever.
    retention_days: float = Field(default=0, ge=0)
    # Operator catalog merged over the shipped one.
    catalog: Path | None = None
    # The server's secret: the HMAC key of download links and the source of the key that
    # encrypts webhook signing secrets at rest; empty means one generated once and kept in the
    # data dir (secret.key, readable by the owner only).
    secret_key: str = ""
    # The same, read from a file (a mounted secret, the container convention); a missing or empty
    # file refuses the start. One of secret_key and secret_key_file, not both.
    secret_key_file: Path | None = None
    # Rotating the secret: the previous secret keys, comma-separated. They still decrypt webhook
    # secrets (until `darkroom secrets rotate` re-encrypts them under secret_key) and still
    # verify download links (until those expire); nothing new is signed or encrypted with them.
    previous_secret_keys: str = ""
    # How long download links work (at most a week: the limit of S3's presigned URLs).
    download_ttl_seconds: int = Field(default=24 * 3600, ge=1, le=7 * 24 * 3600)
    # Projects rendered through a vendor's API (openai, gemini, seedream backends) at once by
    # this process, beside the render workers: such a render waits on the network, not on a GPU.
    upstream_concurrency: int = Field(default=16, ge=1, le=256)
    # Render workers in this process; 0 makes an API-only node that leaves rendering to the
    # worker processes (``darkroom worker``) that share its database.
    workers: int = Field(default=2, ge=0, le=64)
    # The models this process's workers take (empty: every model), e.g. one pool per GPU type.
    worker_models: list[str] = Field(default_factory=list)
    # How often idle workers and waiters look in the database when no notification can reach
    # them (SQLite shared by several processes, or PostgreSQL while LISTEN is reconnecting).
    poll_seconds: float = Field(default=1.0, gt=0)
    # A worker holds each job under a lease that its heartbeat renews every third of this; a job
    # whose lease passed (its worker died or was cut off) is taken over by a live worker. Every
    # node also heartbeats, so that others can tell it is gone after this long.
    lease_seconds: float = Field(default=15.0, ge=1)
    # A job cut off (a worker's death or stop) is re-run until it has been tried this often, then
    # failed and refunded.
    max_attempts: int = Field(default=2, ge=1)
    # Backpressure: queued projects allowed per account and in all; a create beyond either is a
    # 429 with Retry-After, before anything is charged. 0 turns a cap off.
    queue_max_per_account: int = Field(default=1000, ge=0)
    queue_max_total: int = Field(default=100_000, ge=0)
    # A transient database error (locked, serialization failure, dropped connection) is retried
    # with exponential backoff for up to this long before it is reported.
    database_retry_seconds: float = Field(default=60.0, ge=0)
    # At start-up, how long a node waits for a database that does not answer yet (started
    # beside it, still starting up), saying so in the log every few seconds; then it exits.
    database_start_seconds: float = Field(default=60.0, ge=0)
    # An API request gives up sooner: a database still locked or unreachable after this long
    # answers 503 with Retry-After (the background loops keep waiting it out).
    database_request_seconds: float = Field(default=5.0, ge=0)
    # On shutdown, how long jobs in flight may run on before they are left to the next start.
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # How long a valid API key is trusted without a database read; a key revoked or a tier changed
    # on another node (or by the operator CLI) takes effect here within this many seconds (at
    # once on PostgreSQL, where the change is notified). 0 checks the database on every request.
    auth_cache_seconds: float = Field(default=1.0, ge=0)
    # Creates per API key per minute (token bucket); 0 turns the limit off.
    rate_limit_per_minute: int = Field(default=600, ge=0)
    # The OpenAI dialect answers when the images are ready: a job still unfinished after this many
    # seconds is canceled and refunded, and the request ends with a 504.
    sync_timeout_seconds: float = Field(default=300.0, gt=0)
    # How long the OpenAI dialect's image URLs work (OpenAI's are valid for an hour).
    sync_url_ttl_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    # Source images of an edit (uploaded, base64 or fetched by URL): largest file and pixel count.
    source_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    source_max_pixels: int = Field(default=4096 * 4096, ge=64 * 64)
    # Uploads (POST /v1/files/upload-urls, then a PUT of the file): the largest file taken, and
    # how long an upload is kept (and its upload URL works) before it is deleted.
    upload_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    upload_ttl_seconds: float = Field(default=24 * 3600.0, gt=0, le=7 * 24 * 3600)
    # Slow and greedy clients. A connection whose request head (request line and headers) is not
    # complete this many seconds after it opened, or after the request's first byte, is closed.
    http_head_timeout_seconds: float = Field(default=10.0, gt=0)
    # Open connections per process: a request on one more is answered 503 with Retry-After.
    # ``darkroom serve`` raises the process's descriptor limit (RLIMIT_NOFILE) to fit, up to
    # the hard limit, and logs a warning if that is too low.
    http_max_connections: int = Field(default=2048, ge=1)
    # The largest request body: a larger one is answered 413 as soon as that is known (from its
    # Content-Length, or while it is read), before it is held in memory or on disk, and nothing
    # is charged. Requests that carry source images (OpenAI edits and generations) may be
    # larger: one source at source_max_bytes in base64, plus this (``source_body_max_bytes``);
    # a PUT of an upload takes upload_max_bytes.
    http_body_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    # A request body that stalls, no byte of it arriving for this many seconds (a client that
    # sent its head, then stopped), is answered 408 and its connection closed.
    http_body_timeout_seconds: float = Field(default=30.0, gt=0)
    # Fetching a source image by URL: the limit for the whole fetch, and whether loopback, private
    # and link-local addresses may be fetched (never on a server others can reach: that would
    # let callers probe the operator's network).
    fetch_timeout_seconds: float = Field(default=10.0, gt=0)
    fetch_allow_private: bool = False
    # Every catalog model is rendered by the preview backend, whatever the catalog says.
    preview_only: bool = True
    # The diffusers backend: where it runs ("auto": cuda, then mps, then cpu; or e.g. "cuda:1")
    # and in which dtype ("auto": bfloat16 on a GPU, float32 on the CPU; a model's own
    # weights.dtype wins over this).
    device: str = Field(default="auto", pattern=r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")
    dtype: str = Field(default="auto", pattern="^(auto|bfloat16|float16|float32)$")
    # Model name -> hub id or local directory, over the catalog's weights.source.
    weights: dict[str, str] = Field(default_factory=dict)
    # On a GPU: compile the denoiser's repeated blocks and the VAE decoder, and warm up each
    # served size once, trading a slower first job for faster ones.
    optimize: bool = True
    # The development account (a business account with dev_account_credits, its key printed
    # and kept in the data directory): created by ``darkroom serve`` on an empty database on the
    # embedded default only (SQLite, listening on loopback), or when this says so
    # (``--dev-account``). Its key is printed only by a server that listens on loopback.
    dev_account: bool | None = None
    dev_account_credits: int = Field(default=1_000_000, ge=0)
    # The operator token guarding the admin API (/admin/v1); empty means one generated once and
    # kept in the data directory (admin-token, readable by the owner only).
    admin_token: str = ""
    # The same, read from a file (a mounted secret); one of admin_token and admin_token_file.
    admin_token_file: Path | None = None
    # Webhooks: whether endpoints may be on loopback, private or link-local addresses (checked
    # after DNS resolution). Unset: allowed only while the server itself listens on loopback
    # only (a development machine), refused on a server that others can reach.
    webhooks_allow_private: bool | None = None
    # A delivery attempt that gets no 2xx answer within this many seconds has failed.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Retries: the first after this many seconds, then doubling (with jitter) up to
    # webhook_retry_max_seconds, until the delivery is webhook_max_age_seconds old.
    webhook_retry_seconds: float = Field(default=10.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_max_age_seconds: float = Field(default=24 * 3600.0, gt=0)
    # Deliveries sent at once by this process.
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    # Fairness: sends in flight at once to one endpoint (counted over every process's leases),
    # and the share of this process's webhook_concurrency one account may hold (at least one
    # send), so that one account's slow endpoints cannot take every slot from the others.
    webhook_endpoint_concurrency: int = Field(default=2, ge=1, le=256)
    webhook_account_share: float = Field(default=0.5, gt=0, le=1)
    # ``darkroom worker``: a port for its small HTTP listener (/healthz, /readyz, /metrics) on
    # ``host``; None opens none.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    log_level: str = "info"
    # "text" for people, "json" for log collectors (one JSON object per line).
    log_format: str = Field(default="text", pattern="^(text|json)$")
    # Prompts are user content: they are left out of the logs unless the operator turns this on.
    log_prompts: bool = False

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        """``secret_key`` and ``admin_token`` read from their files, when given as files."""
        self.secret_key = _from_file("DARKROOM_SECRET_KEY", self.secret_key, self.secret_key_file)
        self.admin_token = _from_file(
            "DARKROOM_ADMIN_TOKEN", self.admin_token, self.admin_token_file
        )
        return self

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def loopback_only(self) -> bool:
        """Whether the server listens on loopback only (nobody else can reach it)."""
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    @property
    def allow_private_webhooks(self) -> bool:
        if self.webhooks_allow_private is None:
            return self.loopback_only
        return self.webhooks_allow_private

    @property
    def source_body_max_bytes(self) -> int:
        """The largest body of a request that carries source images: one source at the source
        limit, base64-encoded (4/3 of it), plus an ordinary body's worth of other fields."""
        return -(-self.source_max_bytes * 4 // 3) + self.http_body_max_bytes

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    def require_shared_secrets(self) -> None:
        """On a database that several nodes share (anything but SQLite), refuse to start without
        the secrets they must share: each node would otherwise make up its own in its data
        directory, and a download link signed, or an operator token accepted, by one node would
        be refused by the others. SQLite (one node) keeps making them up once."""
        if self.is_sqlite:
            return
        missing = [
            name
            for name, value in (
                ("DARKROOM_SECRET_KEY", self.secret_key),
                ("DARKROOM_ADMIN_TOKEN", self.admin_token),
            )
            if not value
        ]
        if missing:
            raise ValueError(
                "a shared database needs DARKROOM_SECRET_KEY and DARKROOM_ADMIN_TOKEN set, the "
                "same on every node (download links signed on one node and the operator token "
                f"must hold on all of them); not set: {', '.join(missing)}"
            )

    def require_shared_storage(self) -> None:
        """On a database that several nodes share, refuse to start on storage that the other
        nodes cannot see (each node's own data directory): a worker's images would be missing
        on the API node that serves them (404). A bucket, a directory given in storage_url, or
        storage_shared (the data directory is a shared mount) is storage they share."""
        if self.is_sqlite or self.storage_url or self.storage_shared:
            return
        raise ValueError(
            "a shared database needs storage that every node sees: set DARKROOM_STORAGE_URL to "
            "a bucket (s3://bucket/prefix) or to a directory every node mounts "
            "(DARKROOM_STORAGE_SHARED=true if the data directory is itself shared)"
        )

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'darkroom.sqlite3').resolve()}"

    @property
    def previous_secrets(self) -> list[bytes]:
        """``previous_secret_keys``, each as bytes (blanks dropped)."""
        return [k.strip().encode() for k in self.previous_secret_keys.split(",") if k.strip()]

    @property
    def generated_secret_key_file(self) -> Path:
        """Where the generated secret is kept when no secret is given (SQLite only)."""
        return self.data_dir / "secret.key"

    @property
    def dev_key_file(self) -> Path:
        return self.data_dir / "dev-api-key"

    @property
    def generated_admin_token_file(self) -> Path:
        """Where the generated operator token is kept when none is given (SQLite only)."""
        return self.data_dir / "admin-token"


def _from_file(name: str, value: str, path: Path | None) -> str:
    """``value``, or the content of ``path`` (without its trailing newline) when given: the
    setting ``name`` from a mounted secret. Both, or a file missing or empty, are refused."""
    if path is None:
        return value
    try:
        content = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"{name}_FILE: cannot read {path} ({exc.strerror or exc})") from None
    if not content:
        raise ValueError(f"{name}_FILE: {path} is empty")
    if value and value != content:
        raise ValueError(f"{name} and {name}_FILE are both set: give one of them")
    return content

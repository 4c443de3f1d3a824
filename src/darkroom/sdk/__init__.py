"""darkroom's Python SDK: ``Client`` / ``AsyncClient`` (also importable from ``darkroom``)."""

from darkroom.sdk.client import AsyncClient, Client
from darkroom.sdk.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DarkroomError,
    DownloadError,
    ForbiddenTierError,
    GenerateTimeoutError,
    InsufficientCreditsError,
    JobFailedError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from darkroom.sdk.types import (
    Account,
    CreateResponse,
    ImageProject,
    ImageProjectWithDownloads,
    ModelInfo,
    ModelList,
    Progress,
)

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "Account",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "CreateResponse",
    "DarkroomError",
    "DownloadError",
    "ForbiddenTierError",
    "GenerateTimeoutError",
    "ImageProject",
    "ImageProjectWithDownloads",
    "InsufficientCreditsError",
    "JobFailedError",
    "ModelInfo",
    "ModelList",
    "NotFoundError",
    "Progress",
    "RateLimitError",
    "ServerError",
]

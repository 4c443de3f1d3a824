"""darkroom: a self-hosted AI image generation service, and its Python SDK.

``from darkroom import Client`` (or ``AsyncClient``) is the SDK; see :mod:`darkroom.sdk`.
"""

__version__ = "0.1.0"

from darkroom.sdk import *  # noqa: F403
from darkroom.sdk import __all__ as _sdk_names

__all__ = ["__version__", *_sdk_names]

"""darkroom: a self-hosted AI image generation service."""

__version__ = "0.1.0"

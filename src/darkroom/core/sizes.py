"""Exact pixel sizes, as the OpenAI dialect names them: ``"1024x768"``."""

from __future__ import annotations

import math
import re

MIN_EDGE = 256  # the shortest side an exact size may have
_SIZE = re.compile(r"([1-9][0-9]{1,4})x([1-9][0-9]{1,4})")


def parse_size(text: str) -> tuple[int, int] | None:
    """``"1024x768"`` → ``(1024, 768)``; None if it is not that form."""
    match = _SIZE.fullmatch(text.strip().lower())
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def format_size(width: int, height: int) -> str:
    return f"{width}x{height}"


def ratio_name(width: int, height: int) -> str:
    """The reduced aspect ratio: 1792x1024 → ``"7:4"``."""
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


def producible(width: int, height: int) -> bool:
    """Whether any backend can be asked for this size: sides multiples of 16, not too small."""
    return width % 16 == 0 and height % 16 == 0 and min(width, height) >= MIN_EDGE


def fitted(width: int, height: int, long_edge: int) -> tuple[int, int]:
    """The shape of ``width`` x ``height`` with its long side ``long_edge`` pixels: the short side
    rounded to a multiple of 16, and never below :data:`MIN_EDGE` (a very long shape is made a
    little less so)."""
    short = round(long_edge * min(width, height) / max(width, height) / 16) * 16
    short = min(long_edge, max(MIN_EDGE, short))
    return (long_edge, short) if width >= height else (short, long_edge)

"""Render time of the preview backend, PNG encoding included, at the sizes the catalog offers.

Each size is rendered ``--runs`` times (default 30), cycling through every composition with a
different prompt and seed per run, one image per call, after a few warm-up renders. Prints the
median and 90th percentile in milliseconds, and the 1024x1024 median against the 50 ms target.

Run from the repository root::

    .venv/bin/python benchmarks/preview_render.py
    .venv/bin/python benchmarks/preview_render.py --runs 100
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import PIL

from darkroom.engine.base import RenderRequest, StyleHint
from darkroom.engine.preview import COMPOSITIONS, PreviewBackend

SIZES = [(640, 640), (1024, 1024), (1024, 576), (2048, 2048)]
TARGET_MS = 50.0
PALETTE = ("#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51")
PROMPTS = [
    "a lighthouse on a rocky coast during a thunderstorm",
    "portrait of an old sailor with a pipe, soft light",
    "a bowl of ramen on a wooden table, steam rising",
    "futuristic city skyline at dusk with flying cars",
    "a red fox jumping over a frozen lake at dawn",
]


def request(width: int, height: int, run: int) -> RenderRequest:
    prompt = PROMPTS[run % len(PROMPTS)]
    style = StyleHint("bench", PALETTE, COMPOSITIONS[run % len(COMPOSITIONS)])
    return RenderRequest("bench", "flux-schnell", prompt, prompt, style, width, height, 1, run)


def measure(backend: PreviewBackend, width: int, height: int, runs: int) -> list[float]:
    for run in range(3):
        backend.render(request(width, height, run))
    times = []
    for run in range(runs):
        req = request(width, height, run)
        start = time.perf_counter()
        backend.render(req)
        times.append((time.perf_counter() - start) * 1000)
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="renders per size (default 30)")
    args = parser.parse_args()

    print(f"Python {platform.python_version()}, Pillow {PIL.__version__}, {args.runs} runs/size")
    print(f"{'size':>11}  {'median ms':>9}  {'p90 ms':>7}")
    backend = PreviewBackend()
    medians = {}
    for width, height in SIZES:
        times = measure(backend, width, height, args.runs)
        medians[width, height] = statistics.median(times)
        size = f"{width}x{height}"
        print(f"{size:>11}  {medians[width, height]:9.1f}  {percentile(times, 0.9):7.1f}")
    ratio = medians[1024, 1024] / TARGET_MS
    print(f"1024x1024 median / {TARGET_MS:.0f} ms target = {ratio:.2f}")


if __name__ == "__main__":
    main()

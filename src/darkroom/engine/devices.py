"""Where and how the diffusers backend runs: device and dtype choice, and the GPU optimizations
(compiled repeated blocks, compiled VAE decoder, FlashAttention 3 on Hopper) that it applies
when it may. torch is imported by the functions, not by this module."""

from __future__ import annotations

import inspect
import logging
from typing import Any

log = logging.getLogger("darkroom.diffusers")


def choose_device(wanted: str = "auto") -> str:
    """``wanted``, or with "auto" the first of cuda, mps and cpu that this machine has."""
    import torch

    if wanted != "auto":
        return wanted
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(wanted: str, device: str) -> Any:
    """The torch dtype: ``wanted``, or with "auto" bfloat16 on a GPU and float32 on the CPU."""
    import torch

    if wanted == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    return getattr(torch, wanted)


def accepts(pipeline: Any, argument: str) -> bool:
    """Whether the pipeline's ``__call__`` takes ``argument``."""
    return argument in inspect.signature(pipeline.__call__).parameters


def optimize(pipeline: Any) -> list[str]:
    """Apply what speeds this pipeline up on a CUDA GPU; the names of what was applied. Each step
    is optional: one that this torch, diffusers or GPU cannot do is skipped and logged."""
    import torch

    applied: list[str] = []
    denoiser = getattr(pipeline, "transformer", None) or getattr(pipeline, "unet", None)
    major, _ = torch.cuda.get_device_capability()
    if denoiser is not None and major >= 9 and hasattr(denoiser, "set_attention_backend"):
        try:
            denoiser.set_attention_backend("_flash_3")
            applied.append("flash-attention-3")
        except Exception as exc:  # the kernels are not installed
            log.info("FlashAttention 3 not used: %s", exc)
    if denoiser is not None:
        if getattr(denoiser, "_repeated_blocks", None):
            denoiser.compile_repeated_blocks(fullgraph=True)
            applied.append("compiled repeated blocks")
        else:
            pipeline_part = torch.compile(denoiser, fullgraph=False)
            if getattr(pipeline, "transformer", None) is denoiser:
                pipeline.transformer = pipeline_part
            else:
                pipeline.unet = pipeline_part
            applied.append("compiled denoiser")
    vae = getattr(pipeline, "vae", None)
    if vae is not None:
        vae.to(memory_format=torch.channels_last)
        vae.decode = torch.compile(vae.decode)
        applied.append("compiled VAE decoder")
    return applied

"""Per-image latency of the open-weight models: a bare diffusers pipeline call against darkroom's
own path (``devices.optimize`` + the model family's ``render`` / ``DiffusersBackend.render``),
side by side in one run.

``--device cuda`` (the default when there is a GPU), for ``--model flux-schnell`` (default),
``z-image-turbo`` or ``flux-2-klein`` at 1024x1024 (``--size``):

1. builds the FULL-SIZE architecture with random weights directly on the GPU in bf16, with no
   download (time per image does not depend on the weight values). The big modules (the
   transformer and the T5-XXL / Qwen3-4B text encoder) are constructed under
   ``accelerate.init_empty_weights()``, which puts their parameters on the meta device but
   leaves buffers (e.g. Qwen3's rotary ``inv_freq``) real, on the CPU; each parameter is then
   replaced by a bf16 tensor allocated on the GPU and filled (normal(0, 0.02) for tensors of 2 or
   more dimensions, ones for the 1-D norm weights, zeros for biases) and each buffer is moved to
   the GPU unchanged, so no ``to_empty`` leaves a buffer uninitialized and no fp32 copy of the
   weights is ever made. The small modules (CLIP-L, the VAE) are built normally and moved;
2. times the plain pipeline call (``pipe(prompt, height, width, num_inference_steps,
   guidance_scale=0.0, generator=...)``) with diffusers' defaults, after one warm-up (also with
   darkroom's ``max_sequence_length`` when that differs from the pipeline's default, to separate
   what the shorter text costs from what the optimizations bring);
3. then (the baseline is measured first: ``optimize`` mutates the pipeline) passes the same
   pipeline through ``devices.optimize`` and times its family's ``render(request, settings)``;
   the warm-up (compilation) is excluded from the timing but printed; then an edit of one
   source image the same way (FLUX.1 and Z-Image: image to image at strength 0.6, FLUX.2
   [klein]: one reference), with the peak GPU memory of each;
4. prints the medians, the ratio darkroom / baseline (target <= 0.5 for FLUX) and the ratio to the
   compute floor (FLUX.1-schnell: ~313 TFLOP per 1024x1024 image in 4 steps, Z-Image-Turbo: ~521
   TFLOP in 9 forwards; scaled by (size / 1024)^2 for another ``--size``, which is rough);
5. pushes ``--queue`` projects of one image through a ``DiffusersBackend`` (2 threads calling
   ``render`` concurrently; the backend serializes them on its device lock), then the same with
   ``--batch`` images per project, and reports images per second. The built pipeline is handed
   to the backend (``backend.adopt``): there are no weights to ``from_pretrained``.

``--device cpu`` uses the TINY pipelines of ``tests/tiny_pipelines.py`` (saved to a temporary
directory, loaded with ``from_pretrained``) at 256x256 and measures darkroom's overhead: a bare
pipeline call plus the PNG encoding (the backend returns PNG bytes; the bare call also gets the
catalog's ``max_sequence_length``, so both do the same work) against
``DiffusersBackend.render`` with the pipeline resident (``optimize=False`` on the CPU),
interleaved A/B (``--runs`` pairs, 30 by default), for flux-schnell, z-image-turbo, flux-2-klein,
krea-2 and sdxl-turbo. Target: overhead <= 5 %.

``--dry-run`` builds the full-size modules of every local model (flux-schnell, z-image-turbo,
flux-2-klein, qwen-edit, qwen-image-2.1, krea-2) on the meta device only (no memory, no GPU),
prints their parameter counts and bf16 bytes (the table of docs/models.md) and, for FLUX.1 and
Z-Image, checks that the components fit together (meta-device forwards).

Run from the repository root::

    .venv/bin/python benchmarks/gpu_pipeline.py --device cpu                # ~15 s, no GPU
    .venv/bin/python benchmarks/gpu_pipeline.py --device cuda --model flux-schnell
    .venv/bin/python benchmarks/gpu_pipeline.py --device cuda --model z-image-turbo
    .venv/bin/python benchmarks/gpu_pipeline.py --dry-run
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the hub

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for tests.tiny_pipelines (--device cpu)

import torch  # noqa: E402
from tests.tiny_pipelines import (  # noqa: E402
    built,
    clip_tokenizer,
    qwen_tokenizer,
    t5_tokenizer,
)

from darkroom.engine import devices  # noqa: E402
from darkroom.engine.base import RenderRequest, StyleHint  # noqa: E402
from darkroom.engine.diffusers_backend import DiffusersBackend  # noqa: E402
from darkroom.engine.families import Family, by_name  # noqa: E402
from darkroom.engine.families.qwen_processor import image_only  # noqa: E402
from darkroom.engine.weights import WeightsEntry  # noqa: E402

PROMPT = "a lighthouse at dusk over a calm sea, volumetric light, 35mm photo"
STYLE = StyleHint("general", (), "scatter")
H100_BF16_TFLOPS = 989.0  # dense bf16 peak of an H100 / H200 SXM (fp8: twice that)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # engine/families/ (and the kind of tests/tiny_pipelines.py)
    steps: int
    max_sequence_length: int | None  # the catalog's (src/darkroom/data/catalog.toml)
    tflop_1024: float | None  # compute per 1024x1024 image (see /work/shared/models-notes.md)
    guidance: float = 0.0


MODELS = {
    "flux-schnell": ModelSpec("flux-schnell", "flux", 4, 256, 313.0),
    "z-image-turbo": ModelSpec("z-image-turbo", "zimage", 9, 512, 521.0),
    "flux-2-klein": ModelSpec("flux-2-klein", "flux2-klein", 4, 512, None, guidance=1.0),
    "krea-2": ModelSpec("krea-2", "krea2", 8, 512, None),
    "sdxl-turbo": ModelSpec("sdxl-turbo", "sdxl", 1, None, None),
}
# Counted on the meta device only (--dry-run): too large or too slow for the CPU comparison.
COUNTED = {
    "qwen-edit": ModelSpec("qwen-edit", "qwen-edit", 40, 512, None, guidance=4.0),
    "qwen-image-2.1": ModelSpec("qwen-image-2.1", "qwen-image", 40, None, None, guidance=1.0),
}
FULL_SIZE = ("flux-schnell", "z-image-turbo", "flux-2-klein")  # built on the GPU
DRY_RUN = ("flux-schnell", "z-image-turbo", "flux-2-klein", "qwen-edit", "qwen-image-2.1", "krea-2")


# --- full-size configurations (the published checkpoints' config.json values) -------------------

FLUX_TRANSFORMER: dict[str, Any] = {"guidance_embeds": False}  # class defaults = FLUX.1 (12 B)
T5_XXL: dict[str, Any] = {  # google/t5-v1_1-xxl, encoder only
    "vocab_size": 32128,
    "d_model": 4096,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "d_kv": 64,
    "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32,
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": False,
}
CLIP_L: dict[str, Any] = {  # openai/clip-vit-large-patch14, text tower
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "projection_dim": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}
FLUX_VAE: dict[str, Any] = {  # shared by FLUX.1 and Z-Image
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 16,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
ZIMAGE_TRANSFORMER: dict[str, Any] = {  # Tongyi-MAI/Z-Image-Turbo (6 B)
    "all_patch_size": [2],
    "all_f_patch_size": [1],
    "in_channels": 16,
    "dim": 3840,
    "n_layers": 30,
    "n_refiner_layers": 2,
    "n_heads": 30,
    "n_kv_heads": 30,
    "cap_feat_dim": 2560,
    "axes_dims": [32, 48, 48],
    "axes_lens": [1536, 512, 512],
    "rope_theta": 256.0,
    "t_scale": 1000.0,
}
QWEN3_4B: dict[str, Any] = {  # Qwen/Qwen3-4B, the base model (no LM head)
    "vocab_size": 151936,
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "tie_word_embeddings": True,
}
# FLUX.2 [klein] 4B's transformer, as diffusers' scripts/convert_flux2_to_diffusers.py builds it
# ("klein-4b"); its text encoder is Qwen3-4B (3 x 2560 = joint_attention_dim), its VAE the
# FLUX.2 one (AutoencoderKLFlux2's class defaults, as that script builds it).
FLUX2_KLEIN_4B: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 128,
    "num_layers": 5,
    "num_single_layers": 20,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 7680,
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (32, 32, 32, 32),
    "rope_theta": 2000,
    "eps": 1e-6,
    "guidance_embeds": False,
}
# Qwen/Qwen2.5-VL-7B-Instruct (Qwen-Image-Edit's encoder, with its LM head); not verified
# offline: the published config as remembered. The transformer and VAE of Qwen-Image-Edit are
# the diffusers classes' defaults (QwenImageTransformer2DModel: the 20 B Qwen-Image MMDiT).
QWEN25_VL_7B: dict[str, Any] = {
    "text_config": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"},
        "rope_theta": 1000000.0,
    },
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "patch_size": 14,
    },
    "vocab_size": 152064,
    "tie_word_embeddings": False,
}


def qwen3_vl(
    hidden: int,
    intermediate: int,
    vision_depth: int,
    vision_hidden: int,
    vision_intermediate: int,
    deepstack: list[int],
    tie: bool,
) -> dict[str, Any]:
    """A Qwen3-VL config (not verified offline: the published configs as remembered)."""
    return {
        "text_config": {
            "hidden_size": hidden,
            "intermediate_size": intermediate,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "vocab_size": 151936,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [24, 20, 20],
            },
        },
        "vision_config": {
            "depth": vision_depth,
            "hidden_size": vision_hidden,
            "intermediate_size": vision_intermediate,
            "num_heads": 16,
            "out_hidden_size": hidden,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "deepstack_visual_indexes": deepstack,
        },
        "vocab_size": 151936,
        "tie_word_embeddings": tie,
    }


# Qwen-Image 2.1's encoder: Qwen3-VL-8B (its transformer's context_in_dim is 4096); Krea 2's:
# Qwen3-VL-4B-Instruct (named in Krea2Pipeline's docstring). Their transformers and VAEs are
# the diffusers classes' defaults.
QWEN3_VL_8B = qwen3_vl(4096, 12288, 27, 1152, 4304, [8, 16, 24], tie=False)
QWEN3_VL_4B = qwen3_vl(2560, 9728, 24, 1024, 4096, [5, 11, 17], tie=True)

# --- small helpers ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def png(image: Any) -> bytes:
    """The PNG encoding the backend applies to every image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_ms(call: Callable[[], object], device: str) -> float:
    synchronize(device)
    started = time.perf_counter()
    call()
    synchronize(device)
    return (time.perf_counter() - started) * 1000


def request(model: str, size: int, seed: int, count: int = 1, project: str = "bench") -> Any:
    return RenderRequest(project, model, PROMPT, PROMPT, STYLE, size, size, count, seed)


def entry_for(spec: ModelSpec, source: str, dtype: str = "auto", max_batch: int = 4) -> Any:
    return WeightsEntry(
        source=source,
        family=spec.family,
        steps=spec.steps,
        guidance=spec.guidance,
        dtype=dtype,
        max_batch=max_batch,
        max_sequence_length=spec.max_sequence_length,
    )


def quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    # random weights may overflow to NaN; the image conversion then warns (timing is unaffected)
    warnings.filterwarnings("ignore", message="invalid value encountered in cast")
    # torch.compile of the VAE decoder traces through diffusers' lru_cache'd version checks
    warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")


def header(args: argparse.Namespace, device: str) -> None:
    import diffusers
    import transformers

    if device.startswith("cuda"):
        machine = f"GPU: {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
    else:
        machine = f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        machine += f", torch threads {torch.get_num_threads()}"
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"device: {device}; {machine}")
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}, transformers {transformers.__version__}"
    )


# --- full-size pipelines with random weights ----------------------------------------------------


@contextmanager
def big_module_scope(meta: bool) -> Iterator[None]:
    """Parameters on the meta device (buffers stay real, on the CPU)."""
    from accelerate import init_empty_weights

    if not meta:
        yield
        return
    with init_empty_weights(include_buffers=False):
        yield


@torch.no_grad()
def materialise(module: torch.nn.Module, device: str, dtype: torch.dtype) -> None:
    """Replace every (meta) parameter by a ``dtype`` tensor on ``device`` filled with plausible
    values, and move every buffer to ``device`` as it is (keeping its values and dtype: Qwen3's
    rotary ``inv_freq`` stays float32, as ``from_pretrained`` leaves it). Tied parameters stay
    tied. The fill is cheap on the GPU and done one parameter at a time (no host copy)."""
    replaced: dict[int, torch.nn.Parameter] = {}
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:
                continue
            if id(param) not in replaced:
                data = torch.empty(param.shape, device=device, dtype=dtype)
                if data.ndim >= 2:
                    data.normal_(0.0, 0.02)
                elif name.endswith("bias"):
                    data.zero_()
                else:  # the 1-D weights: RMSNorm / LayerNorm scales
                    data.fill_(1.0)
                replaced[id(param)] = torch.nn.Parameter(data, requires_grad=False)
            sub._parameters[name] = replaced[id(param)]
        for name, buffer in list(sub._buffers.items()):
            if buffer is None:
                continue
            if buffer.is_meta:
                raise RuntimeError(f"buffer {name} of {type(sub).__name__} has no values")
            sub._buffers[name] = buffer.to(device)


def place(module: torch.nn.Module, device: str, dtype: torch.dtype, big: bool) -> Any:
    """A built module ready for inference on ``device`` ("meta": left where it is)."""
    if device != "meta":
        if big:
            materialise(module, device, dtype)
        else:
            module.to(device=device, dtype=dtype)
    return module.eval().requires_grad_(False)


def build_full_flux(device: str, dtype: torch.dtype) -> Any:
    """FLUX.1-schnell: transformer (19 double + 38 single blocks), T5-XXL, CLIP-L, the 16-channel
    VAE and the schnell scheduler. ``device="meta"`` leaves the big modules without values."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    meta = device == "meta"
    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    clip_config = CLIPTextConfig(
        **CLIP_L,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # the pooler picks the first eos position
        pad_token_id=tokenizer.pad_token_id,
    )
    t5_config = T5Config(
        **T5_XXL, pad_token_id=tokenizer_2.pad_token_id, eos_token_id=tokenizer_2.eos_token_id
    )
    with big_module_scope(meta):
        transformer = FluxTransformer2DModel(**FLUX_TRANSFORMER)
        text_encoder_2 = T5EncoderModel(t5_config)
    # One token embedding, as in the checkpoint (transformers 5 ties shared / encoder.embed_tokens
    # only with tie_word_embeddings, which t5-v1_1 sets to False for its LM head)
    text_encoder_2.set_input_embeddings(text_encoder_2.shared)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
        vae=place(AutoencoderKL(**FLUX_VAE), device, dtype, big=False),
        text_encoder=place(CLIPTextModel(clip_config), device, dtype, big=False),
        tokenizer=tokenizer,
        text_encoder_2=place(text_encoder_2, device, dtype, big=True),
        tokenizer_2=tokenizer_2,
        transformer=place(transformer, device, dtype, big=True),
    )


def build_full_zimage(device: str, dtype: torch.dtype) -> Any:
    """Z-Image-Turbo: the 6 B single-stream transformer, Qwen3-4B, the FLUX VAE, shift 3."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        ZImagePipeline,
        ZImageTransformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3Model

    meta = device == "meta"
    tokenizer = qwen_tokenizer()
    qwen_config = Qwen3Config(
        **QWEN3_4B,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    with big_module_scope(meta):
        transformer = ZImageTransformer2DModel(**ZIMAGE_TRANSFORMER)
        text_encoder = Qwen3Model(qwen_config)
    return ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=place(AutoencoderKL(**FLUX_VAE), device, dtype, big=False),
        text_encoder=place(text_encoder, device, dtype, big=True),
        tokenizer=tokenizer,
        transformer=place(transformer, device, dtype, big=True),
    )


def build_full_flux2_klein(device: str, dtype: torch.dtype) -> Any:
    """FLUX.2 [klein] 4B: 5 double + 20 single blocks, Qwen3-4B (a causal LM with tied
    embeddings, layers 9, 18 and 27 stacked), the FLUX.2 VAE, 4 distilled steps."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = qwen_tokenizer()
    qwen_config = Qwen3Config(
        **QWEN3_4B,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    with big_module_scope(device == "meta"):
        transformer = Flux2Transformer2DModel(**FLUX2_KLEIN_4B)
        text_encoder = Qwen3ForCausalLM(qwen_config)
    text_encoder.tie_weights()  # Qwen3-4B's LM head is its token embedding (as loading ties it)
    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=place(AutoencoderKLFlux2(), device, dtype, big=False),
        text_encoder=place(text_encoder, device, dtype, big=True),
        tokenizer=tokenizer,
        transformer=place(transformer, device, dtype, big=True),
        is_distilled=True,
    )


def build_full_qwen_edit(device: str, dtype: torch.dtype) -> Any:
    """Qwen-Image-Edit-2511: the 20 B Qwen-Image MMDiT, Qwen2.5-VL-7B, the Qwen-Image VAE."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    tokenizer = qwen_tokenizer(vision=True)
    with big_module_scope(device == "meta"):
        transformer = QwenImageTransformer2DModel()
        text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**QWEN25_VL_7B))
    processor = image_only(
        "Qwen2VLProcessor", Qwen2VLImageProcessorPil(), tokenizer, tokenizer.chat_template
    )
    return QwenImageEditPlusPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=place(AutoencoderKLQwenImage(), device, dtype, big=False),
        text_encoder=place(text_encoder, device, dtype, big=True),
        tokenizer=tokenizer,
        processor=processor,
        transformer=place(transformer, device, dtype, big=True),
    )


def build_full_qwen_image(device: str, dtype: torch.dtype) -> Any:
    """Qwen-Image 2.1: the diffusers defaults of its transformer and 16x VAE, Qwen3-VL-8B."""
    from diffusers import (
        AutoencoderKLQwenImage21,
        FlowMatchEulerDiscreteScheduler,
        QwenImage21Pipeline,
        QwenImage21Transformer2DModel,
    )
    from transformers import (
        Qwen2VLImageProcessorPil,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
    )

    tokenizer = qwen_tokenizer(vision=True)
    with big_module_scope(device == "meta"):
        transformer = QwenImage21Transformer2DModel()
        text_encoder = Qwen3VLForConditionalGeneration(Qwen3VLConfig(**QWEN3_VL_8B))
    processor = image_only(
        "Qwen3VLProcessor", Qwen2VLImageProcessorPil(), tokenizer, tokenizer.chat_template
    )
    return QwenImage21Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=place(AutoencoderKLQwenImage21(), device, dtype, big=False),
        text_encoder=place(text_encoder, device, dtype, big=True),
        processor=processor,
        transformer=place(transformer, device, dtype, big=True),
    )


def build_full_krea2(device: str, dtype: torch.dtype) -> Any:
    """Krea 2: the diffusers defaults of its transformer, Qwen3-VL-4B, the Qwen-Image VAE."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        Krea2Pipeline,
        Krea2Transformer2DModel,
    )
    from transformers import Qwen3VLConfig, Qwen3VLModel

    with big_module_scope(device == "meta"):
        transformer = Krea2Transformer2DModel()
        text_encoder = Qwen3VLModel(Qwen3VLConfig(**QWEN3_VL_4B))
    return Krea2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, max_image_seq_len=6400
        ),
        vae=place(AutoencoderKLQwenImage(), device, dtype, big=False),
        text_encoder=place(text_encoder, device, dtype, big=True),
        tokenizer=qwen_tokenizer(vision=True),
        transformer=place(transformer, device, dtype, big=True),
        is_distilled=True,
    )


FULL_BUILDERS: dict[str, Callable[[str, torch.dtype], Any]] = {
    "flux-schnell": build_full_flux,
    "z-image-turbo": build_full_zimage,
    "flux-2-klein": build_full_flux2_klein,
    "qwen-edit": build_full_qwen_edit,
    "qwen-image-2.1": build_full_qwen_image,
    "krea-2": build_full_krea2,
}


# --- --dry-run: full-size modules on the meta device --------------------------------------------


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # shared parameters counted once


def meta_forward_check(model: str, pipe: Any, size: int) -> str:
    """Run the text encoder(s), the transformer and the VAE decoder on meta tensors with the
    shapes the pipeline would give them: configs that do not fit together fail here."""
    meta = torch.device("meta")
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.to(meta)  # the small modules were built on the CPU
    latent = size // 8  # VAE scale factor
    if model == "flux-schnell":
        ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=77, return_tensors="pt")
        pooled = pipe.text_encoder(ids.input_ids.to(meta)).pooler_output
        ids_2 = pipe.tokenizer_2(PROMPT, padding="max_length", max_length=256, return_tensors="pt")
        text = pipe.text_encoder_2(ids_2.input_ids.to(meta))[0]
        tokens = (latent // 2) ** 2
        out = pipe.transformer(
            hidden_states=torch.empty(1, tokens, 64, device=meta),
            encoder_hidden_states=text,
            pooled_projections=pooled,
            timestep=torch.empty(1, device=meta),
            img_ids=torch.zeros(tokens, 3, device=meta),
            txt_ids=torch.zeros(text.shape[1], 3, device=meta),
            return_dict=False,
        )[0]
        shapes = f"CLIP pooled {tuple(pooled.shape)}, T5 {tuple(text.shape)}, "
        shapes += f"transformer {tuple(out.shape)}"
    else:
        ids = pipe.tokenizer(PROMPT, return_tensors="pt").input_ids
        encoded = pipe.text_encoder(input_ids=ids.to(meta), output_hidden_states=True)
        hidden = encoded.hidden_states[-2]  # what ZImagePipeline takes
        out = pipe.transformer(
            [torch.empty(16, 1, latent, latent, device=meta)],
            torch.empty(1, device=meta),
            [hidden[0]],
            return_dict=False,
        )[0][0]
        shapes = f"Qwen3 hidden[-2] {tuple(hidden.shape)}, transformer {tuple(out.shape)}"
    image = pipe.vae.decode(torch.empty(1, 16, latent, latent, device=meta)).sample
    return f"{shapes}, VAE decode {tuple(image.shape)}"


def dry_run(models: list[str], size: int) -> None:
    print(f"dry run: full-size modules on the meta device, {size}x{size}, nothing is rendered")
    print()
    print("| model | component | class | parameters | bf16 GB | buffers |")
    print("|---|---|---|---:|---:|---|")
    checks = []
    for model in models:
        started = time.perf_counter()
        pipe = FULL_BUILDERS[model]("meta", torch.bfloat16)
        build_s = time.perf_counter() - started
        total = 0
        for name, component in pipe.components.items():
            if not isinstance(component, torch.nn.Module):
                continue
            count = parameter_count(component)
            total += count
            buffers = [
                f"{n} ({'meta!' if b.is_meta else b.dtype})" for n, b in component.named_buffers()
            ]
            buffer_text = ", ".join(buffers[:3]) + (
                f" +{len(buffers) - 3}" if len(buffers) > 3 else ""
            )
            print(
                f"| {model} | {name} | {type(component).__name__} | {count / 1e9:.3f} B | "
                f"{2 * count / 1e9:.2f} | {buffer_text or '-'} |"
            )
        print(
            f"| {model} | **total** | {type(pipe).__name__} (built in {build_s:.1f} s) | "
            f"{total / 1e9:.3f} B | {2 * total / 1e9:.2f} | |"
        )
        if model not in ("flux-schnell", "z-image-turbo"):
            continue
        try:
            checks.append(f"{model}: {meta_forward_check(model, pipe, size)}")
        except Exception as exc:  # report, do not hide, a forward that the meta device refuses
            checks.append(f"{model}: meta forward FAILED: {type(exc).__name__}: {exc}")
        del pipe
        gc.collect()
    print()
    for line in checks:
        print(f"meta forward, {line}")


# --- --device cuda ------------------------------------------------------------------------------


@dataclass
class Latency:
    label: str
    times: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.times)

    @property
    def p90(self) -> float:
        return percentile(self.times, 0.9)


def baseline_times(
    pipe: Any, spec: ModelSpec, size: int, runs: int, device: str, extra: dict[str, Any]
) -> list[float]:
    """Plain diffusers: the pipeline called as its documentation shows, 1 warm-up, ``runs``."""

    def call(seed: int) -> object:
        return pipe(  # by keyword: FLUX.2 [klein] takes ``image`` first
            prompt=PROMPT,
            height=size,
            width=size,
            num_inference_steps=spec.steps,
            guidance_scale=spec.guidance,
            generator=torch.Generator("cpu").manual_seed(seed),
            **extra,
        ).images

    call(0)
    return [timed_ms(lambda seed=seed: call(seed), device) for seed in range(1, runs + 1)]


def source_png(size: int) -> bytes:
    """An edit's source: a smooth gradient, size x size (what core hands over: RGBA PNG)."""
    from PIL import Image

    ramp = torch.linspace(0, 255, size, dtype=torch.float32)
    red = ramp.repeat(size, 1)
    pixels = torch.stack([red, red.T, 255 - red, torch.full_like(red, 255)], dim=-1)
    return png(Image.fromarray(pixels.to(torch.uint8).numpy(), "RGBA"))


def darkroom_times(
    family: Family,
    entry: WeightsEntry,
    spec: ModelSpec,
    size: int,
    runs: int,
    device: str,
    **fields: Any,
) -> tuple[list[float], list[float]]:
    """darkroom's path: the family's ``render`` (after ``devices.optimize``): the two warm-up
    calls (compilation, then any late recompilation) in seconds and the timed runs in ms;
    ``fields`` (sources, strength) go into each request."""
    settings = family.settings(entry)

    def call(seed: int) -> object:
        job = dataclasses.replace(request(spec.name, size, seed), **fields)
        return family.render(job, settings)

    warmups = [timed_ms(lambda seed=seed: call(seed), device) / 1000 for seed in (0, 1)]
    times = [timed_ms(lambda seed=seed: call(seed), device) for seed in range(2, runs + 2)]
    return warmups, times


def queue_throughput(
    backend: DiffusersBackend, spec: ModelSpec, size: int, projects: int, count: int, workers: int
) -> tuple[float, float]:
    """Images per second of ``projects`` projects of ``count`` images rendered by ``workers``
    threads calling ``backend.render`` at once; and the warm-up of that batch shape in s."""
    started = time.perf_counter()
    backend.render(request(spec.name, size, 10_000, count))  # a new batch shape may recompile
    warmup = time.perf_counter() - started
    requests = [request(spec.name, size, 1000 * i, count, project=f"p{i}") for i in range(projects)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(backend.render, requests))
    elapsed = time.perf_counter() - started
    made = sum(len(images) for images in results)
    assert made == projects * count, made
    return made / elapsed, warmup


def run_cuda(args: argparse.Namespace, models: list[str]) -> None:
    import diffusers

    device, size = args.device, args.size
    dtype = torch.bfloat16
    latency_rows: list[str] = []
    queue_rows: list[str] = []
    notes: list[str] = []
    for model in models:
        spec = MODELS[model]
        torch.manual_seed(0)
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        pipe = FULL_BUILDERS[model](device, dtype)
        pipe.set_progress_bar_config(disable=True)
        torch.cuda.synchronize()
        build_s = time.perf_counter() - started
        weights_gb = torch.cuda.memory_allocated() / 2**30
        params = sum(
            parameter_count(c) for c in pipe.components.values() if isinstance(c, torch.nn.Module)
        )
        notes.append(
            f"{model}: built {params / 1e9:.2f} B parameters ({weights_gb:.1f} GiB bf16) on "
            f"{device} in {build_s:.1f} s"
        )

        # 1. plain diffusers, before optimize mutates the pipeline
        rows = [Latency("plain diffusers (defaults)", [])]
        rows[0].times = baseline_times(pipe, spec, size, args.runs, device, {})
        default_msl = call_default(pipe, "max_sequence_length")
        if spec.max_sequence_length is not None and default_msl != spec.max_sequence_length:
            rows[0].label = f"plain diffusers (defaults, max_sequence_length {default_msl})"
            same = {"max_sequence_length": spec.max_sequence_length}
            rows.append(
                Latency(
                    f"plain diffusers, max_sequence_length {spec.max_sequence_length} as darkroom",
                    baseline_times(pipe, spec, size, args.runs, device, same),
                )
            )

        # 2. darkroom: optimize + the family's render on the same pipeline object
        entry = entry_for(spec, f"random weights ({model}, in memory)", dtype="bfloat16")
        family = by_name(spec.family)(pipe)
        applied = devices.optimize(pipe)
        warmups, times = darkroom_times(family, entry, spec, size, args.runs, device)
        rows.append(Latency("darkroom (devices.optimize + render)", times))
        notes.append(
            f"{model}: darkroom applied {', '.join(applied) or 'nothing'}; warm-up calls "
            f"(compilation) {warmups[0]:.1f} s and {warmups[1]:.1f} s, excluded; peak GPU "
            f"memory generating {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        )
        # an edit of one source: image to image (strength 0.6) or one reference (klein)
        torch.cuda.reset_peak_memory_stats()
        edit = {"sources": (source_png(size),), "strength": 0.6}
        warmups, times = darkroom_times(family, entry, spec, size, args.runs, device, **edit)
        mode = family.edit_mode.value
        rows.append(Latency(f"darkroom edit, 1 source ({mode})", times))
        notes.append(
            f"{model}: edit ({mode}) warm-up calls {warmups[0]:.1f} s and {warmups[1]:.1f} s, "
            f"excluded; peak GPU memory editing {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        )
        if len(rows) == 4:
            notes.append(
                f"{model}: darkroom / plain diffusers at the same max_sequence_length = "
                f"{rows[2].p50 / rows[1].p50:.2f} (the optimizations alone)"
            )

        floor_tflop = (spec.tflop_1024 or 0.0) * (size / 1024) ** 2
        floor_ms = floor_tflop / args.peak_tflops * 1000
        base = rows[0].p50
        for row in rows:
            floor = f"{row.p50 / floor_ms:.2f}" if floor_ms else "-"
            latency_rows.append(
                f"| {model} | {row.label} | {row.p50:.0f} | {row.p90:.0f} | "
                f"{row.p50 / base:.2f} | {floor} |"
            )
        if floor_ms:
            scaled = "" if size == 1024 else f", scaled by ({size}/1024)^2: rough"
            notes.append(
                f"{model}: compute floor {floor_tflop:.0f} TFLOP per image{scaled} = "
                f"{floor_ms:.0f} ms at {args.peak_tflops:.0f} TFLOP/s bf16 "
                f"({floor_ms / 2:.0f} ms at fp8)"
            )

        # 3. a queue through the backend (its device lock serializes the two workers)
        backend = DiffusersBackend({model: entry}, device=device, dtype="bfloat16")
        backend.adopt(model, family)  # no from_pretrained: there are no weights to load
        backend.optimizations[model] = applied
        for count in sorted({1, args.batch}):
            ips, warmup = queue_throughput(backend, spec, size, args.queue, count, args.workers)
            label = f"{args.queue} projects x {count} image{'s' if count > 1 else ''}"
            queue_rows.append(
                f"| {model} | {label}, {args.workers} workers, max_batch {entry.max_batch} | "
                f"{ips:.2f} | {1000 / ips:.0f} | {warmup:.1f} |"
            )
        notes.append(
            f"{model}: peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        )
        del backend, family, pipe
        gc.collect()
        torch.cuda.empty_cache()
        torch._dynamo.reset()

    print(f"{size}x{size}, {args.runs} timed runs after 1 warm-up, bf16, random weights")
    print(f"diffusers {diffusers.__version__}: per-image latency")
    print()
    print("| model | path | ms p50 | ms p90 | / plain diffusers | / compute floor |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(latency_rows))
    print()
    print("| model | queue through DiffusersBackend.render | images/s | ms/image | warm-up s |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(queue_rows))
    print()
    for note in notes:
        print(f"- {note}")
    print("- target: darkroom / plain diffusers <= 0.5 for flux-schnell")


def call_default(pipe: Any, argument: str) -> Any:
    """The default of ``argument`` in the pipeline's ``__call__`` (None if it has none)."""
    import inspect

    parameter = inspect.signature(pipe.__call__).parameters.get(argument)
    return None if parameter is None else parameter.default


# --- --device cpu: darkroom's overhead on tiny pipelines ---------------------------------------


def cpu_overhead(spec: ModelSpec, directory: Path, size: int, runs: int) -> dict[str, Any]:
    """Interleaved bare call (+ PNG) / ``DiffusersBackend.render`` timings of one tiny model."""
    from diffusers import DiffusionPipeline

    started = time.perf_counter()
    pipe = DiffusionPipeline.from_pretrained(directory, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    bare_load = time.perf_counter() - started

    entry = entry_for(spec, str(directory))
    backend = DiffusersBackend({spec.name: entry}, device="cpu", optimize=False)
    # Identical work: the bare call gets the catalog's max_sequence_length too, as darkroom
    # passes it (otherwise FLUX's default of 512 text tokens would make darkroom look faster).
    extra: dict[str, Any] = {}
    if spec.max_sequence_length is not None and devices.accepts(pipe, "max_sequence_length"):
        extra["max_sequence_length"] = spec.max_sequence_length

    def bare(seed: int) -> list[bytes]:
        images = pipe(
            prompt=PROMPT,
            width=size,
            height=size,
            num_inference_steps=spec.steps,
            guidance_scale=spec.guidance,
            num_images_per_prompt=1,
            generator=[torch.Generator("cpu").manual_seed(seed)],
            output_type="pil",
            **extra,
        ).images
        return [png(image) for image in images]

    def darkroom(seed: int) -> list[bytes]:
        return backend.render(request(spec.name, size, seed))

    first_render = timed_ms(lambda: darkroom(0), "cpu") / 1000  # loads the pipeline
    bare(0)
    a = bare(1)
    b = darkroom(1)
    assert len(a) == len(b) == 1, (len(a), len(b))
    bare_ms: list[float] = []
    dark_ms: list[float] = []
    for run in range(runs):  # interleaved, alternating which goes first, to cancel drift
        seed = 100 + run
        pair = [(bare_ms, bare), (dark_ms, darkroom)]
        for times, call in pair if run % 2 == 0 else reversed(pair):
            times.append(timed_ms(lambda call=call, seed=seed: call(seed), "cpu"))
    return {
        "bare": Latency("bare", bare_ms),
        "darkroom": Latency("darkroom", dark_ms),
        "paired": statistics.median(d - b for d, b in zip(dark_ms, bare_ms, strict=True)),
        "bare_load": bare_load,
        "first_render": first_render,
        "same_png": a == b,
        "pipeline": type(pipe).__name__,
    }


def run_cpu(args: argparse.Namespace, models: list[str]) -> None:
    rows: list[str] = []
    notes: list[str] = []
    # the tiny pipelines are built once (tests/tiny_pipelines.built) and removed at exit
    for model in models:
        spec = MODELS[model]
        result = cpu_overhead(spec, built(spec.family), args.size, args.runs)
        bare, dark = result["bare"], result["darkroom"]
        overhead = (dark.p50 - bare.p50) / bare.p50 * 100
        paired = result["paired"] / bare.p50 * 100
        steps = f"{spec.steps} step" + ("s" if spec.steps > 1 else "")
        rows.append(
            f"| {model} ({result['pipeline']}, {steps}) | "
            f"{bare.p50:.1f} / {bare.p90:.1f} | {dark.p50:.1f} / {dark.p90:.1f} | "
            f"{overhead:+.1f} % | {paired:+.1f} % |"
        )
        notes.append(
            f"{model}: bare from_pretrained {result['bare_load']:.2f} s; darkroom's first "
            f"render (load + render) {result['first_render']:.2f} s, excluded; "
            f"same PNG bytes from both paths: {'yes' if result['same_png'] else 'no'}"
        )
    print(
        f"tiny pipelines (tests/tiny_pipelines.py), {args.size}x{args.size}, 1 image per call, "
        f"{args.runs} interleaved pairs after warm-up"
    )
    print()
    print(
        "| model | bare call + PNG ms p50 / p90 | DiffusersBackend.render ms p50 / p90 | "
        "overhead (p50s) | overhead (paired p50) |"
    )
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    print()
    for note in notes:
        print(f"- {note}")
    print(
        "- darkroom calls the pipeline under torch.inference_mode, the bare call runs under "
        "diffusers' no_grad: worth a few % on these tiny models, so a negative overhead is "
        "expected"
    )
    print("- target: darkroom's overhead over the bare call <= 5 %")


# --- entry point --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device",
        choices=["cuda", "cpu"],
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cuda: full-size models on the GPU; cpu: tiny models, darkroom's overhead",
    )
    parser.add_argument(
        "--model",
        choices=[*MODELS, *COUNTED, "all"],
        default=None,
        help="default: flux-schnell on cuda, every tiny model on cpu, every model in a dry run",
    )
    parser.add_argument("--size", type=int, default=None, help="square side, default 1024 / 256")
    parser.add_argument("--runs", type=int, default=None, help="timed runs, default 5 / 30")
    parser.add_argument("--queue", type=int, default=8, help="projects in the queue test")
    parser.add_argument("--batch", type=int, default=4, help="images per project, batched run")
    parser.add_argument("--workers", type=int, default=2, help="threads calling render")
    parser.add_argument(
        "--peak-tflops", type=float, default=H100_BF16_TFLOPS, help="dense bf16 peak of the GPU"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="build the full-size modules on the meta device, count parameters, run nothing",
    )
    args = parser.parse_args(argv)
    cuda = args.device == "cuda" and not args.dry_run
    if args.size is None:
        args.size = 1024 if cuda or args.dry_run else 256
    if args.runs is None:
        args.runs = 5 if cuda else 30
    every = list(DRY_RUN) if args.dry_run else list(FULL_SIZE) if cuda else list(MODELS)
    if args.model == "all":
        models = every
    elif args.model is not None:
        models = [args.model]
    else:
        models = ["flux-schnell"] if cuda else every
    if any(m not in every for m in models):
        parser.error(f"this mode runs {', '.join(every)} only")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU (use --device cpu or --dry-run)")

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    quiet_libraries()
    started = time.perf_counter()
    header(args, "meta (dry run)" if args.dry_run else args.device)
    print()
    if args.dry_run:
        dry_run(models, args.size)
    elif cuda:
        run_cuda(args, models)
    else:
        run_cpu(args, models)
    print(f"- benchmark wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

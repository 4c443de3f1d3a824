"""Tiny-but-real diffusers pipelines for tests.

Each ``build_*`` function assembles a real diffusers pipeline of one model family (FLUX.1-schnell,
FLUX.2 [klein], Z-Image, Qwen-Image-Edit, Qwen-Image 2.1, Krea 2, SDXL) out of miniature configs
with random weights and tokenizers built in memory, then writes it with ``save_pretrained``.
Tests can then exercise the genuine loading path (``from_pretrained(path, local_files_only=True)``)
and the genuine sampling loop without downloading anything: a build takes about a second and a
few MB of disk. ``built(kind)`` builds each once per process (a test session) and reuses it.

The images are noise, but they are deterministic noise of exactly the requested size: the VAEs
keep the real x8 spatial scale factor, except the Qwen-Image ones (x16, so that the editor's
fixed 1024x1024 source encoding stays fast on a CPU: those models take multiples of 32).

Run ``python tests/tiny_pipelines.py`` for a self-check that builds, reloads and samples each one.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    AutoencoderKLQwenImage21,
    DiffusionPipeline,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Transformer2DModel,
    FluxPipeline,
    FluxTransformer2DModel,
    Krea2Pipeline,
    Krea2Transformer2DModel,
    QwenImage21Pipeline,
    QwenImage21Transformer2DModel,
    QwenImageEditPlusPipeline,
    QwenImageTransformer2DModel,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from numpy.typing import NDArray
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen2VLImageProcessorPil,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3Model,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLModel,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from darkroom.engine.families.qwen_processor import image_only

__all__ = [
    "BUILDERS",
    "build_flux",
    "build_flux2_klein",
    "build_krea2",
    "build_qwen_edit",
    "build_qwen_image",
    "build_sdxl",
    "build_zimage",
    "built",
    "clip_tokenizer",
    "qwen_tokenizer",
    "t5_tokenizer",
]

SEED = 0
HIDDEN = 32  # width of every tiny text encoder, and of the FLUX / Z-Image transformers

# Qwen3's template, reduced to what ZImagePipeline uses (one user turn, generation prompt).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)


@contextmanager
def _seeded() -> Iterator[None]:
    """Seed torch for a deterministic build without disturbing the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        yield


def _save(pipe: DiffusionPipeline, directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(directory)
    return directory


# --- tokenizers --------------------------------------------------------------------------------


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes."""
    return sorted(ByteLevel.alphabet())


# The tokenizers are also used by benchmarks/gpu_pipeline.py for the full-size models: they only
# have to produce token ids, and their vocabularies are smaller than any real encoder's.


def clip_tokenizer() -> CLIPTokenizer:
    """Byte-level CLIP tokenizer without merges: one token per character (ids 0..513)."""
    chars = _byte_chars()
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer() -> T5Tokenizer:
    """Unigram T5 tokenizer over printable ASCII, each character with and without ``▁``."""
    chars = [chr(c) for c in range(33, 127)]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("▁" + c, -2.5) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


QWEN_VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen-VL's template, reduced: a message's content is a string or a list of text / image parts.
QWEN_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_tokenizer(vision: bool = False) -> Qwen2Tokenizer:
    """Byte-level Qwen2 tokenizer without merges, with Qwen's chat special tokens (and, with
    ``vision``, the Qwen-VL image placeholders and a template that places them)."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    if vision:
        specials += QWEN_VISION_TOKENS
    vocab = {token: i for i, token in enumerate([*_byte_chars(), *specials])}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], extra_special_tokens=specials[1:])
    tokenizer.chat_template = QWEN_VL_CHAT_TEMPLATE if vision else QWEN_CHAT_TEMPLATE
    return tokenizer


def _vision_ids(tokenizer: Qwen2Tokenizer) -> dict[str, int]:
    """The Qwen-VL configs' ids of the image placeholders, as this tokenizer numbers them."""
    ids = tokenizer.convert_tokens_to_ids(QWEN_VISION_TOKENS)
    names = ("vision_start_token_id", "vision_end_token_id", "image_token_id", "video_token_id")
    return {"vocab_size": len(tokenizer), **dict(zip(names, ids, strict=True))}


# --- models ------------------------------------------------------------------------------------


def _clip_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    """Two tiny CLIP layers (projection_dim is only used by CLIPTextModelWithProjection)."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        projection_dim=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # the pooler picks the first eos position
        pad_token_id=tokenizer.pad_token_id,
    )


def _vae(latent_channels: int, scaling_factor: float, shift_factor: float | None) -> AutoencoderKL:
    """Four blocks, so three downsamples: the real x8 spatial scale factor."""
    flux_layout = shift_factor is not None  # FLUX.1 / Z-Image: no 1x1 (post-)quant convs
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=latent_channels,
        sample_size=64,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=not flux_layout,
        use_post_quant_conv=not flux_layout,
    )


def _flux_vae() -> AutoencoderKL:
    """The 16-channel autoencoder layout FLUX.1 and Z-Image share."""
    return _vae(16, scaling_factor=0.3611, shift_factor=0.1159)


# --- pipelines ---------------------------------------------------------------------------------


def build_flux(directory: Path) -> Path:
    """A FLUX.1-schnell-shaped ``FluxPipeline`` (no guidance embedding), saved into directory."""
    with _seeded():
        tokenizer = clip_tokenizer()
        tokenizer_2 = t5_tokenizer()
        pipe = FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
            vae=_flux_vae(),
            # FLUX pools CLIP's pooler_output, so hidden_size is pooled_projection_dim
            text_encoder=CLIPTextModel(_clip_config(tokenizer)),
            tokenizer=tokenizer,
            text_encoder_2=T5EncoderModel(
                T5Config(
                    vocab_size=len(tokenizer_2),
                    d_model=HIDDEN,  # = joint_attention_dim
                    d_kv=8,
                    d_ff=2 * HIDDEN,
                    num_layers=2,
                    num_heads=4,
                    relative_attention_num_buckets=8,
                    feed_forward_proj="gated-gelu",
                    pad_token_id=tokenizer_2.pad_token_id,
                    eos_token_id=tokenizer_2.eos_token_id,
                )
            ),
            tokenizer_2=tokenizer_2,
            transformer=FluxTransformer2DModel(
                patch_size=1,
                in_channels=64,  # 16 latent channels packed 2x2
                num_layers=1,
                num_single_layers=2,
                attention_head_dim=16,
                num_attention_heads=2,
                joint_attention_dim=HIDDEN,
                pooled_projection_dim=HIDDEN,
                guidance_embeds=False,
                axes_dims_rope=(4, 6, 6),
            ),
        )
    return _save(pipe, directory)


def _qwen3_config(
    tokenizer: Qwen2Tokenizer, hidden: int, layers: int, head_dim: int, **extra: Any
) -> Qwen3Config:
    """A tiny Qwen3 text encoder's config (Z-Image, FLUX.2 [klein])."""
    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=head_dim,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        **extra,
    )


def _vl_text(tokenizer: Qwen2Tokenizer, **extra: Any) -> dict[str, Any]:
    """A tiny Qwen-VL language model's text_config (two layers, 16 wide)."""
    return {
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "vocab_size": len(tokenizer),
        **extra,
    }


def _vl_vision(**extra: Any) -> dict[str, Any]:
    """A tiny Qwen-VL vision tower's vision_config (one block, 16 wide, into 16)."""
    return {
        "depth": 1,
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_heads": 2,
        "out_hidden_size": 16,
        **extra,
    }


def build_zimage(directory: Path) -> Path:
    """A Z-Image-Turbo-shaped ``ZImagePipeline`` (Qwen3 text encoder), saved into directory."""
    with _seeded():
        tokenizer = qwen_tokenizer()
        text_encoder = Qwen3Model(_qwen3_config(tokenizer, HIDDEN, layers=2, head_dim=16))
        transformer = ZImageTransformer2DModel(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=16,
            dim=HIDDEN,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            cap_feat_dim=HIDDEN,  # = the Qwen3 hidden size
            axes_dims=[4, 6, 6],  # sums to the head dim, 32 / 2
            axes_lens=[1024, 512, 512],
        )
        # The padding embeddings are learned in the real checkpoint; give them defined values
        # rather than whatever the constructor leaves (torch.empty in some releases: maybe NaN).
        with torch.no_grad():
            transformer.x_pad_token.fill_(1.0)
            transformer.cap_pad_token.fill_(1.0)
        pipe = ZImagePipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=False),
            vae=_flux_vae(),
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
        )
    return _save(pipe, directory)


def build_sdxl(directory: Path) -> Path:
    """An SDXL-shaped ``StableDiffusionXLPipeline`` (two CLIP encoders), saved into directory."""
    with _seeded():
        tokenizer = clip_tokenizer()
        tokenizer_2 = clip_tokenizer()
        time_embed_dim = 8
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            transformer_layers_per_block=(1, 1),
            use_linear_projection=True,
            norm_num_groups=4,
            cross_attention_dim=2 * HIDDEN,  # both encoders' hidden states, concatenated
            addition_embed_type="text_time",
            addition_time_embed_dim=time_embed_dim,
            # six micro-conditioning ids (sizes, crop) plus the pooled text embedding
            projection_class_embeddings_input_dim=6 * time_embed_dim + HIDDEN,
        )
        pipe = StableDiffusionXLPipeline(
            vae=_vae(4, scaling_factor=0.13025, shift_factor=None),
            text_encoder=CLIPTextModel(_clip_config(tokenizer)),
            text_encoder_2=CLIPTextModelWithProjection(_clip_config(tokenizer_2)),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=EulerAncestralDiscreteScheduler(
                num_train_timesteps=1000,
                beta_start=0.00085,
                beta_end=0.012,
                beta_schedule="scaled_linear",
                steps_offset=1,
                timestep_spacing="trailing",
            ),
        )
    return _save(pipe, directory)


def build_flux2_klein(directory: Path) -> Path:
    """A FLUX.2 [klein] 4B-shaped ``Flux2KleinPipeline`` (distilled), saved into directory: a
    Qwen3 causal LM of 27 layers (the pipeline stacks layers 9, 18 and 27), so the transformer's
    joint_attention_dim is three times its hidden size; the FLUX.2 VAE keeps the x8 scale."""
    hidden = 16
    with _seeded():
        tokenizer = qwen_tokenizer()
        text_encoder = Qwen3ForCausalLM(
            _qwen3_config(tokenizer, hidden, layers=27, head_dim=8, tie_word_embeddings=True)
        )
        pipe = Flux2KleinPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
            vae=AutoencoderKLFlux2(
                block_out_channels=(16, 32, 32, 32),
                layers_per_block=1,
                latent_channels=8,
                norm_num_groups=8,
            ),
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=Flux2Transformer2DModel(
                in_channels=32,  # 8 latent channels packed 2x2
                num_layers=1,
                num_single_layers=2,
                attention_head_dim=16,
                num_attention_heads=2,
                joint_attention_dim=3 * hidden,
                timestep_guidance_channels=32,
                axes_dims_rope=(4, 4, 4, 4),
                guidance_embeds=False,
            ),
            is_distilled=True,
        )
    return _save(pipe, directory)


def _qwen_vae() -> AutoencoderKLQwenImage:
    """The Qwen-Image causal VAE, four downsamples (x16: see the module docstring)."""
    return AutoencoderKLQwenImage(
        base_dim=4,
        z_dim=4,
        dim_mult=[1, 1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )


def _save_with_processor(pipe: DiffusionPipeline, directory: Path, processor: Any) -> Path:
    """Save a pipeline whose Qwen-VL processor was built without a video processor (there is no
    torchvision here): its tokenizer, image processor and chat template go into ``processor/``
    as in the published checkpoints, and model_index.json names the real processor class."""
    processor_class = type(processor).__mro__[1].__name__  # the class image_only() extends
    pipe.register_modules(processor=None)
    _save(pipe, directory)
    pipe.register_modules(processor=processor)
    folder = Path(directory) / "processor"
    processor.tokenizer.save_pretrained(folder)
    processor.image_processor.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(processor.chat_template)
    index_file = Path(directory) / "model_index.json"
    index = json.loads(index_file.read_text())
    index["processor"] = ["transformers", processor_class]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True))
    return Path(directory)


def build_qwen_edit(directory: Path) -> Path:
    """A Qwen-Image-Edit-2511-shaped ``QwenImageEditPlusPipeline`` (a Qwen2.5-VL encoder with
    its ``Qwen2VLProcessor``), saved into directory."""
    with _seeded():
        tokenizer = qwen_tokenizer(vision=True)
        ids = _vision_ids(tokenizer)
        text_encoder = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(
                text_config=_vl_text(
                    tokenizer,
                    bos_token_id=None,
                    eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                    rope_scaling={
                        "mrope_section": [1, 1, 2],
                        "rope_type": "default",
                        "type": "default",
                    },
                    rope_theta=1000000.0,
                ),
                vision_config=_vl_vision(),
                hidden_size=16,
                **ids,
            )
        )
        processor = image_only(
            "Qwen2VLProcessor", Qwen2VLImageProcessorPil(), tokenizer, tokenizer.chat_template
        )
        pipe = QwenImageEditPlusPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=_qwen_vae(),
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            processor=processor,
            transformer=QwenImageTransformer2DModel(
                patch_size=2,
                in_channels=16,  # 4 latent channels packed 2x2
                out_channels=4,
                num_layers=1,
                attention_head_dim=16,
                num_attention_heads=2,
                joint_attention_dim=16,
                guidance_embeds=False,
                axes_dims_rope=(8, 4, 4),
            ),
        )
    return _save_with_processor(pipe, directory, processor)


def build_qwen_image(directory: Path) -> Path:
    """A Qwen-Image-2.1-shaped ``QwenImage21Pipeline`` (a Qwen3-VL encoder with its
    ``Qwen3VLProcessor``, its 16x VAE with 8 latent channels, not 64), saved into directory."""
    latent = 8
    with _seeded():
        tokenizer = qwen_tokenizer(vision=True)
        text_encoder = Qwen3VLForConditionalGeneration(
            Qwen3VLConfig(
                text_config=_vl_text(
                    tokenizer,
                    head_dim=8,
                    rope_parameters={
                        "rope_type": "default",
                        "rope_theta": 1000000.0,
                        "mrope_section": [1, 1, 2],
                    },
                ),
                # one merged vision token covers 32 pixels: a 2x2 group of 16x latents
                vision_config=_vl_vision(
                    patch_size=16,
                    spatial_merge_size=2,
                    temporal_patch_size=2,
                    num_position_embeddings=64,
                    deepstack_visual_indexes=[0],
                ),
                **_vision_ids(tokenizer),
            )
        ).eval()
        # the vision slots must match the pipeline's own resize, so no pixel cap below it
        image_processor = Qwen2VLImageProcessorPil(
            patch_size=16,
            merge_size=2,
            temporal_patch_size=2,
            min_pixels=32 * 32,
            max_pixels=4096 * 4096,
        )
        processor = image_only(
            "Qwen3VLProcessor", image_processor, tokenizer, tokenizer.chat_template
        )
        pipe = QwenImage21Pipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=AutoencoderKLQwenImage21(
                base_dim=4,
                decoder_base_dim=4,
                z_dim=latent,
                dim_mult=[1, 1, 1, 1, 1],
                num_res_blocks=1,
                attn_scales=[],
                temperal_downsample=[False, True, True, True],
                latents_mean=[0.0] * latent,
                latents_std=[1.0] * latent,
            ),
            text_encoder=text_encoder,
            processor=processor,
            transformer=QwenImage21Transformer2DModel(
                patch_size=1,
                in_channels=latent,
                out_channels=latent,
                num_layers=2,
                attention_head_dim=16,
                num_attention_heads=2,
                context_in_dim=16,
                mlp_ratio=2,
                axes_dims_rope=(4, 6, 6),
            ),
        )
    return _save_with_processor(pipe, directory, processor)


def build_krea2(directory: Path) -> Path:
    """A Krea-2-Turbo-shaped ``Krea2Pipeline`` (distilled; a Qwen3-VL encoder tapped at three
    layers, the Qwen-Image VAE), saved into directory."""
    with _seeded():
        tokenizer = qwen_tokenizer(vision=True)
        text_encoder = Qwen3VLModel(
            Qwen3VLConfig(
                text_config=_vl_text(tokenizer, head_dim=8),
                vision_config=_vl_vision(deepstack_visual_indexes=[0]),
                **_vision_ids(tokenizer),
            )
        ).eval()
        pipe = Krea2Pipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(
                use_dynamic_shifting=True,
                base_shift=0.5,
                max_shift=1.15,
                base_image_seq_len=256,
                max_image_seq_len=6400,
            ),
            vae=AutoencoderKLQwenImage(
                base_dim=8,
                z_dim=4,
                dim_mult=[1, 1, 1, 1],
                num_res_blocks=1,
                temperal_downsample=[False, True, True],
                latents_mean=[0.0] * 4,
                latents_std=[1.0] * 4,
            ),
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=Krea2Transformer2DModel(
                in_channels=16,  # 4 latent channels packed 2x2
                num_layers=1,
                attention_head_dim=8,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=32,
                timestep_embed_dim=8,
                text_hidden_dim=16,
                num_text_layers=3,
                text_num_attention_heads=2,
                text_num_key_value_heads=1,
                text_intermediate_size=16,
                num_layerwise_text_blocks=1,
                num_refiner_text_blocks=1,
                axes_dims_rope=(4, 2, 2),
                rope_theta=1000.0,
            ),
            text_encoder_select_layers=(0, 1, 2),
            is_distilled=True,
        )
    return _save(pipe, directory)


# kind -> builder; the kinds are what tests and the benchmark call the tiny models
BUILDERS: dict[str, Callable[[Path], Path]] = {
    "flux": build_flux,
    "flux2-klein": build_flux2_klein,
    "zimage": build_zimage,
    "qwen-edit": build_qwen_edit,
    "qwen-image": build_qwen_image,
    "krea2": build_krea2,
    "sdxl": build_sdxl,
}

_BUILT: dict[str, Path] = {}
_ROOT: list[Path] = []


def built(kind: str) -> Path:
    """The tiny ``kind`` pipeline's directory, built on first use in this process and reused
    (removed when the process ends). Treat it as read-only: copy it to break it."""
    path = _BUILT.get(kind)
    if path is None:
        if not _ROOT:
            _ROOT.append(Path(tempfile.mkdtemp(prefix="darkroom-tiny-")))
            atexit.register(shutil.rmtree, _ROOT[0], True)
        path = _BUILT[kind] = BUILDERS[kind](_ROOT[0] / kind)
    return path


# --- self-check ---------------------------------------------------------------------------------


def _self_check() -> None:  # pragma: no cover - run by hand
    """Build every kind, load it as darkroom does (its family, from disk) and render: sizes,
    not blank, the same seed the same pixels, another seed others."""
    import io

    from PIL import Image

    from darkroom.engine.base import RenderRequest, StyleHint
    from darkroom.engine.diffusers_backend import DiffusersBackend
    from darkroom.engine.weights import WeightsEntry

    os.environ["HF_HUB_OFFLINE"] = "1"

    def render(backend: DiffusersBackend, width: int, height: int, seed: int) -> NDArray[Any]:
        sources = () if family.capabilities.generate else (_png(Image.new("RGB", (64, 64))),)
        request = RenderRequest(
            "img_check",
            "m",
            "a photo of a cat",
            "a cat",
            StyleHint("general", (), "scatter"),
            width,
            height,
            1,
            seed,
            sources=sources,
        )
        with Image.open(io.BytesIO(backend.render(request)[0])) as image:
            assert image.size == (width, height), image.size
            return np.asarray(image.convert("RGB"))

    for kind in BUILDERS:
        start = time.perf_counter()
        directory = built(kind)
        build_s = time.perf_counter() - start
        size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
        backend = DiffusersBackend(
            {"m": WeightsEntry(source=str(directory), steps=2, max_sequence_length=64)},
            device="cpu",
        )
        start = time.perf_counter()
        family = backend.family("m", backend.weights["m"])
        load_s = time.perf_counter() - start
        print(
            f"{kind}: {type(family.pipeline).__name__}, build+save {build_s:.3f}s, "
            f"load {load_s:.3f}s, {size / 1e6:.2f} MB on disk"
        )
        for width, height in [(64, 64), (128, 64), (64, 128)]:
            start = time.perf_counter()
            first = render(backend, width, height, seed=1)
            print(f"  {width}x{height}: {time.perf_counter() - start:.3f}s, std {first.std():.1f}")
            assert first.std() > 0, "blank (NaN or constant) image"
            assert np.array_equal(first, render(backend, width, height, 1)), "same seed differs"
            assert not np.array_equal(first, render(backend, width, height, 2)), "seeds agree"
    print("ok")


def _png(image: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


if __name__ == "__main__":
    _self_check()

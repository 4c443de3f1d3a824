"""Tiny-but-real diffusers pipelines for tests.

Each ``build_*`` function assembles a real diffusers pipeline (FLUX.1-schnell, Z-Image, SDXL)
out of miniature configs with random weights and tokenizers built in memory, then writes it with
``save_pretrained``. Tests can then exercise the genuine loading path,
``DiffusionPipeline.from_pretrained(path, local_files_only=True)``, and the genuine sampling
loop without downloading anything: a build takes well under a second and a few MB of disk.

The images are noise, but they are deterministic noise of exactly the requested size: every
VAE keeps the real x8 spatial scale factor.

Run ``python tests/tiny_pipelines.py`` for a self-check that builds, reloads and samples each one.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
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
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3Model,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

__all__ = [
    "build_flux",
    "build_sdxl",
    "build_zimage",
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


def qwen_tokenizer() -> Qwen2Tokenizer:
    """Byte-level Qwen2 tokenizer without merges, with Qwen's chat special tokens."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: i for i, token in enumerate([*_byte_chars(), *specials])}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], extra_special_tokens=specials[1:])
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


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


def build_zimage(directory: Path) -> Path:
    """A Z-Image-Turbo-shaped ``ZImagePipeline`` (Qwen3 text encoder), saved into directory."""
    with _seeded():
        tokenizer = qwen_tokenizer()
        text_encoder = Qwen3Model(
            Qwen3Config(
                vocab_size=len(tokenizer),
                hidden_size=HIDDEN,
                intermediate_size=2 * HIDDEN,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=2,
                head_dim=16,
                max_position_embeddings=1024,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            )
        )
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


# --- self-check --------------------------------------------------------------------------------


def _generate(
    pipe: DiffusionPipeline, steps: int, width: int, height: int, seed: int
) -> NDArray[np.uint8]:
    """One image as a numpy array, checked for size and for not being blank."""
    start = time.perf_counter()
    image = pipe(
        "a photo of a cat",
        width=width,
        height=height,
        num_inference_steps=steps,
        guidance_scale=0.0,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="pil",
    ).images[0]
    pixels = np.asarray(image)
    elapsed = time.perf_counter() - start
    print(f"  {width}x{height} seed {seed}: {image.size} in {elapsed:.3f}s, std {pixels.std():.1f}")
    assert image.size == (width, height), image.size
    assert pixels.std() > 0, "blank (NaN or constant) image"
    return pixels


def _self_check() -> None:  # pragma: no cover - run by hand
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    os.environ["HF_HUB_OFFLINE"] = "1"
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    builders: list[tuple[Callable[[Path], Path], int]] = [
        (build_flux, 4),
        (build_zimage, 9),
        (build_sdxl, 1),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for build, steps in builders:
            directory = Path(tmp) / build.__name__
            start = time.perf_counter()
            build(directory)
            built = time.perf_counter() - start
            size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
            start = time.perf_counter()
            pipe = DiffusionPipeline.from_pretrained(directory, local_files_only=True)
            loaded = time.perf_counter() - start
            pipe.set_progress_bar_config(disable=True)
            print(
                f"{build.__name__}: {type(pipe).__name__}, build+save {built:.3f}s, "
                f"load {loaded:.3f}s, {size / 1e6:.2f} MB on disk"
            )
            for width, height in [(64, 64), (128, 64), (64, 128)]:
                first = _generate(pipe, steps, width, height, seed=1)
                again = _generate(pipe, steps, width, height, seed=1)
                other = _generate(pipe, steps, width, height, seed=2)
                assert np.array_equal(first, again), "same seed, different pixels"
                assert not np.array_equal(first, other), "different seed, same pixels"
    print("ok")


if __name__ == "__main__":
    _self_check()

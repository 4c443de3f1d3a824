"""The catalog: data validated once, price table, sizes, tiers, deprecated fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from darkroom.core.catalog import Catalog, ImageSpec
from darkroom.core.errors import InvalidRequest, TierForbidden

CATALOG = Catalog.load()


def plan(tier: str = "business", **fields: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {"prompt": "a boat", "image_count": 1}
    values.update(fields)
    return CATALOG.plan(ImageSpec(**values), tier)  # type: ignore[arg-type]


def test_seed_003_models_and_35_tools() -> None:
    assert set(CATALOG.models) == {
        "flux-schnell",
        "z-image-turbo",
        "seedream-v4",
        "nano-banana",
        "nano-banana-2",
        "nano-banana-pro",
        "gpt-image-2",
    }
    assert len(CATALOG.tools) == 35
    assert "general" in CATALOG.tools
    assert CATALOG.models["nano-banana-pro"].tiers == ("creator", "pro", "business")


@pytest.mark.parametrize(
    ("model", "resolution", "count", "credits"),
    [
        ("flux-schnell", "640px", 1, 5),
        ("flux-schnell", "1k", 4, 20),
        ("flux-schnell", "2k", 1, 10),
        ("seedream-v4", "4k", 2, 320),
        ("nano-banana", "1k", 3, 150),
        ("nano-banana-2", "2k", 9, 1800),
        ("nano-banana-pro", "4k", 16, 9600),
        ("gpt-image-2", "640px", 1, 50),
    ],
)
def test_price_table(model: str, resolution: str, count: int, credits: int) -> None:
    assert plan(model=model, resolution=resolution, image_count=count).credits == credits


def test_every_size_is_a_multiple_of_16_within_its_resolution() -> None:
    for ratio, table in CATALOG.sizes.items():
        for resolution, (w, h) in table.items():
            assert max(w, h) == CATALOG.resolutions[resolution]
            assert w % 16 == 0 and h % 16 == 0
            want = {"1:1": 1.0, "16:9": 16 / 9, "9:16": 9 / 16}[ratio]
            assert abs(w / h - want) / want < 0.04
    assert CATALOG.sizes["16:9"]["1k"] == (1024, 576)


def test_default_model_and_auto_resolution_follow_tier() -> None:
    assert plan("free").model == CATALOG.default_model
    assert plan("free", model="default").resolution == "1k"
    assert plan("pro", model="flux-schnell").resolution == "2k"
    assert plan("business", model="seedream-v4").resolution == "4k"
    assert plan("business", model="nano-banana").resolution == "1k"
    assert plan("creator", model="nano-banana-pro", resolution="auto").resolution == "1k"


def test_deprecated_fields() -> None:
    assert plan(orientation="landscape").aspect_ratio == "16:9"
    assert plan(orientation="portrait", aspect_ratio="1:1").aspect_ratio == "1:1"
    assert plan(quality_mode="pro").model == "seedream-v4"
    assert plan(quality_mode="standard").model == "z-image-turbo"
    assert plan(quality_mode="pro", model="flux-schnell").model == "flux-schnell"
    assert plan(model="seedream").model == "seedream-v4"


def test_style_tool_shapes_the_prompt() -> None:
    anime = plan(tool="ai-anime-generator")
    assert anime.final_prompt.startswith("anime style illustration of a boat")
    assert anime.style.palette and anime.style.composition
    assert plan().final_prompt == "a boat"


def test_gating_and_invalid_values() -> None:
    with pytest.raises(TierForbidden, match="gpt-image-2"):
        plan("free", model="gpt-image-2")
    with pytest.raises(TierForbidden, match="4k"):
        plan("pro", model="seedream-v4", resolution="4k")
    with pytest.raises(InvalidRequest) as exc:
        plan(model="nano-banana", resolution="2k")
    assert exc.value.field == "resolution"
    with pytest.raises(InvalidRequest) as exc:
        plan(model="nano-banana-2", image_count=2)
    assert exc.value.field == "image_count"
    with pytest.raises(InvalidRequest) as exc:
        plan(model="flux-2-klein")
    assert exc.value.field == "model"


def test_operator_override_merges_over_the_shipped_catalog(tmp_path: Path) -> None:
    override = tmp_path / "catalog.toml"
    override.write_text(
        'default_model = "flux-schnell"\n'
        "[models.flux-schnell]\ncredits_per_image = 7\n"
        '[models.my-model]\ntitle = "Mine"\ncredits_per_image = 1\nresolutions = ["1k"]\n'
        'tiers = ["free"]\nimage_counts = [1]\n'
    )
    catalog = Catalog.load(override)
    assert catalog.default_model == "flux-schnell"
    assert catalog.price("flux-schnell", "2k", 1) == 14
    assert catalog.models["flux-schnell"].resolutions == ("640px", "1k", "2k")
    assert catalog.plan(ImageSpec(prompt="x", image_count=1, model="my-model"), "free").credits == 1


def test_inconsistent_override_is_refused(tmp_path: Path) -> None:
    override = tmp_path / "catalog.toml"
    override.write_text('[models.flux-schnell]\nresolutions = ["8k"]\n')
    with pytest.raises(ValueError, match="unknown resolution"):
        Catalog.load(override)
    override.write_text("not toml = = =")
    with pytest.raises(ValueError, match="cannot read"):
        Catalog.load(override)


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('[openai.aliases.dall-e-2]\nmodel = "dall-e-9000"\n', "unknown model 'dall-e-9000'"),
        ('[openai.aliases.dall-e-3]\nsizes = ["huge"]\n', "'huge' is not WIDTHxHEIGHT"),
        ('[openai.aliases.dall-e-3]\nquality = { ultra = "seedream-v4" }\n', "unknown quality"),
        ('[openai]\ndefault_model = "nope"\n', "openai.default_model 'nope' unknown"),
        ('[openai.styles]\nvivid = "no placeholder"\n', "template lacks {prompt}"),
        ('[openai.aliases.flux-schnell]\nmodel = "z-image-turbo"\n', "hides the catalog model"),
    ],
)
def test_inconsistent_openai_names_are_refused(tmp_path: Path, toml: str, problem: str) -> None:
    override = tmp_path / "catalog.toml"
    override.write_text(toml)
    with pytest.raises(ValueError, match=problem.replace("{", r"\{").replace("(", r"\(")):
        Catalog.load(override)


def test_exact_sizes_are_priced_by_their_longest_edge() -> None:
    assert (plan(size=(256, 256)).resolution, plan(size=(256, 256)).credits) == ("640px", 5)
    wide = plan(model="z-image-turbo", size=(1792, 1024))
    assert (wide.resolution, wide.width, wide.height, wide.aspect_ratio) == (
        "2k",
        1792,
        1024,
        "7:4",
    )
    assert wide.credits == 10
    assert plan(size=(1024, 576)).aspect_ratio == "16:9"  # a catalog size keeps its ratio name
    with pytest.raises(TierForbidden, match="2k"):
        plan(tier="free", size=(1536, 1024))
    with pytest.raises(InvalidRequest, match="at most 2048"):
        plan(model="flux-schnell", size=(4096, 4096))
    with pytest.raises(InvalidRequest, match="multiples of 16"):
        plan(size=(1000, 1000))

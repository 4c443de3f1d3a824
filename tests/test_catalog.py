"""The catalog: data validated once, price table, sizes, tiers, deprecated fields; and that it
lists every model of the published ``magic_hour`` SDK as its docstrings describe them."""

from __future__ import annotations

import re
from importlib.util import find_spec
from pathlib import Path

import pytest

from darkroom.core.catalog import Catalog, ImageSpec
from darkroom.core.errors import InvalidRequest, TierForbidden

CATALOG = Catalog.load()


def plan(tier: str = "business", **fields: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {"prompt": "a boat", "image_count": 1}
    values.update(fields)
    return CATALOG.plan(ImageSpec(**values), tier)  # type: ignore[arg-type]


def published(module: str) -> dict[str, dict[str, str]]:
    """Each model the installed SDK's docstring of ``module`` lists, with its lines (``from``:
    the price, ``resolutions``, ``tiers``, ``counts``, ``inputs``)."""
    spec = find_spec(f"magic_hour.types.params.{module}")
    assert spec is not None and spec.origin is not None
    text = Path(spec.origin).read_text().split("class _Serializer")[0]
    models: dict[str, dict[str, str]] = {}
    pattern = re.compile(
        r"- `([a-z0-9.-]+)` - from (\d+) credits/image\n\s+- Supported resolutions: (.*)\n"
        r"\s+- Available for tiers: (.*)\n\s+- (?:Image count allowed|Max additional input "
        r"images): (.*)\n"
    )
    for name, price, resolutions, tiers, last in pattern.findall(text):
        models[name] = {"from": price, "resolutions": resolutions, "tiers": tiers, "last": last}
    return models


def test_every_model_of_the_published_sdk_as_it_describes_it() -> None:
    generator = published("v1_ai_image_generator_create_body")
    editor = published("v1_ai_image_editor_create_body")
    assert len(generator) == 14 and len(editor) == 14  # and `default` (and `seedream`)
    assert set(CATALOG.generators()) == set(generator)
    assert set(CATALOG.editors()) == set(editor) | {"flux-schnell"}  # (OpenAI's dall-e-2)
    for name, described in (generator | editor).items():
        model = CATALOG.models[name]
        lowest = CATALOG.resolution_order(model.resolutions)[0]
        assert CATALOG.price_per_image(name, lowest) == int(described["from"]), name
        assert ", ".join(CATALOG.resolution_order(model.resolutions)) == described["resolutions"]
        assert ", ".join(model.tiers) == described["tiers"], name
    for name, described in generator.items():
        assert ", ".join(map(str, CATALOG.models[name].image_counts)) == described["last"]
    for name, described in editor.items():  # the image to edit, and the additional ones
        assert CATALOG.models[name].max_input_images == 1 + int(described["last"]), name
    assert CATALOG.model_aliases == {"seedream": "seedream-v4"}


def test_35_tools() -> None:
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
        # GPT Image's price doubles with each resolution: a price row per resolution.
        ("gpt-image-2", "1k", 1, 100),
        ("gpt-image-2", "2k", 3, 600),
        ("gpt-image-2", "4k", 2, 800),
        ("gpt-image-2.5-flare", "1k", 1, 200),
        ("flux-2-klein", "2k", 1, 10),
        ("qwen-image-2.1", "1k", 4, 40),
        ("krea-2", "640px", 1, 10),
        ("seedream-v5-pro", "2k", 1, 150),
    ],
)
def test_price_table(model: str, resolution: str, count: int, credits: int) -> None:
    assert plan(model=model, resolution=resolution, image_count=count).credits == credits


def test_every_size_is_a_multiple_of_16_within_its_resolution() -> None:
    for ratio, table in CATALOG.sizes.items():
        for resolution, (w, h) in table.items():
            assert max(w, h) == CATALOG.resolutions[resolution]
            assert w % 16 == 0 and h % 16 == 0
            width, height = (int(side) for side in ratio.split(":"))
            want = width / height
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
        plan(model="flux-3")
    assert exc.value.field == "model"
    with pytest.raises(InvalidRequest, match="only edits images") as exc:
        plan(model="qwen-edit")  # an editor's model, not the generator's
    assert exc.value.field == "model"


def test_edits_take_the_models_inputs_and_follow_the_first_image() -> None:
    edit = {"edit": True, "aspect_ratio": "auto", "follow": (300, 200)}
    assert plan(model="default", source_count=1, **edit).model == CATALOG.default_edit_model
    wide = plan(model="qwen-edit", source_count=3, resolution="1k", **edit)
    assert (wide.width, wide.height, wide.aspect_ratio) == (1024, 688, "3:2")
    tall = plan(model="flux-2-klein", source_count=1, **{**edit, "follow": (100, 1000)})
    assert (tall.width, tall.height) == (256, 2048)  # very narrow: the short side is 256 at least
    with pytest.raises(InvalidRequest, match="takes at most 3 input images") as exc:
        plan(model="qwen-edit", source_count=4, **edit)
    assert exc.value.field == "assets.image_file_paths"
    with pytest.raises(InvalidRequest, match="cannot edit"):
        plan(model="z-image-turbo", source_count=1, **edit)
    assert plan(model="seedream-v4.5", source_count=10, **edit).credits == 200  # 4k: 50 x 4


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
        (
            '[models.mine]\ntitle = "Mine"\ncredits_per_image = 1\nresolutions = ["640px", "1k"]\n'
            'tiers = ["free"]\nimage_counts = [1]\nprices = { "1k" = 100 }\n',
            "prices must give every one",
        ),
        (
            '[models.gpt-image-2]\nprices = { "640px" = 1, "1k" = 2, "2k" = 3, "4k" = 4 }\n',
            "price at its lowest resolution",
        ),
        ('default_edit_model = "z-image-turbo"\n', "cannot edit"),
        ("[models.flux-2-klein]\nedits = false\ngenerates = false\n", "neither generates"),
        ('[openai.aliases.dall-e-3]\nsizes = ["huge"]\n', "'huge' is not WIDTHxHEIGHT"),
        ('[openai.aliases.dall-e-3]\nquality = { ultra = "seedream-v4" }\n', "unknown quality"),
        ('[openai]\ndefault_model = "nope"\n', "openai.default_model 'nope' unknown"),
        ('[openai.styles]\nvivid = "no placeholder"\n', "template lacks {prompt}"),
        ('[openai.aliases.flux-schnell]\nmodel = "z-image-turbo"\n', "hides the catalog model"),
    ],
)
def test_inconsistent_catalogs_are_refused(tmp_path: Path, toml: str, problem: str) -> None:
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


def test_gpt_image_2_takes_the_sizes_the_openai_package_documents() -> None:
    widest = plan(model="gpt-image-2", size=(3840, 2160))  # the largest: a 4k price row
    assert (widest.resolution, widest.credits) == ("4k", 400)
    assert plan(model="gpt-image-2", size=(1536, 864)).credits == 200  # 2k
    assert plan(model="gpt-image-2", size=(768, 256)).resolution == "1k"  # 3:1 exactly
    for size, problem in (
        ((4096, 2304), "at most 3840 pixels"),
        ((2880, 2896), "8294400 pixels in all"),
        ((1024, 320), "between 1:3 and 3:1"),
    ):
        with pytest.raises(InvalidRequest, match=problem):
            plan(model="gpt-image-2", size=size)

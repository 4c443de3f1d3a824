"""The vendor fakes of tests/vendor_fakes.py answer as the vendors document, refuse what the
vendors refuse, and fail on cue."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.vendor_fakes import (
    FakeGemini,
    FakeOpenAI,
    FakeSeedream,
    FakeVendor,
    picture,
    prompt_colour,
)

KEY = "sk-test-0123456789abcdef"


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def colour(data: bytes) -> tuple[int, int, int]:
    pixel = decode(data).convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


def close_to(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    """Equal but for JPEG's rounding."""
    return all(abs(x - y) <= 3 for x, y in zip(a, b, strict=True))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- the same checks of every fake ----------------------------------------------------------


@dataclass
class Vendor:
    """How to make one plain request of a fake, and read its first image."""

    fake: type[FakeVendor]
    path: str
    body: dict[str, Any]
    auth: Callable[[str], dict[str, str]]
    first_image: Callable[[dict[str, Any]], str]  # base64
    error_keys: set[str]
    bad_key_status: int
    missing_key_status: int


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


VENDORS = {
    "openai": Vendor(
        FakeOpenAI,
        "/images/generations",
        {"model": "gpt-image-1", "prompt": "a fox", "size": "1024x1024", "quality": "low"},
        bearer,
        lambda answer: answer["data"][0]["b64_json"],
        {"message", "type", "param", "code"},
        401,
        401,
    ),
    "gemini": Vendor(
        FakeGemini,
        "/models/gemini-2.5-flash-image:generateContent",
        {
            "contents": [{"role": "user", "parts": [{"text": "a fox"}]}],
            "generationConfig": {"responseModalities": ["IMAGE"]},
        },
        lambda key: {"x-goog-api-key": key},
        lambda answer: answer["candidates"][0]["content"]["parts"][0]["inlineData"]["data"],
        {"code", "message", "status"},
        400,  # Google: INVALID_ARGUMENT, reason API_KEY_INVALID
        403,  # PERMISSION_DENIED
    ),
    "seedream": Vendor(
        FakeSeedream,
        "/images/generations",
        {
            "model": "seedream-4-0-250828",
            "prompt": "a fox",
            "size": "1K",
            "response_format": "b64_json",
        },
        bearer,
        lambda answer: answer["data"][0]["b64_json"],
        {"code", "message", "param", "type"},
        401,
        401,
    ),
}


@pytest.fixture(scope="module", params=list(VENDORS))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[Vendor, FakeVendor]]:
    spec = VENDORS[request.param]
    with spec.fake(KEY) as fake:
        yield spec, fake


@pytest.fixture
def vendor(served: tuple[Vendor, FakeVendor]) -> tuple[Vendor, FakeVendor]:
    served[1].reset()
    return served


def post(
    spec: Vendor, fake: FakeVendor, key: str | None = KEY, timeout: float = 10
) -> httpx.Response:
    headers = spec.auth(key) if key is not None else {}
    return httpx.post(fake.url + spec.path, json=spec.body, headers=headers, timeout=timeout)


def error_of(spec: Vendor, answer: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = answer.json()["error"]
    assert spec.error_keys <= error.keys()
    return error


def test_a_plain_request_is_answered_and_recorded(vendor: tuple[Vendor, FakeVendor]) -> None:
    spec, fake = vendor
    answer = post(spec, fake)
    assert answer.status_code == 200, answer.text
    image = base64.b64decode(spec.first_image(answer.json()))
    assert decode(image).size == (1024, 1024)
    assert close_to(colour(image), prompt_colour("a fox"))
    [received] = fake.requests
    assert (received.method, received.path) == ("POST", "/" + fake.url.split("/", 3)[3] + spec.path)
    assert received.json == spec.body
    assert received.answered == 200
    assert KEY in " ".join(received.headers.values())


def test_a_wrong_or_missing_key_is_refused(vendor: tuple[Vendor, FakeVendor]) -> None:
    spec, fake = vendor
    wrong = post(spec, fake, key="sk-wrong-key-000")
    assert wrong.status_code == spec.bad_key_status
    assert error_of(spec, wrong)["message"]
    missing = post(spec, fake, key=None)
    assert missing.status_code == spec.missing_key_status
    error_of(spec, missing)
    assert [r.answered for r in fake.requests] == [wrong.status_code, missing.status_code]


def test_cue_401_answers_as_a_wrong_key(vendor: tuple[Vendor, FakeVendor]) -> None:
    spec, fake = vendor
    fake.fail("401")
    answer = post(spec, fake)
    assert answer.status_code == spec.bad_key_status
    assert error_of(spec, answer) == error_of(spec, post(spec, fake, key="sk-wrong")) | {
        "message": error_of(spec, answer)["message"]
    }


def test_cues_are_taken_one_per_request_in_order(vendor: tuple[Vendor, FakeVendor]) -> None:
    spec, fake = vendor
    fake.fail("500", "not-an-image")
    failed = post(spec, fake)
    assert failed.status_code == 500
    error_of(spec, failed)
    corrupt = post(spec, fake)
    assert corrupt.status_code == 200
    assert base64.b64decode(spec.first_image(corrupt.json())) == b"hello"
    assert post(spec, fake).status_code == 200


def test_cue_429_says_when_to_retry(vendor: tuple[Vendor, FakeVendor]) -> None:
    spec, fake = vendor
    fake.fail(("429", 7))
    answer = post(spec, fake)
    assert answer.status_code == 429
    error = error_of(spec, answer)
    if spec.fake is FakeGemini:  # in the body, as Google does: no Retry-After header
        assert "retry-after" not in answer.headers
        assert error["status"] == "RESOURCE_EXHAUSTED"
        [retry] = [d for d in error["details"] if d["@type"].endswith("RetryInfo")]
        assert retry["retryDelay"] == "7s"
    else:
        assert answer.headers["retry-after"] == "7"


@pytest.mark.parametrize("name", list(VENDORS))
def test_cue_hang_holds_the_answer_until_the_fake_stops(name: str) -> None:
    spec = VENDORS[name]
    with spec.fake(KEY) as fake:
        fake.fail("hang")
        with pytest.raises(httpx.ReadTimeout):
            post(spec, fake, timeout=0.3)
        stopping = threading.Thread(target=fake.stop)
        stopping.start()
        stopping.join(5)
        assert not stopping.is_alive()  # the held answer let go of, at once


def test_cue_delay_and_latency_slow_a_normal_answer(vendor: tuple[Vendor, FakeVendor]) -> None:
    spec, fake = vendor
    fake.fail(("delay", 0.3))
    started = time.monotonic()
    assert post(spec, fake).status_code == 200
    assert time.monotonic() - started >= 0.3
    fake.latency = 0.2
    started = time.monotonic()
    assert post(spec, fake).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_cue_blocked_is_the_vendors_safety_refusal(vendor: tuple[Vendor, FakeVendor]) -> None:
    spec, fake = vendor
    fake.fail("blocked")
    answer = post(spec, fake)
    if spec.fake is FakeGemini:
        assert answer.status_code == 200
        assert answer.json()["promptFeedback"] == {"blockReason": "SAFETY"}
        assert "candidates" not in answer.json()
    else:
        assert answer.status_code == 400
        code = error_of(spec, answer)["code"]
        assert code in ("moderation_blocked", "OutputImageSensitiveContentDetected")


def test_an_unknown_cue_is_refused_at_once() -> None:
    with FakeOpenAI() as fake, pytest.raises(ValueError, match="no cue"):
        fake.fail("503")


# -- OpenAI ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(KEY) as fake:
        yield fake


@pytest.fixture
def fake_openai(served_openai: FakeOpenAI) -> FakeOpenAI:
    served_openai.reset()
    return served_openai


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=KEY, base_url=fake_openai.url, max_retries=0) as client:
        yield client


def test_openai_generates_with_the_sdk(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="gpt-image-1", prompt="a lighthouse", n=2, size="1536x1024", quality="low"
    )
    assert result.data is not None and len(result.data) == 2
    images = [base64.b64decode(item.b64_json or "") for item in result.data]
    assert [decode(image).size for image in images] == [(1536, 1024)] * 2
    assert [colour(image) for image in images] == [prompt_colour("a lighthouse", i) for i in (0, 1)]
    assert (result.size, result.quality, result.output_format) == ("1536x1024", "low", "png")
    assert result.usage is not None and result.usage.output_tokens == 2 * 400
    assert result.usage.input_tokens_details.text_tokens == result.usage.input_tokens
    [received] = fake_openai.requests
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.json == {
        "model": "gpt-image-1",
        "prompt": "a lighthouse",
        "n": 2,
        "size": "1536x1024",
        "quality": "low",
    }


def test_openai_dall_e_urls_are_served_until_they_expire(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    result = client.images.generate(model="dall-e-3", prompt="a moon", size="1024x1792")
    assert result.data is not None and result.usage is None
    [item] = result.data
    assert item.b64_json is None and item.revised_prompt == "a moon"
    assert item.url is not None and item.url.startswith(fake_openai.origin + "/files/")
    image = httpx.get(item.url)
    assert image.headers["content-type"] == "image/png"
    assert decode(image.content).size == (1024, 1792)
    fake_openai.expire_urls()
    assert httpx.get(item.url).status_code == 403


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (
            {"model": "gpt-image-1", "prompt": "x", "response_format": "url"},
            "response_format",
            "unknown_parameter",
        ),
        ({"model": "gpt-image-1", "prompt": "x", "size": "999x999"}, "size", "invalid_value"),
        ({"model": "dall-e-2", "prompt": "x", "size": "1536x1024"}, "size", "invalid_value"),
        ({"model": "gpt-image-1", "size": "auto"}, "prompt", "missing_required_parameter"),
        ({"model": "gpt-image-1", "prompt": "x", "n": 11}, "n", "integer_above_max_value"),
        ({"model": "dall-e-3", "prompt": "x", "n": 2}, "n", "integer_above_max_value"),
        ({"model": "gpt-image-1", "prompt": "x", "quality": "hd"}, "quality", "invalid_value"),
        (
            {"model": "gpt-image-1", "prompt": "x", "output_format": "gif"},
            "output_format",
            "invalid_value",
        ),
        (
            {"model": "dall-e-2", "prompt": "x", "output_format": "png"},
            "output_format",
            "unknown_parameter",
        ),
        ({"model": "imagen", "prompt": "x"}, "model", "invalid_value"),
    ],
)
def test_openai_refuses_a_wrong_generation_request(
    fake_openai: FakeOpenAI, body: dict[str, Any], param: str, code: str
) -> None:
    answer = httpx.post(f"{fake_openai.url}/images/generations", json=body, headers=bearer(KEY))
    assert answer.status_code == 400
    assert answer.json()["error"] | {"message": ""} == {
        "message": "",
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    }


def test_openai_edits_several_images_with_a_mask_with_the_sdk(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    first, second = png(1536, 1024), picture(800, 600, (1, 2, 3), "jpeg")
    result = client.images.edit(
        model="gpt-image-1",
        image=[("a.png", first, "image/png"), ("b.jpg", second, "image/jpeg")],
        mask=("mask.png", png(1536, 1024, "RGBA"), "image/png"),
        prompt="make it night",
        output_format="webp",
    )
    assert result.data is not None
    image = decode(base64.b64decode(result.data[0].b64_json or ""))
    assert (image.format, image.size) == ("WEBP", (1536, 1024))  # auto: the first image's shape
    assert result.usage is not None and result.usage.input_tokens_details.image_tokens > 0
    [received] = fake_openai.requests
    uploads = received.files["image[]"]
    assert [(u.filename, u.content_type) for u in uploads] == [
        ("a.png", "image/png"),
        ("b.jpg", "image/jpeg"),
    ]
    assert [u.data for u in uploads] == [first, second]
    assert received.files["mask"][0].content_type == "image/png"
    assert received.fields["prompt"] == ["make it night"]


@pytest.mark.parametrize(
    ("files", "param", "code"),
    [
        (
            {"image": ("a.png", png(64, 64), "application/octet-stream")},
            "image",
            "unsupported_file_mimetype",
        ),
        ({"image": ("a.png", b"hello", "image/png")}, "image", "invalid_image_file"),
        ({"image": ("a.gif", b"GIF89a", "image/gif")}, "image", "unsupported_file_mimetype"),
        (
            {
                "image": ("a.png", png(64, 64), "image/png"),
                "mask": ("m.png", png(32, 32, "RGBA"), "image/png"),
            },
            "mask",
            "invalid_value",
        ),
        (
            {
                "image": ("a.png", png(64, 64), "image/png"),
                "mask": ("m.png", png(64, 64), "image/png"),
            },
            "mask",
            "invalid_image_file",
        ),
        ({}, "image", "missing_required_parameter"),
    ],
)
def test_openai_refuses_a_wrong_edit(
    fake_openai: FakeOpenAI, files: dict[str, Any], param: str, code: str
) -> None:
    answer = httpx.post(
        f"{fake_openai.url}/images/edits",
        data={"model": "gpt-image-1", "prompt": "x"},
        files=files or {"unused": ("x.txt", b"x", "text/plain")},
        headers=bearer(KEY),
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["param"], error["code"]) == (param, code)


def test_openai_edits_take_multipart_only(fake_openai: FakeOpenAI) -> None:
    answer = httpx.post(
        f"{fake_openai.url}/images/edits", json={"prompt": "x"}, headers=bearer(KEY)
    )
    assert answer.status_code == 400
    assert "multipart/form-data" in answer.json()["error"]["message"]


# -- Gemini ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_gemini() -> Iterator[FakeGemini]:
    with FakeGemini(KEY) as fake:
        yield fake


@pytest.fixture
def fake_gemini(served_gemini: FakeGemini) -> FakeGemini:
    served_gemini.reset()
    return served_gemini


def generate_content(
    fake: FakeGemini, body: dict[str, Any], model: str = "gemini-2.5-flash-image"
) -> httpx.Response:
    return httpx.post(
        f"{fake.url}/models/{model}:generateContent", json=body, headers={"x-goog-api-key": KEY}
    )


def test_gemini_answers_text_and_one_image_of_the_aspect_ratio(fake_gemini: FakeGemini) -> None:
    answer = generate_content(
        fake_gemini,
        {
            "contents": [{"parts": [{"text": "a beach"}]}],
            "generationConfig": {
                "responseModalities": ["TEXT", "IMAGE"],
                "imageConfig": {"aspectRatio": "16:9"},
            },
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [candidate] = body["candidates"]
    assert candidate["finishReason"] == "STOP"
    assert candidate["content"]["role"] == "model"
    text, inline = candidate["content"]["parts"]
    assert isinstance(text["text"], str)
    assert inline["inlineData"]["mimeType"] == "image/png"
    image = base64.b64decode(inline["inlineData"]["data"])
    assert decode(image).size == (1344, 768)
    assert colour(image) == prompt_colour("a beach")
    usage = body["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert body["modelVersion"] == "gemini-2.5-flash-image"


def test_gemini_takes_the_key_as_a_query_parameter(fake_gemini: FakeGemini) -> None:
    answer = httpx.post(
        f"{fake_gemini.url}/models/gemini-2.5-flash-image:generateContent",
        params={"key": KEY},
        json={"contents": [{"parts": [{"text": "x"}]}]},
    )
    assert answer.status_code == 200
    assert fake_gemini.requests[0].query == {"key": KEY}


def test_gemini_edits_an_inline_image_in_either_spelling(fake_gemini: FakeGemini) -> None:
    photo = picture(1248, 832, (9, 9, 9), "jpeg")
    for inline in (
        {"inline_data": {"mime_type": "image/jpeg", "data": b64(photo)}},
        {"inlineData": {"mimeType": "image/jpeg", "data": b64(photo)}},
    ):
        answer = generate_content(
            fake_gemini,
            {"contents": [{"role": "user", "parts": [{"text": "add a cat"}, inline]}]},
        )
        assert answer.status_code == 200, answer.text
        parts = answer.json()["candidates"][0]["content"]["parts"]
        # no aspectRatio: the input's shape (3:2)
        assert decode(base64.b64decode(parts[-1]["inlineData"]["data"])).size == (1248, 832)


def test_gemini_3_takes_an_image_size(fake_gemini: FakeGemini) -> None:
    answer = generate_content(
        fake_gemini,
        {
            "contents": [{"parts": [{"text": "x"}]}],
            "generationConfig": {
                "responseModalities": ["IMAGE"],
                "imageConfig": {"aspectRatio": "1:1", "imageSize": "2K"},
            },
        },
        model="gemini-3-pro-image-preview",
    )
    data = answer.json()["candidates"][0]["content"]["parts"][0]["inlineData"]["data"]
    assert decode(base64.b64decode(data)).size == (2048, 2048)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contents": []}, "contents is not specified"),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "imageConfig": {}},
            'Unknown name "imageConfig"',
        ),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"aspectRatio": "1:1"}},
            'Unknown name "aspectRatio"',
        ),
        (
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"imageConfig": {"imageSize": "2k"}},
            },
            "image size",
        ),
        (
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"imageConfig": {"aspectRatio": "7:5"}},
            },
            "aspect ratio",
        ),
        (
            {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "@@@"}}]}]},
            "Base64 decoding failed",
        ),
        (
            {
                "contents": [
                    {"parts": [{"inlineData": {"mimeType": "image/png", "data": b64(b"hello")}}]}
                ]
            },
            "Unable to process input image",
        ),
    ],
)
def test_gemini_refuses_a_wrong_request(
    fake_gemini: FakeGemini, body: dict[str, Any], message: str
) -> None:
    answer = generate_content(fake_gemini, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert message in error["message"]


def test_gemini_knows_its_models_and_methods(fake_gemini: FakeGemini) -> None:
    body = {"contents": [{"parts": [{"text": "x"}]}]}
    text_model = generate_content(fake_gemini, body, model="gemini-2.5-flash")
    assert text_model.status_code == 400
    assert "response modalities" in text_model.json()["error"]["message"]
    streaming = httpx.post(
        f"{fake_gemini.url}/models/gemini-2.5-flash-image:streamGenerateContent",
        json=body,
        headers={"x-goog-api-key": KEY},
    )
    assert streaming.status_code == 404
    assert streaming.json()["error"]["status"] == "NOT_FOUND"


def test_gemini_cue_finish_gives_a_candidate_without_an_image(fake_gemini: FakeGemini) -> None:
    fake_gemini.fail(("finish", "IMAGE_SAFETY"))
    answer = generate_content(fake_gemini, {"contents": [{"parts": [{"text": "x"}]}]})
    assert answer.status_code == 200
    [candidate] = answer.json()["candidates"]
    assert candidate["finishReason"] == "IMAGE_SAFETY"
    assert "content" not in candidate


# -- Seedream (ModelArk) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_seedream() -> Iterator[FakeSeedream]:
    with FakeSeedream(KEY) as fake:
        yield fake


@pytest.fixture
def fake_seedream(served_seedream: FakeSeedream) -> FakeSeedream:
    served_seedream.reset()
    return served_seedream


def seedream(fake: FakeSeedream, **body: Any) -> httpx.Response:
    body = {"model": "seedream-4-0-250828", "prompt": "a tower"} | body
    return httpx.post(f"{fake.url}/images/generations", json=body, headers=bearer(KEY))


def test_seedream_answers_urls_that_expire(fake_seedream: FakeSeedream) -> None:
    answer = seedream(fake_seedream, watermark=False)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "seedream-4-0-250828"
    [item] = body["data"]
    assert item["size"] == "2048x2048"
    assert body["usage"] == {
        "generated_images": 1,
        "output_tokens": 2048 * 2048 // 256,
        "total_tokens": 2048 * 2048 // 256,
    }
    image = httpx.get(item["url"])
    assert image.headers["content-type"] == "image/jpeg"
    assert decode(image.content).size == (2048, 2048)
    assert close_to(colour(image.content), prompt_colour("a tower"))
    fake_seedream.expire_urls()
    assert httpx.get(item["url"]).status_code == 403


def test_seedream_makes_a_sequence_from_reference_images(fake_seedream: FakeSeedream) -> None:
    answer = seedream(
        fake_seedream,
        image=["https://example.com/a.png", f"data:image/png;base64,{b64(png(32, 32))}"],
        size="1280x720",
        sequential_image_generation="auto",
        sequential_image_generation_options={"max_images": 3},
        response_format="b64_json",
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["usage"]["generated_images"] == 3
    images = [base64.b64decode(item["b64_json"]) for item in body["data"]]
    assert [decode(image).size for image in images] == [(1280, 720)] * 3
    assert len({colour(image) for image in images}) == 3
    assert [item["size"] for item in body["data"]] == ["1280x720"] * 3


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"size": "512x512"}, 400, "InvalidParameter", "size"),
        ({"size": "8K"}, 400, "InvalidParameter", "size"),
        ({"image": "data:image/png;base64,aGVsbG8="}, 400, "InvalidParameter", "image"),
        ({"image": "/tmp/a.png"}, 400, "InvalidParameter", "image"),
        ({"response_format": "png"}, 400, "InvalidParameter", "response_format"),
        ({"n": 2}, 400, "InvalidParameter", "n"),
        ({"prompt": ""}, 400, "MissingParameter", "prompt"),
        ({"model": "dall-e-3"}, 404, "InvalidEndpointOrModel.NotFound", ""),
    ],
)
def test_seedream_refuses_a_wrong_request(
    fake_seedream: FakeSeedream, body: dict[str, Any], status: int, code: str, param: str
) -> None:
    answer = seedream(fake_seedream, **body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert "Request id: " in error["message"]

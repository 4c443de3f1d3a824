"""The OpenAI images API, through the real ``openai`` package (unmodified, from PyPI) against a
live server: generations, edits, model listing, errors, and the accounting behind them."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from sqlalchemy import func, select

from darkroom.engine.registry import Backends
from darkroom.store.tables import projects
from tests.backends import Failing, Slow
from tests.conftest import ON_S3, Account, LiveServer, ServerFactory
from tests.waiting import wait_until

PROMPT = "a lighthouse on a cliff at dusk"

Client = Callable[..., openai.OpenAI]


@pytest.fixture
def client(server: LiveServer) -> Client:
    def make(account: Account | None = None, **kwargs: Any) -> openai.OpenAI:
        key = account.key if account else "dk_not_a_key"
        return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, **kwargs)

    return make


def decode(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def png(size: tuple[int, int], colour: str | tuple[int, ...] = "red", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def wait_for_balance(server: LiveServer, account: Account, expected: int) -> None:
    """Until the balance is ``expected``: a cancellation that follows a hang-up lands a moment
    later (it is asynchronous)."""
    wait_until(
        lambda: server.balance(account) == expected,
        lambda: f"balance {server.balance(account)}, not {expected}",
        timeout=5,
    )


def project_count(server: LiveServer) -> int:
    with server.services.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(projects)).scalar_one())


def test_generate_b64_json_is_the_image_and_the_project_is_visible_both_ways(
    server: LiveServer, client: Client
) -> None:
    account = server.account(tier="free", credits=100)
    response = client(account).images.generate(prompt=PROMPT, response_format="b64_json")
    assert response.created > 1_700_000_000
    assert response.data is not None and len(response.data) == 1
    image = decode(response.data[0].b64_json)
    assert (image.format, image.size) == ("PNG", (1024, 1024))  # dall-e-2's default size
    assert response.data[0].url is None
    assert response.data[0].revised_prompt is None  # no style or tool changed the prompt
    extra = response.model_extra or {}
    project_id = extra["darkroom"]["project_id"]
    assert extra["darkroom"]["credits_charged"] == 5  # dall-e-2 is served by flux-schnell
    assert extra["darkroom"]["model"] == "flux-schnell"
    assert server.balance(account) == 95
    # one engine, two views: the same project through the Magic Hour API
    with server.client(account) as http:
        project = http.get(f"/v1/image-projects/{project_id}").json()
    assert project["status"] == "complete"
    assert project["credits_charged"] == 5
    assert (project["width"], project["height"]) == (1024, 1024)
    stored = server.stored_image(project_id, 1)
    assert stored == base64.b64decode(response.data[0].b64_json or "")


def test_generate_url_downloads_without_a_key_for_an_hour(
    server: LiveServer, client: Client
) -> None:
    account = server.account()
    response = client(account).images.generate(prompt=PROMPT, size="512x512")
    assert response.data is not None
    url = response.data[0].url
    assert url is not None
    if ON_S3:  # a presigned URL of the bucket
        assert int(httpx.URL(url).params["X-Amz-Expires"]) == 3600
    else:
        assert url.startswith(server.url + "/downloads/")
        expires = int(httpx.URL(url).params["expires"])
        assert 3590 <= expires - response.created <= 3610
    download = httpx.get(url)  # no Authorization header
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(download.content)).size == (512, 512)


def test_n_3_gives_three_different_images_charged_once_each(
    server: LiveServer, client: Client
) -> None:
    account = server.account(credits=1000)
    response = client(account).images.generate(prompt=PROMPT, n=3, response_format="b64_json")
    assert response.data is not None and len(response.data) == 3
    images = [item.b64_json for item in response.data]
    assert len(set(images)) == 3
    assert all(decode(b).size == (1024, 1024) for b in images)
    assert server.balance(account) == 1000 - 3 * 5


@pytest.mark.parametrize(
    ("model", "size", "expected", "credits"),
    [
        ("dall-e-2", "256x256", (256, 256), 5),
        ("dall-e-2", "512x512", (512, 512), 5),
        ("dall-e-2", "1024x1024", (1024, 1024), 5),
        ("dall-e-3", "1024x1024", (1024, 1024), 5),
        ("dall-e-3", "1792x1024", (1792, 1024), 10),  # a 2k image: twice the price
        ("dall-e-3", "1024x1792", (1024, 1792), 10),
        # GPT Image: its price row per resolution (1k 100, 2k 200)
        ("gpt-image-1", "1536x1024", (1536, 1024), 200),
        ("gpt-image-1", "1024x1536", (1024, 1536), 200),
        ("gpt-image-1", "auto", (1024, 1024), 100),
        ("gpt-image-2", "1536x864", (1536, 864), 200),  # any WxH the openai package documents
        ("flux-schnell", "1024x576", (1024, 576), 5),  # a catalog model, a size of its own
    ],
)
def test_every_documented_size_renders_at_exactly_that_size(
    server: LiveServer,
    client: Client,
    model: str,
    size: str,
    expected: tuple[int, int],
    credits: int,
) -> None:
    account = server.account(tier="business", credits=1000)
    response = client(account).images.generate(
        prompt=PROMPT, model=model, size=size, response_format="b64_json"
    )
    assert response.data is not None
    assert decode(response.data[0].b64_json).size == expected
    assert response.size == f"{expected[0]}x{expected[1]}"
    assert server.balance(account) == 1000 - credits


def test_quality_hd_picks_the_better_model_and_auto_size_the_largest_square(
    server: LiveServer, client: Client
) -> None:
    account = server.account(tier="business", credits=1000)
    openai_client = client(account)
    hd = openai_client.images.generate(prompt=PROMPT, model="dall-e-3", quality="hd")
    assert (hd.model_extra or {})["darkroom"]["model"] == "seedream-v4"
    best = openai_client.images.generate(
        prompt=PROMPT, model="flux-schnell", size="auto", quality="high", response_format="b64_json"
    )
    assert best.data is not None
    assert decode(best.data[0].b64_json).size == (2048, 2048)  # flux-schnell's largest
    assert server.balance(account) == 1000 - 40 - 10


def test_style_and_tool_rewrite_the_prompt_and_say_so(server: LiveServer, client: Client) -> None:
    account = server.account()
    response = client(account).images.generate(
        prompt=PROMPT, model="dall-e-3", style="natural", extra_body={"tool": "ai-anime-generator"}
    )
    assert response.data is not None
    revised = response.data[0].revised_prompt
    assert revised is not None
    assert revised.startswith("anime style illustration of " + PROMPT)
    assert "natural colors" in revised


def test_output_formats_are_encoded_and_served_with_their_type(
    server: LiveServer, client: Client
) -> None:
    account = server.account()
    openai_client = client(account)
    jpeg = openai_client.images.generate(
        prompt=PROMPT,
        size="512x512",
        output_format="jpeg",
        output_compression=40,
        response_format="b64_json",
    )
    assert jpeg.output_format == "jpeg"
    assert jpeg.data is not None
    assert decode(jpeg.data[0].b64_json).format == "JPEG"
    webp = openai_client.images.generate(prompt=PROMPT, size="512x512", output_format="webp")
    assert webp.data is not None and webp.data[0].url is not None
    assert ".webp?" in webp.data[0].url
    download = httpx.get(webp.data[0].url)
    assert download.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(download.content)).format == "WEBP"


def test_edit_uploads_the_image_and_keeps_it_outside_the_mask(
    server: LiveServer, client: Client
) -> None:
    account = server.account(credits=100)
    source = png((256, 256), "red")
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))  # opaque: keep...
    mask.paste((0, 0, 0, 0), (0, 0, 128, 128))  # ...except the top-left quarter
    mask_bytes = io.BytesIO()
    mask.save(mask_bytes, format="PNG")
    response = client(account).images.edit(
        image=("source.png", source, "image/png"),
        mask=("mask.png", mask_bytes.getvalue(), "image/png"),
        prompt="a blue bird",
        size="256x256",
        response_format="b64_json",
    )
    assert response.data is not None
    image = decode(response.data[0].b64_json).convert("RGB")
    assert image.size == (256, 256)
    assert image.getpixel((200, 100)) == (255, 0, 0)  # kept: the source shows unchanged
    assert image.getpixel((40, 40)) != (255, 0, 0)  # edited
    assert server.balance(account) == 95
    project_id = (response.model_extra or {})["darkroom"]["project_id"]
    # gone: the worker removes them once the project is complete (just after the answer)
    wait_until(
        lambda: not [k for k in server.stored(project_id) if k.startswith("sources/")],
        "the sources to be removed",
    )


def test_edit_with_several_images_and_a_jpeg_source(server: LiveServer, client: Client) -> None:
    account = server.account()
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), "green").save(buffer, format="JPEG")
    response = client(account).images.edit(
        image=[("a.jpg", buffer.getvalue(), "image/jpeg"), ("b.png", png((64, 64)), "image/png")],
        prompt="a meadow",
        model="qwen-image-2.1",  # takes up to 3 (dall-e-2, the default, takes one)
        n=2,
        size="512x512",
    )
    assert response.data is not None and len(response.data) == 2


def test_edit_on_a_model_that_cannot_edit_is_a_400_naming_it(
    server: LiveServer, client: Client
) -> None:
    account = server.account(credits=100)
    with pytest.raises(openai.BadRequestError) as caught:
        client(account).images.edit(
            image=("s.png", png((64, 64)), "image/png"), prompt="x", model="dall-e-3"
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "model"
    assert "'dall-e-3'" in error["message"] and "cannot edit" in error["message"]
    assert server.balance(account) == 100
    assert project_count(server) == 0


def test_edit_refuses_bad_uploads_before_charging(server: LiveServer, client: Client) -> None:
    account = server.account(credits=100)
    edit = client(account).images.edit
    cases: list[tuple[dict[str, Any], str]] = [
        ({"image": ("s.png", b"not an image", "image/png")}, "image"),
        (
            {
                "image": ("s.png", png((64, 64)), "image/png"),
                "mask": ("m.png", png((32, 32), mode="RGBA"), "image/png"),
            },
            "mask",
        ),
    ]
    for files, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            edit(prompt="x", **files)
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["param"] == param
    assert server.balance(account) == 100
    assert project_count(server) == 0


def test_generation_with_a_base64_image_is_an_edit(server: LiveServer) -> None:
    account = server.account()
    encoded = base64.b64encode(png((128, 128), "red")).decode()
    with server.client(account) as http:
        for image in (encoded, f"data:image/png;base64,{encoded}", [encoded]):
            response = http.post(
                "/v1/images/generations",
                json={"prompt": "x", "image": image, "size": "256x256", "n": 1},
            )
            assert response.status_code == 200, response.text
            project_id = response.json()["darkroom"]["project_id"]
            assert http.get(f"/v1/image-projects/{project_id}").json()["status"] == "complete"


def test_source_images_over_the_limit_are_refused(server_factory: ServerFactory) -> None:
    server = server_factory(source_max_bytes=4096)
    account = server.account(credits=100)
    noise = Image.effect_noise((256, 256), 64).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    big = buffer.getvalue()
    assert len(big) > 4096
    with server.client(account) as http:
        as_json = http.post(
            "/v1/images/generations",
            json={"prompt": "x", "image": base64.b64encode(big).decode()},
        )
        as_file = http.post(
            "/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.png", big, "image/png")}
        )
    for response in (as_json, as_file):
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "image"
        assert (
            "limit" in response.json()["error"]["message"]
            or "MB" in response.json()["error"]["message"]
        )
    assert server.balance(account) == 100


def test_image_urls_on_private_addresses_are_not_fetched(server: LiveServer) -> None:
    account = server.account(credits=100)
    with server.client(account) as http:
        for url in (
            f"{server.url}/healthz",
            f"http://localhost:{server.port}/healthz",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "file:///etc/passwd",
        ):
            response = http.post("/v1/images/generations", json={"prompt": "x", "image": url})
            assert response.status_code == 400, url
            error = response.json()["error"]
            assert error["param"] == "image"
            assert error["type"] == "invalid_request_error"
    assert server.balance(account) == 100
    assert project_count(server) == 0


def test_image_urls_are_fetched_when_the_operator_allows_private_addresses(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(fetch_allow_private=True)
    account = server.account()
    with server.client(account) as http:
        first = http.post("/v1/images/generations", json={"prompt": "a red square"}).json()
        source_url = first["data"][0]["url"]  # an image served by this server, by URL
        edited = http.post(
            "/v1/images/generations",
            json={"prompt": "make it blue", "image": source_url, "size": "512x512"},
        )
        missing = http.post(
            "/v1/images/generations",
            json={"prompt": "x", "image": f"{server.url}/downloads/nothing.png"},
        )
    assert edited.status_code == 200, edited.text
    assert missing.status_code == 400
    assert "403" in missing.json()["error"]["message"]


def test_models_list_shows_what_the_key_may_use(server: LiveServer, client: Client) -> None:
    free = client(server.account(tier="free"))
    business = client(server.account(tier="business"))
    free_ids = {model.id for model in free.models.list()}
    business_ids = {model.id for model in business.models.list()}
    assert {"dall-e-2", "dall-e-3", "flux-schnell", "z-image-turbo"} <= free_ids
    assert "gpt-image-1" not in free_ids and "gpt-image-2" not in free_ids
    assert {"gpt-image-1", "gpt-image-2", "nano-banana-pro"} <= business_ids
    dalle = free.models.retrieve("dall-e-2")
    assert (dalle.id, dalle.object, dalle.owned_by) == ("dall-e-2", "model", "darkroom")
    assert (dalle.model_extra or {})["alias_for"] == "flux-schnell"
    with pytest.raises(openai.NotFoundError):
        free.models.retrieve("gpt-image-1")


def test_wrong_key_is_401_in_openai_shape(server: LiveServer, client: Client) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(None).images.generate(prompt=PROMPT)
    assert caught.value.status_code == 401
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(None).models.list()


def test_no_credits_is_402_and_nothing_is_charged(server: LiveServer, client: Client) -> None:
    account = server.account(tier="free", credits=4)
    with pytest.raises(openai.APIStatusError) as caught:
        client(account).images.generate(prompt=PROMPT)
    assert caught.value.status_code == 402
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "insufficient_quota"
    assert "costs 5 credits" in caught.value.body["message"]
    assert server.balance(account) == 4
    assert project_count(server) == 0


@pytest.mark.parametrize(
    ("request_args", "param", "words"),
    [
        ({"size": "1000x1000"}, "size", "not supported by model 'dall-e-2'"),
        ({"size": "huge"}, "size", "not supported"),
        ({"model": "flux-schnell", "size": "4096x4096"}, "size", "at most 2048"),
        ({"model": "flux-schnell", "size": "1000x1000"}, "size", "multiples of 16"),
        ({"model": "flux-schnell", "size": "big"}, "size", "WIDTHxHEIGHT"),
        ({"model": "gpt-image-2", "size": "3840x1024"}, "size", "between 1:3 and 3:1"),
        ({"model": "gpt-image-2", "size": "4096x2304"}, "size", "at most 3840 pixels"),
        ({"model": "dall-e-3", "n": 2}, "n", "allowed: 1"),
        ({"model": "dall-e-2", "n": 11}, "n", "less than or equal to 10"),
        ({"model": "flux-schnell", "n": 5}, "n", "allowed: 1, 2, 3, 4"),
        ({"model": "dall-e-9"}, "model", "not served here"),
        ({"quality": "ultra"}, "quality", "quality must be one of"),
        ({"style": "moody"}, "style", "style must be one of"),
        ({"background": "transparent"}, "background", "transparent"),
        ({"prompt": "   "}, "prompt", "must not be empty"),
        ({"response_format": "gif"}, "response_format", "response_format"),
    ],
)
def test_invalid_requests_are_400_naming_the_parameter(
    server: LiveServer, client: Client, request_args: dict[str, Any], param: str, words: str
) -> None:
    account = server.account(tier="business", credits=100)
    arguments = {"prompt": PROMPT, **request_args}
    with pytest.raises(openai.BadRequestError) as caught:
        client(account).images.generate(**arguments)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "invalid_request_error"
    assert body["param"] == param
    assert words in body["message"]
    assert server.balance(account) == 100


def test_tier_gating_is_403(server: LiveServer, client: Client) -> None:
    free = client(server.account(tier="free", credits=1000))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        free.images.generate(prompt=PROMPT, model="gpt-image-1")
    assert isinstance(caught.value.body, dict)
    assert "free tier" in caught.value.body["message"]
    with pytest.raises(openai.PermissionDeniedError) as wide:
        free.images.generate(prompt=PROMPT, model="dall-e-3", size="1792x1024")
    assert isinstance(wide.value.body, dict)
    assert "2k" in wide.value.body["message"]


def test_seed_004_curl_requests_verbatim(server: LiveServer) -> None:
    account = server.account(tier="business", credits=1000)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {account.key}"}
    basic = """{
    "prompt": "A photorealistic image of a cat programming on a laptop",
    "n": 1,
    "size": "1024x1024"
}"""
    dalle3 = """{
    "model": "dall-e-3",
    "prompt": "An oil painting of a futuristic city skyline at sunset, with flying cars",
    "n": 1,
    "size": "1792x1024",
    "quality": "hd",
    "style": "vivid",
    "response_format": "b64_json"
}"""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        first = http.post("/api/images/generations", content=basic, headers=headers)
        second = http.post("/api/images/generations", content=dalle3, headers=headers)
    assert first.status_code == 200, first.text
    assert set(first.json()) >= {"created", "data"}
    [item] = first.json()["data"]
    assert httpx.get(item["url"]).status_code == 200
    assert second.status_code == 200, second.text
    [image] = second.json()["data"]
    assert decode(image["b64_json"]).size == (1792, 1024)
    assert image["revised_prompt"].startswith("An oil painting")
    assert second.json()["darkroom"]["model"] == "seedream-v4"  # quality hd


def test_async_client_runs_requests_concurrently(server: LiveServer) -> None:
    account = server.account(credits=1000)

    async def main() -> list[Any]:
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=account.key) as aio:
            jobs = [aio.images.generate(prompt=f"{PROMPT} {i}", size="256x256") for i in range(3)]
            jobs.append(
                aio.images.edit(
                    image=("s.png", png((64, 64)), "image/png"), prompt="x", size="256x256"
                )
            )
            models = await aio.models.list()
            assert any(m.id == "dall-e-2" for m in models.data)
            return list(await asyncio.gather(*jobs))

    results = asyncio.run(main())
    assert len(results) == 4
    assert all(r.data and r.data[0].url for r in results)
    assert server.balance(account) == 1000 - 4 * 5


def test_a_job_past_the_wait_limit_is_canceled_and_refunded(
    server_factory: ServerFactory,
) -> None:
    slow = Slow()
    server = server_factory(Backends([slow]), sync_timeout_seconds=0.5)
    account = server.account(credits=100)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=account.key)
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            client.images.generate(prompt=PROMPT)
    finally:
        slow.release.set()
    assert caught.value.status_code == 504
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert isinstance(caught.value.body, dict)
    assert "canceled" in caught.value.body["message"]
    assert project_count(server) == 1  # the client did not retry into another job
    assert server.balance(account) == 100
    with server.services.db.read() as conn:
        status = conn.execute(select(projects.c.status)).scalar_one()
    assert status == "canceled"


def test_a_caller_that_hangs_up_gets_its_credits_back(server_factory: ServerFactory) -> None:
    slow = Slow()
    server = server_factory(Backends([slow]), poll_seconds=0.05)
    account = server.account(credits=100)
    client = openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=account.key, timeout=0.5, max_retries=0
    )
    try:
        with pytest.raises(openai.APITimeoutError):
            client.images.generate(prompt=PROMPT)
        wait_for_balance(server, account, 100)
    finally:
        slow.release.set()
    assert server.balance(account) == 100
    with server.services.db.read() as conn:
        assert conn.execute(select(projects.c.status)).scalar_one() == "canceled"


def test_a_failed_job_is_a_server_error_with_a_refund(server_factory: ServerFactory) -> None:
    server = server_factory(Backends([Failing()]))
    account = server.account(credits=100)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=account.key, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(prompt=PROMPT)
    assert caught.value.status_code == 500
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "gpu_on_fire"
    assert caught.value.body["type"] == "server_error"
    assert "refunded" in caught.value.body["message"]
    assert server.balance(account) == 100


def test_idempotency_key_replays_the_same_images(server: LiveServer, client: Client) -> None:
    account = server.account(credits=100)
    openai_client = client(account)
    headers = {"Idempotency-Key": "retry-me-1"}
    first = openai_client.images.generate(prompt=PROMPT, extra_headers=headers)
    again = openai_client.images.generate(prompt=PROMPT, extra_headers=headers)
    first_id = (first.model_extra or {})["darkroom"]["project_id"]
    assert (again.model_extra or {})["darkroom"]["project_id"] == first_id
    assert server.balance(account) == 95
    with pytest.raises(openai.UnprocessableEntityError):
        openai_client.images.generate(prompt="something else", extra_headers=headers)


def test_each_dialect_keeps_its_error_shape(server: LiveServer) -> None:
    account = server.account()
    with server.client(account) as http:
        magic_hour = http.get("/v1/image-projects/img_doesnotexist")
        open_ai = http.post("/v1/images/generations", json={"n": 1})
        unknown = http.post("/v1/images/variations-of-nothing", json={})
        malformed = http.post(
            "/v1/images/generations", content=b"{not json", headers={"content-type": "x"}
        )
    assert magic_hour.json() == {"message": "Not Found"}
    assert open_ai.status_code == 400
    assert open_ai.json()["error"]["param"] == "prompt"
    assert set(open_ai.json()["error"]) == {"message", "type", "param", "code"}
    assert unknown.status_code == 404 and "error" in unknown.json()
    assert malformed.status_code == 400 and "error" in malformed.json()


def test_an_api_only_node_answers_when_another_process_renders(
    server_factory: ServerFactory,
) -> None:
    renderer = server_factory(poll_seconds=0.05)
    api_only = server_factory(workers=0, poll_seconds=0.05)  # same database, no workers
    account = api_only.account(credits=100)
    client = openai.OpenAI(base_url=f"{api_only.url}/v1", api_key=account.key)
    response = client.images.generate(prompt=PROMPT, size="256x256", response_format="b64_json")
    assert response.data is not None
    assert decode(response.data[0].b64_json).size == (256, 256)
    assert renderer.balance(account) == 95


def test_stream_sends_one_completed_event_per_image(server: LiveServer, client: Client) -> None:
    account = server.account(credits=100)
    stream = client(account).images.generate(prompt=PROMPT, n=2, size="256x256", stream=True)
    events = list(stream)
    assert [event.type for event in events] == ["image_generation.completed"] * 2
    assert all(decode(event.b64_json).size == (256, 256) for event in events)
    assert events[0].b64_json != events[1].b64_json
    assert server.balance(account) == 90
    edits = client(account).images.edit(
        image=("s.png", png((64, 64)), "image/png"), prompt="x", size="256x256", stream=True
    )
    assert [event.type for event in edits] == ["image_edit.completed"]


def test_stream_reports_a_failed_job_as_an_error_event(server_factory: ServerFactory) -> None:
    server = server_factory(Backends([Failing()]))
    account = server.account(credits=100)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=account.key, max_retries=0)
    with pytest.raises(openai.APIError) as caught:
        list(client.images.generate(prompt=PROMPT, stream=True))
    assert "GPU is on fire" in caught.value.message
    assert server.balance(account) == 100


def test_closing_a_stream_early_cancels_and_refunds(server_factory: ServerFactory) -> None:
    slow = Slow()
    server = server_factory(Backends([slow]), poll_seconds=0.05)
    account = server.account(credits=100)
    try:
        with (
            httpx.Client(base_url=server.url, timeout=10) as http,
            http.stream(
                "POST",
                "/v1/images/generations",
                json={"prompt": PROMPT, "stream": True},
                headers={"Authorization": f"Bearer {account.key}"},
            ) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert slow.entered.wait(5)
            assert server.balance(account) == 95
        wait_for_balance(server, account, 100)
    finally:
        slow.release.set()
    assert server.balance(account) == 100


def test_edit_takes_a_base64_image_as_a_form_field(server: LiveServer) -> None:
    account = server.account(credits=100)
    encoded = base64.b64encode(png((64, 64), "blue")).decode()
    with server.client(account) as http:
        ok = http.post(
            "/v1/images/edits", data={"prompt": "x", "image": encoded, "size": "256x256"}
        )
        missing = http.post("/v1/images/edits", data={"prompt": "x"})
        empty = http.post(
            "/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.png", b"", "image/png")}
        )
    assert ok.status_code == 200, ok.text
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "image"
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
    assert server.balance(account) == 95

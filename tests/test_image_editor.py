"""The image editor (``POST /v1/ai-image-editor``) and file uploads (``POST /v1/files/upload-urls``)
through the published ``magic_hour`` SDK, as a user calls them: local files uploaded, edited,
waited for and downloaded, on both storages (darkroom's signed PUT URLs on the embedded default,
presigned S3 PUTs on a bucket). Bad input (too many images, another account's upload, something
not an image, a file over the limit, an expired upload) is a 4xx with a message, charges nothing
and leaves nothing stored. OpenAI's ``images.edit`` with 16 images is the same kind of project."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from magic_hour import ApiError
from magic_hour import Client as MagicHour
from openai import BadRequestError, OpenAI
from PIL import Image

from darkroom.store import clock
from tests.conftest import ON_S3, Account, LiveServer, ServerFactory
from tests.waiting import wait_until


def picture(path: Path, size: tuple[int, int], colour: str = "tomato", fmt: str = "PNG") -> Path:
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def uploads_stored(server: LiveServer) -> list[str]:
    return server.services.files.store.list("uploads/")


def upload_url(server: LiveServer, account: Account, extension: str = "png") -> dict[str, str]:
    with server.client(account) as client:
        answer = client.post(
            "/v1/files/upload-urls", json={"items": [{"type": "image", "extension": extension}]}
        )
    assert answer.status_code == 200, answer.text
    item: dict[str, str] = answer.json()["items"][0]
    return item


def edit(
    server: LiveServer, account: Account, paths: list[str], **fields: object
) -> httpx.Response:
    body = {"assets": {"image_file_paths": paths}, "style": {"prompt": "make it winter"}, **fields}
    with server.client(account) as client:
        return client.post("/v1/ai-image-editor", json=body)


def test_the_published_sdk_uploads_edits_waits_and_downloads(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    first = picture(tmp_path / "wide.png", (300, 200))
    second = picture(tmp_path / "ref.jpg", (64, 64), "navy", "JPEG")
    client = MagicHour(token=account.key, base_url=server.url)
    out = tmp_path / "out"
    out.mkdir()
    result = client.v1.ai_image_editor.generate(
        assets={"image_file_paths": [str(first), str(second)]},
        style={"prompt": "add snow"},
        model="flux-2-klein",
        resolution="640px",
        download_directory=str(out),
    )
    assert result.status == "complete"
    assert result.credits_charged == 5  # flux-2-klein: from 5 credits an image
    assert server.balance(account) == 10_000 - 5
    (downloaded,) = result.downloaded_paths or []
    with Image.open(downloaded) as image:  # "auto": the first input's shape, at 640px
        assert image.size == (640, 432)
    stored = uploads_stored(server)
    assert len(stored) == 2  # both files went to the storage (a bucket: by presigned PUT)
    # files.upload_file hands back an api-assets/ path, which the SDK does not upload again.
    path = client.v1.files.upload_file(str(first))
    assert path.startswith("api-assets/")
    created = client.v1.ai_image_editor.create(
        assets={"image_file_path": path},  # the deprecated single path
        style={"prompt": "at night"},
        aspect_ratio="16:9",
        resolution="1k",
    )
    project = server.wait(account, created.id)
    assert (project["status"], project["width"], project["height"]) == ("complete", 1024, 576)
    assert project["model"] == server.services.catalog.default_edit_model
    # A retry with the same Idempotency-Key is the same project, charged once.
    body = {"assets": {"image_file_paths": [path]}, "style": {"prompt": "once"}}
    with server.client(account) as api:
        first, again = (
            api.post("/v1/ai-image-editor", json=body, headers={"Idempotency-Key": "edit-1"}).json()
            for _ in range(2)
        )
    assert first == again and server.balance(account) == 10_000 - 5 - 5 - 10  # auto: 2k
    assert server.wait(account, first["id"])["status"] == "complete"
    if not ON_S3:
        item = upload_url(server, account)
        assert item["upload_url"].startswith(server.url + "/v1/files/uploads/")


def test_bad_input_is_refused_and_nothing_is_charged_or_stored(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    other = server.account(name="other")
    client = MagicHour(token=account.key, base_url=server.url)
    image = picture(tmp_path / "a.png", (96, 96))
    mine = [client.v1.files.upload_file(str(image)) for _ in range(3)]
    theirs = MagicHour(token=other.key, base_url=server.url).v1.files.upload_file(str(image))
    free = server.account(tier="free", credits=1_000, name="free")
    their_own = MagicHour(token=free.key, base_url=server.url).v1.files.upload_file(str(image))
    kept = sorted(uploads_stored(server))
    refusals = [
        # More inputs than the model takes (Krea 2: the image and one reference).
        (edit(server, account, mine, model="krea-2"), "takes at most 2 input images"),
        (edit(server, account, [mine[0], theirs]), "is not an upload of this account"),
        (edit(server, account, ["api-assets/up_nosuchupload0000.png"]), "not an upload of"),
        (edit(server, account, ["photo.png"]), "neither a URL nor a file_path"),
        (edit(server, account, [f"{mine[0]}"] * 11), "at most 10"),
        (edit(server, account, [mine[0]], model="z-image-turbo"), "cannot edit images"),
    ]
    for answer, message in refusals:
        assert answer.status_code == 400, answer.text
        assert message in answer.json()["message"]
    tiered = edit(server, free, [their_own], model="nano-banana")
    assert tiered.status_code == 403 and "tier" in tiered.json()["message"]
    with pytest.raises(ApiError) as raised:  # the SDK's own create, refused alike
        client.v1.ai_image_editor.create(
            assets={"image_file_paths": mine}, style={"prompt": "x"}, model="krea-2"
        )
    assert raised.value.status_code == 400
    # Something that is not an image, and a file over DARKROOM_UPLOAD_MAX_BYTES.
    limit = server.settings.upload_max_bytes
    for data, refused_on_use in ((b"not an image at all", "cannot be decoded"), (b"", "")):
        item = upload_url(server, account)
        payload = data or b"\x89PNG" + b"\0" * limit  # an image header, past the limit
        put = httpx.put(item["upload_url"], content=payload, timeout=30)
        if item["upload_url"].startswith(server.url):  # darkroom's own URL refuses the PUT
            assert put.status_code in (400, 413), put.text
        else:  # the bucket takes any PUT: darkroom refuses the file on use, and deletes it
            assert put.status_code == 200
            answer = edit(server, account, [item["file_path"]])
            assert answer.status_code == 400
            assert (
                refused_on_use in answer.json()["message"]
                or "larger than" in (answer.json()["message"])
            )
    assert server.balance(account) == 10_000 and server.balance(free) == 1_000
    assert sorted(uploads_stored(server)) == kept  # nothing new stayed
    with server.client(account) as api:
        assert api.get("/v1/image-projects").json()["data"] == []


def test_an_expired_upload_is_refused_and_deleted(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(upload_ttl_seconds=1)
    account = server.account()
    client = MagicHour(token=account.key, base_url=server.url)
    path = client.v1.files.upload_file(str(picture(tmp_path / "a.png", (64, 64))))
    late = upload_url(server, account)
    # Both have expired once the database's clock is past the later one (shown to the ms).
    expires = datetime.fromisoformat(late["expires_at"]) + timedelta(milliseconds=1)
    wait_until(lambda: server.services.db.query(clock.read) > expires, "the uploads to expire")
    put = httpx.put(late["upload_url"], content=(tmp_path / "a.png").read_bytes(), timeout=10)
    assert put.status_code == 403  # darkroom's signature, or the bucket's, has expired
    answer = edit(server, account, [path])
    assert answer.status_code == 400 and "has expired" in answer.json()["message"]
    swept = [0]  # a sweep takes them once a grace for other nodes' clocks (here: 1 s) has passed

    def both_swept() -> bool:
        swept[0] += server.services.uploads.sweep()
        return swept[0] >= 2

    wait_until(both_swept, "the expired uploads to be swept", interval=0.05)
    assert swept[0] == 2 and uploads_stored(server) == []  # both rows, and the stored file
    assert server.balance(account) == 10_000


def test_openai_edits_take_16_images_as_the_editor_takes_its_own(
    server: LiveServer, account: Account
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(buffer, format="PNG")
    png = buffer.getvalue()
    client = OpenAI(api_key=account.key, base_url=server.url + "/v1", max_retries=0)
    images = [(f"in{i}.png", png, "image/png") for i in range(16)]
    result = client.images.edit(image=images, prompt="a mosaic", model="gpt-image-1", size="auto")
    assert result.data and result.data[0].url
    project_id = result.model_extra["darkroom"]["project_id"]  # type: ignore[index]
    with server.client(account) as api:
        project = api.get(f"/v1/image-projects/{project_id}").json()
    assert project["status"] == "complete" and project["model"] == "gpt-image-2"
    with pytest.raises(BadRequestError) as raised:  # dall-e-2's model takes one image
        client.images.edit(image=images[:2], prompt="two", model="dall-e-2")
    assert "takes at most 1 input image" in raised.value.message

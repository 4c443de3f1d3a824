"""Fakes of three image-generation vendors' HTTP APIs, for tests: OpenAI's Images API, Google's
Gemini API (generateContent with an image model) and BytePlus ModelArk's Seedream 4.0 image
generation. Each is a small Starlette app served by uvicorn in a background thread on a free
loopback port, written from the vendors' public documentation: the same paths, authentication,
request fields, answer shapes and error shapes, strict about what a request may hold (so that a
client speaking the API wrongly gets the vendor's 400), and able to fail on cue.

Every fake has:

- ``url``: the base URL a client is given (``http://127.0.0.1:PORT/v1`` for OpenAI,
  ``.../v1beta`` for Gemini, ``.../api/v3`` for ModelArk), ``origin`` the server's root;
- ``api_key``: the one key it accepts; any other, or none, gets the vendor's authentication error;
- ``requests``: every API request received (:class:`Received`), in order, with ``answered`` the
  status given; ``downloads``: the names of the ``/files/...`` fetched;
- ``fail(*cues)``: failures queued for the next requests, one taken by each API request (with a
  right key or not): ``"500"``; ``("429", seconds)``; ``"401"`` (as if the key were wrong);
  ``"hang"`` (no answer until ``stop()``); ``("delay", seconds)`` then a normal answer;
  ``"not-an-image"`` (a normal answer whose image bytes are ``b"hello"``); ``"blocked"`` (the
  vendor's refusal of a prompt); FakeGemini also ``("finish", reason)``;
- ``latency``: seconds added to every normal answer (0 by default);
- ``expire_urls()``: image URLs handed out so far answer 403 from then on;
- ``stop()`` (also a context manager).

Images are real, of the size the request implies, one colour each: :func:`prompt_colour` of the
prompt and the image's index, so that different prompts (and the images of one answer) differ.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import io
import json
import math
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.waiting import wait_until

NOT_AN_IMAGE = b"hello"
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
)


def prompt_colour(prompt: str, index: int = 0) -> tuple[int, int, int]:
    """The RGB colour of image ``index`` (0 for the first) of an answer to ``prompt``."""
    digest = hashlib.sha256(f"{index}\n{prompt}".encode()).digest()
    return digest[0], digest[1], digest[2]


@functools.lru_cache(maxsize=32)
def picture(width: int, height: int, colour: tuple[int, int, int], fmt: str = "png") -> bytes:
    """An image of one colour, encoded as ``fmt`` (png, jpeg or webp)."""
    buffer = io.BytesIO()
    options = {"compress_level": 1} if fmt == "png" else {}
    Image.new("RGB", (width, height), colour).save(buffer, format=fmt.upper(), **options)
    return buffer.getvalue()


@dataclass(frozen=True)
class ImageInfo:
    format: str  # PIL's name: PNG, JPEG, WEBP...
    width: int
    height: int
    mode: str

    @property
    def has_alpha(self) -> bool:
        return self.mode in ("RGBA", "LA", "PA") or self.mode.endswith("A")


def inspect_image(data: bytes) -> ImageInfo | None:
    """What ``data`` is as an image, or None when it is not one."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            return ImageInfo(image.format or "", image.width, image.height, image.mode)
    except Exception:
        return None


@dataclass
class Upload:
    """A file of a multipart request."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class Received:
    """One API request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: bytes
    json: Any = None  # the parsed body, when it was JSON
    fields: dict[str, list[str]] = field(default_factory=dict)  # multipart text fields
    files: dict[str, list[Upload]] = field(default_factory=dict)  # multipart files
    answered: int = 0  # the status code the fake gave


@dataclass
class Call:
    """What an endpoint handler works from."""

    request: Request
    received: Received
    corrupt: bool = False  # answer with bytes that are not an image


class Refusal(Exception):
    """An error answer, in the vendor's shape."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status, self.body, self.headers = status, body, headers or {}

    def response(self) -> Response:
        return JSONResponse(self.body, self.status, self.headers)


Cue = str | tuple[str, Any]


def listing(values: Iterable[str]) -> str:
    """'a', 'b', and 'c' (as OpenAI's messages list values)."""
    quoted = [f"'{value}'" for value in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def parse_size(size: Any) -> tuple[int, int] | None:
    """(width, height) of a "WxH" string, or None."""
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", size) if isinstance(size, str) else None
    return (int(match[1]), int(match[2])) if match else None


def nearest(width: int, height: int, sizes: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """The size among ``sizes`` whose aspect ratio is closest to width:height."""
    return min(sizes, key=lambda size: abs(math.log((size[0] / size[1]) / (width / height))))


def text_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class FakeVendor:
    """Serving, recording, authentication and scripted failures; a subclass gives the vendor's
    endpoints, its way of carrying the key and its error answers."""

    prefix: ClassVar[str] = ""  # the path of the base URL
    endpoints: ClassVar[dict[str, str]] = {}  # path under prefix -> handler method name
    plain_cues: ClassVar[frozenset[str]] = frozenset(
        {"500", "401", "hang", "not-an-image", "blocked"}
    )
    argument_cues: ClassVar[frozenset[str]] = frozenset({"429", "delay"})

    def __init__(self, api_key: str = "test-key", *, latency: float = 0.0) -> None:
        self.api_key = api_key
        self.latency = latency
        self.requests: list[Received] = []
        self.downloads: list[str] = []
        self._cues: deque[Cue] = deque()
        self._files: dict[str, bytes] = {}
        self._expired: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        routes = [
            Route(self.prefix + path, self._endpoint(getattr(self, name)), methods=["POST"])
            for path, name in self.endpoints.items()
        ]
        routes.append(Route("/files/{name}", self._download, methods=["GET"]))
        app = Starlette(routes=routes, lifespan=self._lifespan)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.origin = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.url = self.origin + self.prefix
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        try:
            wait_until(
                lambda: self._server.started or not self._thread.is_alive(),
                f"{type(self).__name__} to start",
                interval=0.01,
            )
        except AssertionError:
            self._sock.close()
            raise
        if not self._server.started:
            self._sock.close()
            raise RuntimeError(f"{type(self).__name__} did not start")

    # -- the test's side --------------------------------------------------------------------

    def fail(self, *cues: Cue) -> None:
        """Queue failures, one for each of the next API requests."""
        for cue in cues:
            known = (
                cue in self.plain_cues
                if isinstance(cue, str)
                else len(cue) == 2 and cue[0] in self.argument_cues
            )
            if not known:
                raise ValueError(f"{type(self).__name__} has no cue {cue!r}")
        self._cues.extend(cues)

    def expire_urls(self) -> None:
        """The image URLs handed out so far answer 403 from now on."""
        self._expired.update(self._files)
        self._files.clear()

    def stop(self) -> None:
        if self._thread.is_alive():
            if self._loop is not None and self._stopping is not None:
                self._loop.call_soon_threadsafe(self._stopping.set)  # releases hangs and delays
            self._server.should_exit = True
            self._thread.join(timeout=30)
        self._sock.close()

    def reset(self) -> None:
        """Back to a fresh fake (for one shared by several tests): no requests recorded, no
        cues queued, no latency, no images to download."""
        self.requests.clear()
        self.downloads.clear()
        self._cues.clear()
        self._files.clear()
        self._expired.clear()
        self.latency = 0.0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a vendor says -----------------------------------------------------------------

    def key_of(self, request: Request) -> str | None:
        """The API key the request carries (Authorization: Bearer by default)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def bad_key(self, given: str | None) -> Refusal:
        """The answer to a request whose key is missing (None) or wrong."""
        raise NotImplementedError

    def server_error(self) -> Refusal:
        raise NotImplementedError

    def rate_limited(self, seconds: float) -> Refusal:
        raise NotImplementedError

    def blocked(self, call: Call) -> Response:
        """The vendor's refusal of a prompt by its safety system."""
        raise NotImplementedError

    async def cue(self, name: str, argument: Any, call: Call) -> Response:
        """A vendor's own cue (one of argument_cues beyond 429 and delay)."""
        raise NotImplementedError

    # -- helpers for the endpoints ------------------------------------------------------------

    def image(self, call: Call, prompt: str, index: int, size: tuple[int, int], fmt: str) -> bytes:
        """The bytes of image ``index`` of an answer (not an image on the "not-an-image" cue)."""
        if call.corrupt:
            return NOT_AN_IMAGE
        return picture(size[0], size[1], prompt_colour(prompt, index), fmt)

    def publish(self, data: bytes, fmt: str) -> str:
        """A URL of this fake from which ``data`` can be fetched (until expire_urls)."""
        name = f"{secrets.token_hex(16)}.{fmt}"
        self._files[name] = data
        return f"{self.origin}/files/{name}"

    # -- serving ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        yield

    async def _pause(self, seconds: float | None) -> None:
        """Wait ``seconds`` (None: forever), or until the fake stops."""
        if seconds is not None and seconds <= 0:
            return
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _endpoint(
        self, handler: Callable[[Call], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            call = Call(request, await self._record(request))
            try:
                response = await self._answer(call, handler)
            except Refusal as refusal:
                response = refusal.response()
            call.received.answered = response.status_code
            return response

        return endpoint

    async def _answer(self, call: Call, handler: Callable[[Call], Awaitable[Response]]) -> Response:
        cue = self._cues.popleft() if self._cues else None
        name: str | None = cue if cue is None or isinstance(cue, str) else cue[0]
        argument: Any = None if cue is None or isinstance(cue, str) else cue[1]
        given = self.key_of(call.request)
        if name == "500":
            raise self.server_error()
        if name == "429":
            raise self.rate_limited(float(argument))
        if name == "401":
            raise self.bad_key(given or "wrong-key")
        if name == "hang":
            await self._pause(None)
            raise self.server_error()
        if name == "delay":
            await self._pause(float(argument))
        if given != self.api_key:
            raise self.bad_key(given)
        if name == "blocked":
            return self.blocked(call)
        call.corrupt = name == "not-an-image"
        if name not in (None, "delay", "not-an-image"):
            return await self.cue(name, argument, call)
        response = await handler(call)
        await self._pause(self.latency)
        return response

    async def _record(self, request: Request) -> Received:
        body = await request.body()
        received = Received(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body,
        )
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            with contextlib.suppress(Exception):  # a malformed form: nothing recorded of it
                form = await request.form()
                for name, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        upload = Upload(value.filename, value.content_type, await value.read())
                        received.files.setdefault(name, []).append(upload)
                    else:
                        received.fields.setdefault(name, []).append(value)
        elif body:
            with contextlib.suppress(ValueError):
                received.json = json.loads(body)
        self.requests.append(received)
        return received

    async def _download(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.downloads.append(name)
        if name in self._expired:
            return Response(EXPIRED, 403, media_type="application/xml")
        if name not in self._files:
            return Response(b"", 404)
        suffix = name.rpartition(".")[2]
        return Response(self._files[name], media_type=MEDIA_TYPES.get(suffix))


# == OpenAI ==================================================================================


@dataclass
class _Options:
    """The validated options of an OpenAI images request."""

    model: str
    family: str  # dall-e-2, dall-e-3 or gpt (the GPT image models)
    prompt: str
    n: int
    size: str  # as asked ("auto" possible)
    quality: str
    output_format: str
    background: str
    response_format: str


class FakeOpenAI(FakeVendor):
    """OpenAI's Images API: ``POST /v1/images/generations`` (JSON) and ``POST /v1/images/edits``
    (multipart), ``Authorization: Bearer KEY``; errors ``{"error": {"message", "type", "param",
    "code"}}``. The GPT image models (``gpt-image-*``) always answer ``b64_json`` with ``usage``;
    dall-e-2/3 answer URLs (served by the fake under ``/files/``) unless ``response_format`` is
    ``b64_json``."""

    prefix = "/v1"
    endpoints = {"/images/generations": "_generations", "/images/edits": "_edits"}
    # Models besides OpenAI's that this server takes as GPT Image takes its (an OpenAI-compatible
    # server of open models, as SGLang Diffusion and vLLM-Omni are: any WxH, base64 answers).
    served: tuple[str, ...] = ()

    @classmethod
    def serving(cls, *models: str, api_key: str = "test-key") -> FakeOpenAI:
        """An OpenAI-compatible server of these (open) models, not of OpenAI's."""
        fake = cls(api_key)
        fake.served = models
        return fake

    GPT_IMAGE_1_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
    SIZES: ClassVar[dict[str, tuple[str, ...]]] = {
        "dall-e-2": ("256x256", "512x512", "1024x1024"),
        "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
        "gpt-image-1": GPT_IMAGE_1_SIZES,
        "gpt-image-1-mini": GPT_IMAGE_1_SIZES,
        "gpt-image-1.5": GPT_IMAGE_1_SIZES,
    }  # other gpt-image models: any WxH, or auto
    QUALITIES: ClassVar[dict[str, tuple[str, ...]]] = {
        "dall-e-2": ("standard", "auto"),
        "dall-e-3": ("standard", "hd", "auto"),
        "gpt": ("low", "medium", "high", "auto"),
    }
    MAX_N: ClassVar[dict[str, int]] = {"dall-e-2": 10, "dall-e-3": 1, "gpt": 10}
    MAX_PROMPT: ClassVar[dict[str, int]] = {"dall-e-2": 1000, "dall-e-3": 4000, "gpt": 32000}
    COMMON = frozenset({"model", "prompt", "n", "size", "user"})
    GPT_ONLY = frozenset(
        {
            "quality",
            "output_format",
            "output_compression",
            "background",
            "moderation",
            "partial_images",
            "stream",
            "safety_identifier",
        }
    )
    PARAMS: ClassVar[dict[tuple[str, str], frozenset[str]]] = {
        ("generations", "dall-e-2"): COMMON | {"response_format", "quality"},
        ("generations", "dall-e-3"): COMMON | {"response_format", "quality", "style"},
        ("generations", "gpt"): COMMON | GPT_ONLY,
        ("edits", "dall-e-2"): COMMON | {"response_format", "image", "mask"},
        ("edits", "gpt"): COMMON | GPT_ONLY | {"image", "mask", "input_fidelity"},
    }
    # Output tokens of one gpt-image-1 image, from OpenAI's image generation pricing table.
    OUTPUT_TOKENS: ClassVar[dict[str, dict[str, int]]] = {
        "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
        "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
        "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
    }

    # -- errors -------------------------------------------------------------------------------

    @staticmethod
    def error(
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Refusal:
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return Refusal(status, body, headers)

    def bad_key(self, given: str | None) -> Refusal:
        if not given:
            return self.error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), "
                "or as the password field (with blank username) if you're accessing the API from "
                "your browser and are prompted for a username and password. You can obtain an "
                "API key from https://platform.openai.com/account/api-keys.",
            )
        masked = given[:3] + "*" * max(0, len(given) - 7) + given[-4:]
        return self.error(
            401,
            f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    def server_error(self) -> Refusal:
        return self.error(
            500,
            "The server had an error while processing your request. Sorry about that!",
            kind="server_error",
        )

    def rate_limited(self, seconds: float) -> Refusal:
        return self.error(
            429,
            "Rate limit reached for images per minute (IPM): Limit 5, Used 5, Requested 1. "
            f"Please try again in {seconds:g}s. "
            "Visit https://platform.openai.com/account/rate-limits to learn more.",
            kind="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": f"{math.ceil(seconds)}"},
        )

    def blocked(self, call: Call) -> Response:
        return self.error(
            400,
            "Your request was rejected as a result of our safety system. Your request may "
            "contain content that is not allowed by our safety system.",
            kind="image_generation_user_error",
            code="moderation_blocked",
        ).response()

    def invalid(self, message: str, param: str | None = None, code: str | None = None) -> Refusal:
        return self.error(400, message, param=param, code=code)

    # -- endpoints ----------------------------------------------------------------------------

    async def _generations(self, call: Call) -> Response:
        params = call.received.json
        if not isinstance(params, dict):
            raise self.invalid(
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                "but what was sent was not valid JSON.)"
            )
        options = self._options("generations", params)
        size = parse_size(options.size) or (1024, 1024)  # auto: square
        return self._images(call, options, size, inputs=[])

    async def _edits(self, call: Call) -> Response:
        received = call.received
        content_type = received.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise self.invalid(
                f"Invalid Content-Type header ({content_type}), expected multipart/form-data."
            )
        for name in ("image", "image[]", "mask"):
            if name in received.fields:
                raise self.invalid(
                    f"Invalid type for '{name}': expected one of an array of files or file, "
                    "but got a string instead.",
                    name,
                    "invalid_type",
                )
        params: dict[str, Any] = {name: values[-1] for name, values in received.fields.items()}
        for name in ("n", "output_compression", "partial_images"):
            if name in params:
                try:
                    params[name] = int(params[name])
                except ValueError:
                    raise self.invalid(
                        f"Invalid type for '{name}': expected an integer, but got a string "
                        "instead.",
                        name,
                        "invalid_type",
                    ) from None
        files = received.files
        bracketed = "image[]" in files
        images = files.get("image", []) + files.get("image[]", [])
        if images:
            params["image"] = images
        if "mask" in files:
            params["mask"] = files["mask"][0]
        options = self._options("edits", params)
        inputs = self._input_images(options, images, bracketed)
        if "mask" in files:
            self._check_mask(files["mask"][0], inputs[0])
        size = parse_size(options.size)
        if size is None:  # auto: the GPT image size closest to the first image's shape
            size = nearest(
                inputs[0].width, inputs[0].height, [(1024, 1024), (1536, 1024), (1024, 1536)]
            )
        return self._images(call, options, size, inputs)

    # -- validation ---------------------------------------------------------------------------

    def _options(self, endpoint: str, params: dict[str, Any]) -> _Options:
        params = {name: value for name, value in params.items() if value is not None}
        model = params.get("model")
        if model is None:  # OpenAI's default, unless a GPT image parameter is used
            gpt_only = (self.GPT_ONLY - {"quality"}) & params.keys()
            model = "gpt-image-1" if gpt_only else "dall-e-2"
        family = self._family(model, endpoint)
        allowed = self.PARAMS[endpoint, family]
        for name in params:
            if name not in allowed:
                raise self.invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
        for name in ("image", "prompt") if endpoint == "edits" else ("prompt",):
            if name not in params:
                raise self.invalid(
                    f"Missing required parameter: '{name}'.", name, "missing_required_parameter"
                )
        prompt = params["prompt"]
        if not isinstance(prompt, str):
            raise self.invalid(
                "Invalid type for 'prompt': expected a string, but got "
                f"{type(prompt).__name__} instead.",
                "prompt",
                "invalid_type",
            )
        if len(prompt) > self.MAX_PROMPT[family]:
            raise self.invalid(
                "Invalid 'prompt': string too long. Expected a string with maximum length "
                f"{self.MAX_PROMPT[family]}, but got a string with length {len(prompt)} instead.",
                "prompt",
                "string_above_max_length",
            )
        n = params.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool):
            raise self.invalid(
                f"Invalid type for 'n': expected an integer, but got {type(n).__name__} instead.",
                "n",
                "invalid_type",
            )
        if n < 1:
            raise self.invalid(
                "Invalid 'n': integer below minimum value. Expected a value >= 1, but got "
                f"{n} instead.",
                "n",
                "integer_below_min_value",
            )
        if n > self.MAX_N[family]:
            raise self.invalid(
                "Invalid 'n': integer above maximum value. Expected a value <= "
                f"{self.MAX_N[family]}, but got {n} instead.",
                "n",
                "integer_above_max_value",
            )
        default_size = "auto" if family == "gpt" else "1024x1024"
        size = params.get("size", default_size)
        sizes = self.SIZES.get(model)
        if (sizes is not None and size not in sizes) or (
            sizes is None and size != "auto" and parse_size(size) is None
        ):
            supported = listing(sizes) if sizes else "'auto' or 'WIDTHxHEIGHT'"
            raise self.invalid(
                f"Invalid value: '{size}'. Supported values are: {supported}.",
                "size",
                "invalid_value",
            )
        quality = self._choice(params, "quality", self.QUALITIES[family], "auto")
        output_format = self._choice(params, "output_format", ("png", "jpeg", "webp"), "png")
        background = self._choice(params, "background", ("transparent", "opaque", "auto"), "auto")
        self._choice(params, "moderation", ("low", "auto"), "auto")
        self._choice(params, "input_fidelity", ("high", "low"), "low")
        self._choice(params, "style", ("vivid", "natural"), "vivid")
        if background == "transparent" and output_format == "jpeg":
            raise self.invalid(
                "Transparent background is not supported for the 'jpeg' output format; use "
                "'png' or 'webp'.",
                "background",
                "invalid_value",
            )
        if params.get("stream") in (True, "true") or params.get("partial_images"):
            raise self.invalid("The fake does not stream images.", "stream", "unsupported_value")
        default_format = "b64_json" if family == "gpt" else "url"
        response_format = self._choice(
            params, "response_format", ("url", "b64_json"), default_format
        )
        return _Options(
            model, family, prompt, n, size, quality, output_format, background, response_format
        )

    def _family(self, model: Any, endpoint: str) -> str:
        models = (
            ("dall-e-2", "gpt-image-*")
            if endpoint == "edits"
            else ("dall-e-2", "dall-e-3", "gpt-image-*")
        )
        if isinstance(model, str) and (
            model.startswith(("gpt-image-", "chatgpt-image")) or model in self.served
        ):
            return "gpt"
        if model in models:
            return str(model)
        raise self.invalid(
            f"Invalid value: '{model}'. Supported values are: {listing(models)}.",
            "model",
            "invalid_value",
        )

    def _choice(
        self, params: dict[str, Any], name: str, allowed: tuple[str, ...], default: str
    ) -> str:
        value = params.get(name, default)
        if value not in allowed:
            raise self.invalid(
                f"Invalid value: '{value}'. Supported values are: {listing(allowed)}.",
                name,
                "invalid_value",
            )
        return str(value)

    def _input_images(
        self, options: _Options, images: list[Upload], bracketed: bool
    ) -> list[ImageInfo]:
        dall_e = options.family == "dall-e-2"
        if dall_e and len(images) > 1:
            raise self.invalid("dall-e-2 takes exactly one image.", "image", "invalid_value")
        if len(images) > 16:
            raise self.invalid(
                "Invalid 'image': array too long. Expected an array with maximum length 16, but "
                f"got an array with length {len(images)} instead.",
                "image",
                "array_above_max_length",
            )
        mimetypes = ("image/png",) if dall_e else ("image/jpeg", "image/png", "image/webp")
        limit = (4 if dall_e else 50) * 1024 * 1024
        inputs = []
        for index, upload in enumerate(images):
            param = f"image[{index}]" if bracketed or len(images) > 1 else "image"
            if upload.content_type not in mimetypes:
                raise self.invalid(
                    f"Invalid file '{param}': unsupported mimetype ('{upload.content_type}'). "
                    f"Supported file formats are {listing(mimetypes)}.",
                    param,
                    "unsupported_file_mimetype",
                )
            info = inspect_image(upload.data)
            if info is None or MEDIA_TYPES.get(info.format.lower()) not in mimetypes:
                raise self.invalid(
                    f"Invalid image file or mode for image {index + 1}, please check your image "
                    "file.",
                    param,
                    "invalid_image_file",
                )
            if len(upload.data) >= limit:
                raise self.invalid(
                    f"Invalid file '{param}': the file is larger than {limit // 2**20} MB.",
                    param,
                    "file_too_large",
                )
            if dall_e and info.width != info.height:
                raise self.invalid("Invalid 'image': dall-e-2 edits a square image.", param)
            inputs.append(info)
        return inputs

    def _check_mask(self, mask: Upload, first: ImageInfo) -> None:
        info = inspect_image(mask.data)
        if info is None or info.format != "PNG" or not info.has_alpha:
            raise self.invalid(
                "Invalid 'mask': the mask must be a PNG image with an alpha channel.",
                "mask",
                "invalid_image_file",
            )
        if (info.width, info.height) != (first.width, first.height):
            raise self.invalid(
                "Invalid 'mask': the mask must have the same dimensions as the image "
                f"({first.width}x{first.height}), got {info.width}x{info.height}.",
                "mask",
                "invalid_value",
            )

    # -- the answer ---------------------------------------------------------------------------

    def _images(
        self, call: Call, options: _Options, size: tuple[int, int], inputs: list[ImageInfo]
    ) -> Response:
        fmt = options.output_format if options.family == "gpt" else "png"
        data: list[dict[str, str]] = []
        for index in range(options.n):
            image = self.image(call, options.prompt, index, size, fmt)
            if options.response_format == "url":
                data.append({"url": self.publish(image, fmt)})
            else:
                data.append({"b64_json": base64.b64encode(image).decode()})
            if options.family == "dall-e-3":
                data[-1]["revised_prompt"] = options.prompt
        body: dict[str, Any] = {"created": int(time.time()), "data": data}
        if options.family == "gpt":
            quality = "high" if options.quality == "auto" else options.quality
            body |= {
                "background": "opaque" if options.background == "auto" else options.background,
                "output_format": fmt,
                "quality": quality,
                "size": f"{size[0]}x{size[1]}",
                "usage": self._usage(options.prompt, quality, size, options.n, inputs),
            }
        return JSONResponse(body)

    def _usage(
        self, prompt: str, quality: str, size: tuple[int, int], n: int, inputs: list[ImageInfo]
    ) -> dict[str, Any]:
        per_square = self.OUTPUT_TOKENS[quality]["1024x1024"]
        per_image = self.OUTPUT_TOKENS[quality].get(
            f"{size[0]}x{size[1]}", round(per_square * size[0] * size[1] / 1024**2)
        )
        text = text_tokens(prompt)
        # Not OpenAI's formula for input images: tiles of 512 px, as for vision input.
        image = sum(85 + 170 * math.ceil(i.width / 512) * math.ceil(i.height / 512) for i in inputs)
        return {
            "input_tokens": text + image,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image},
            "output_tokens": per_image * n,
            "total_tokens": text + image + per_image * n,
        }


# == Gemini ==================================================================================


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


def _field(obj: dict[str, Any], name: str) -> Any:
    """A field given in lowerCamelCase or snake_case (protobuf JSON takes both)."""
    return obj[name] if name in obj else obj.get(_snake(name))


class FakeGemini(FakeVendor):
    """The Gemini API's ``POST /v1beta/models/{model}:generateContent`` with an image model (key
    in ``x-goog-api-key``, or ``?key=``): one image per call, of the size
    ``generationConfig.imageConfig.aspectRatio`` implies (Gemini 2.5 Flash Image's table; other
    models also take ``imageSize`` 2K/4K: twice, four times the size). Errors ``{"error":
    {"code", "message", "status"}}``: a wrong key is Google's 400 INVALID_ARGUMENT with reason
    API_KEY_INVALID, a missing one 403 PERMISSION_DENIED; a 429 says how long to wait in a
    ``google.rpc.RetryInfo`` of the body, not in a header, as Google does. Cues beyond the common
    ones: ``"blocked"`` (200, ``promptFeedback.blockReason`` SAFETY, no candidates) and
    ``("finish", reason)`` (200, one candidate without content whose ``finishReason`` is
    ``reason``, e.g. IMAGE_SAFETY or NO_IMAGE)."""

    prefix = "/v1beta"
    endpoints = {"/models/{name}": "_models"}
    argument_cues = FakeVendor.argument_cues | {"finish"}

    ASPECT_RATIOS: ClassVar[dict[str, tuple[int, int]]] = {
        "1:1": (1024, 1024),
        "2:3": (832, 1248),
        "3:2": (1248, 832),
        "3:4": (864, 1184),
        "4:3": (1184, 864),
        "4:5": (896, 1152),
        "5:4": (1152, 896),
        "9:16": (768, 1344),
        "16:9": (1344, 768),
        "21:9": (1536, 672),
    }
    IMAGE_SIZES: ClassVar[dict[str, int]] = {"1K": 1, "2K": 2, "4K": 4}
    INPUT_MIME_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
    TOP_FIELDS = (
        "contents",
        "generationConfig",
        "safetySettings",
        "systemInstruction",
        "tools",
        "toolConfig",
        "cachedContent",
    )
    CONFIG_FIELDS = (
        "responseModalities",
        "imageConfig",
        "candidateCount",
        "temperature",
        "topP",
        "topK",
        "seed",
        "maxOutputTokens",
        "stopSequences",
        "responseMimeType",
        "presencePenalty",
        "frequencyPenalty",
        "thinkingConfig",
    )
    IMAGE_CONFIG_FIELDS = ("aspectRatio", "imageSize")
    TROUBLESHOOTING = "https://developers.generativeai.google/guide/troubleshooting"

    def key_of(self, request: Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query_params.get("key")

    @staticmethod
    def error(
        code: int,
        status: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
    ) -> Refusal:
        body: dict[str, Any] = {"code": code, "message": message, "status": status}
        if details:
            body["details"] = details
        return Refusal(code, {"error": body})

    def bad_key(self, given: str | None) -> Refusal:
        if not given:
            return self.error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        return self.error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        )

    def server_error(self) -> Refusal:
        return self.error(
            500,
            "INTERNAL",
            f"An internal error has occurred. Please retry or report in {self.TROUBLESHOOTING}",
        )

    def rate_limited(self, seconds: float) -> Refusal:
        return self.error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. For "
            "more information on this error, head to: "
            "https://ai.google.dev/gemini-api/docs/rate-limits.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{seconds:g}s",
                },
            ],
        )

    def invalid(self, message: str) -> Refusal:
        return self.error(400, "INVALID_ARGUMENT", message)

    def blocked(self, call: Call) -> Response:
        model = self._model(call)
        prompt = text_tokens(call.received.body.decode(errors="replace"))
        return JSONResponse(
            {
                "promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt},
                "modelVersion": model,
                "responseId": secrets.token_urlsafe(16),
            }
        )

    async def cue(self, name: str, argument: Any, call: Call) -> Response:  # ("finish", reason)
        model = self._model(call)
        prompt = text_tokens(call.received.body.decode(errors="replace"))
        return JSONResponse(
            {
                "candidates": [{"finishReason": str(argument), "index": 0}],
                "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt},
                "modelVersion": model,
                "responseId": secrets.token_urlsafe(16),
            }
        )

    def _model(self, call: Call) -> str:
        """The model of the path ``models/{model}:generateContent`` (404 for another method)."""
        model, _, method = str(call.request.path_params["name"]).partition(":")
        if method != "generateContent" or not model.startswith("gemini-"):
            raise self.error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version v1beta, or is not supported for "
                f"{method or 'this method'}. Call ListModels to see the list of available models "
                "and their supported methods.",
            )
        return model

    async def _models(self, call: Call) -> Response:
        model = self._model(call)
        body = call.received.json
        if not isinstance(body, dict):
            raise self.invalid("Invalid JSON payload received. Expected an object.")
        self._known(body, self.TOP_FIELDS, "")
        contents = _field(body, "contents")
        if not contents:
            raise self.invalid("* GenerateContentRequest.contents: contents is not specified\n")
        if not isinstance(contents, list):
            raise self.invalid("Invalid value at 'contents': expected a list of Content.")
        prompt, inputs = self._contents(contents)
        config = _field(body, "generationConfig") or {}
        self._known(config, self.CONFIG_FIELDS, "generation_config")
        image_config = _field(config, "imageConfig") or {}
        self._known(image_config, self.IMAGE_CONFIG_FIELDS, "generation_config.image_config")
        modalities = self._modalities(config, model)
        size = self._size(model, image_config, inputs)
        parts: list[dict[str, Any]] = []
        reply = ""
        if "TEXT" in modalities:
            reply = f"Here is the image: {prompt[:60]}"
            parts.append({"text": reply})
        image_tokens = 0
        if "IMAGE" in modalities:
            data = self.image(call, prompt, 0, size, "png")
            parts.append(
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}
            )
            scale = size[0] * size[1] / (1024 * 1024)
            image_tokens = 1290 if model.startswith("gemini-2.") else (2000 if scale > 4 else 1120)
        prompt_tokens = text_tokens(prompt) + 258 * len(inputs)
        output = {"TEXT": text_tokens(reply) if reply else 0, "IMAGE": image_tokens}
        output_details = [
            {"modality": modality, "tokenCount": tokens}
            for modality, tokens in output.items()
            if tokens
        ]
        output_tokens = sum(output.values())
        return JSONResponse(
            {
                "candidates": [
                    {
                        "content": {"parts": parts, "role": "model"},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": output_tokens,
                    "totalTokenCount": prompt_tokens + output_tokens,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
                    "candidatesTokensDetails": output_details,
                },
                "modelVersion": model,
                "responseId": secrets.token_urlsafe(16),
            }
        )

    def _known(self, obj: Any, names: tuple[str, ...], where: str) -> None:
        if not isinstance(obj, dict):
            raise self.invalid(f"Invalid value at '{where}': expected an object.")
        known = set(names) | {_snake(name) for name in names}
        for name in obj:
            if name not in known:
                at = f" at '{where}'" if where else ""
                raise self.invalid(
                    f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
                )

    def _contents(self, contents: list[Any]) -> tuple[str, list[ImageInfo]]:
        """The prompt (the text of the user's parts) and the input images."""
        texts: list[str] = []
        inputs: list[ImageInfo] = []
        for i, content in enumerate(contents):
            parts = content.get("parts") if isinstance(content, dict) else None
            if not parts or not isinstance(parts, list):
                raise self.invalid(
                    f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be "
                    "empty.\n"
                )
            role = content.get("role", "user")
            if role not in ("user", "model"):
                raise self.invalid(
                    f"Please use a valid role: user, model. Got role {role!r} at contents[{i}]."
                )
            for j, part in enumerate(parts):
                where = f"contents[{i}].parts[{j}]"
                inline = _field(part, "inlineData") if isinstance(part, dict) else None
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    if role == "user":
                        texts.append(part["text"])
                elif inline is not None:
                    inputs.append(self._inline_image(inline, where))
                elif not isinstance(part, dict) or not ({"fileData", "file_data"} & part.keys()):
                    raise self.invalid(
                        f"* GenerateContentRequest.{where}.data: required oneof field 'data' "
                        "must have one initialized field\n"
                    )
        return "\n".join(texts), inputs

    def _inline_image(self, inline: Any, where: str) -> ImageInfo:
        mime_type = _field(inline, "mimeType") if isinstance(inline, dict) else None
        data = _field(inline, "data") if isinstance(inline, dict) else None
        if not isinstance(data, str):
            raise self.invalid(f"* GenerateContentRequest.{where}.inline_data.data: required\n")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise self.invalid(
                f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding "
                f'failed for "{data[:20]}"'
            ) from None
        if mime_type not in self.INPUT_MIME_TYPES:
            raise self.invalid(f"Unsupported MIME type: {mime_type}")
        info = inspect_image(raw)
        if info is None:
            raise self.invalid(
                f"Unable to process input image. Please retry or report in {self.TROUBLESHOOTING}"
            )
        return info

    def _modalities(self, config: dict[str, Any], model: str) -> list[str]:
        given = _field(config, "responseModalities") or ["TEXT", "IMAGE"]
        if not isinstance(given, list):
            raise self.invalid("Invalid value at 'generation_config.response_modalities': a list")
        modalities = [str(value).upper() for value in given]
        for i, value in enumerate(modalities):
            if value not in ("TEXT", "IMAGE"):
                raise self.invalid(
                    f"Invalid value at 'generation_config.response_modalities[{i}]' "
                    "(type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig."
                    f'Modality), "{given[i]}"'
                )
        if "IMAGE" in modalities and "image" not in model:
            raise self.invalid("Model does not support the requested response modalities: image")
        return modalities

    def _size(
        self, model: str, image_config: dict[str, Any], inputs: list[ImageInfo]
    ) -> tuple[int, int]:
        ratio = _field(image_config, "aspectRatio")
        if ratio is None:  # the first input image's shape, or square
            first = inputs[0] if inputs else None
            base = (
                nearest(first.width, first.height, self.ASPECT_RATIOS.values())
                if first
                else self.ASPECT_RATIOS["1:1"]
            )
        elif ratio in self.ASPECT_RATIOS:
            base = self.ASPECT_RATIOS[ratio]
        else:
            raise self.invalid(
                f"Unsupported aspect ratio: {ratio}. Supported: " + ", ".join(self.ASPECT_RATIOS)
            )
        image_size = _field(image_config, "imageSize") or "1K"
        if image_size not in self.IMAGE_SIZES:
            raise self.invalid(
                f"Unsupported image size: {image_size}. Supported: 1K, 2K, 4K (upper-case K)."
            )
        scale = 1 if model.startswith("gemini-2.5") else self.IMAGE_SIZES[image_size]
        return base[0] * scale, base[1] * scale


# == ModelArk (Seedream) =====================================================================


class FakeSeedream(FakeVendor):
    """BytePlus ModelArk's ``POST /api/v3/images/generations`` with Seedream 4.0,
    ``Authorization: Bearer KEY``. Images are JPEG, as ModelArk's are: by URL (the default; served
    by the fake under ``/files/``, until :meth:`expire_urls`) or ``b64_json``. ``size`` is "WxH"
    or 1K/2K/4K (square); ``sequential_image_generation: "auto"`` gives
    ``sequential_image_generation_options.max_images`` images (15 by default, reference images
    plus generated ones at most 15). Errors ``{"error": {"code", "message", "param", "type"}}``
    with ModelArk's codes and messages."""

    prefix = "/api/v3"
    endpoints = {"/images/generations": "_generations"}
    image_format = "jpeg"  # ModelArk's images are JPEG

    PARAMS = frozenset(
        {
            "model",
            "prompt",
            "image",
            "size",
            "seed",
            "sequential_image_generation",
            "sequential_image_generation_options",
            "stream",
            "response_format",
            "watermark",
            "optimize_prompt_options",
        }
    )
    PRESETS: ClassVar[dict[str, int]] = {"1K": 1024, "2K": 2048, "4K": 4096}
    MIN_PIXELS, MAX_PIXELS = 1280 * 720, 4096 * 4096
    IMAGE_FORMATS = ("jpeg", "png", "webp", "bmp", "tiff", "gif")
    MAX_IMAGES = 15  # reference images plus generated ones

    @staticmethod
    def error(
        status: int, kind: str, code: str, message: str, param: str = "", **headers: str
    ) -> Refusal:
        request_id = secrets.token_hex(20)
        body = {
            "error": {
                "code": code,
                "message": f"{message} Request id: {request_id}",
                "param": param,
                "type": kind,
            }
        }
        return Refusal(status, body, {name.replace("_", "-"): v for name, v in headers.items()})

    def bad_key(self, given: str | None) -> Refusal:
        return self.error(
            401,
            "Unauthorized",
            "AuthenticationError",
            "The API key or AK/SK in the request is missing or invalid.",
        )

    def server_error(self) -> Refusal:
        return self.error(
            500,
            "InternalServerError",
            "InternalServiceError",
            "The service encountered an unexpected internal error.",
        )

    def rate_limited(self, seconds: float) -> Refusal:
        return self.error(
            429,
            "TooManyRequests",
            "RateLimitExceeded.EndpointRPMExceeded",
            "The Requests Per Minute (RPM) limit of the associated endpoint for your account has "
            "been exceeded.",
            Retry_After=f"{math.ceil(seconds)}",
        )

    def blocked(self, call: Call) -> Response:
        return self.error(
            400,
            "BadRequest",
            "OutputImageSensitiveContentDetected",
            "The request failed because the output image may contain sensitive information.",
        ).response()

    def invalid(self, param: str, detail: str) -> Refusal:
        return self.error(
            400,
            "BadRequest",
            "InvalidParameter",
            f"The parameter `{param}` specified in the request is not valid: {detail}.",
            param,
        )

    async def _generations(self, call: Call) -> Response:
        params = call.received.json
        if not isinstance(params, dict):
            raise self.invalid("body", "the request body must be a JSON object")
        for name in params:
            if name not in self.PARAMS:
                raise self.invalid(name, "unknown parameter")
        for name in ("model", "prompt"):
            if not params.get(name):
                raise self.error(
                    400,
                    "BadRequest",
                    "MissingParameter",
                    "The request failed because it is missing one or multiple required "
                    f"parameters: {name}.",
                    name,
                )
        model, prompt = params["model"], params["prompt"]
        if not isinstance(model, str) or not re.match(r"(doubao-)?seedream-|ep-", model):
            raise self.error(
                404,
                "NotFound",
                "InvalidEndpointOrModel.NotFound",
                f"The model or endpoint {model} does not exist or you do not have access to it.",
            )
        if not isinstance(prompt, str):
            raise self.invalid("prompt", "must be a string")
        size = self._size(params.get("size", "2048x2048"))
        references = self._references(params.get("image"))
        count = self._count(params, len(references))
        response_format = params.get("response_format", "url")
        if response_format not in ("url", "b64_json"):
            raise self.invalid("response_format", "must be url or b64_json")
        seed = params.get("seed", -1)
        if not isinstance(seed, int) or isinstance(seed, bool) or not -1 <= seed <= 2**31 - 1:
            raise self.invalid("seed", "must be an integer in [-1, 2147483647]")
        if not isinstance(params.get("watermark", True), bool):
            raise self.invalid("watermark", "must be a boolean")
        if params.get("stream"):
            raise self.invalid("stream", "the fake does not stream")
        width, height = size
        data: list[dict[str, str]] = []
        for index in range(count):
            image = self.image(call, prompt, index, size, self.image_format)
            item = (
                {"url": self.publish(image, self.image_format)}
                if response_format == "url"
                else {"b64_json": base64.b64encode(image).decode()}
            )
            data.append(item | {"size": f"{width}x{height}"})
        tokens = count * round(width * height / 256)
        return JSONResponse(
            {
                "model": model,
                "created": int(time.time()),
                "data": data,
                "usage": {
                    "generated_images": count,
                    "output_tokens": tokens,
                    "total_tokens": tokens,
                },
            }
        )

    def _size(self, size: Any) -> tuple[int, int]:
        if size in self.PRESETS:
            return self.PRESETS[size], self.PRESETS[size]
        parsed = parse_size(size)
        if parsed is None:
            raise self.invalid("size", "must be 1K, 2K, 4K or WIDTHxHEIGHT")
        width, height = parsed
        if not self.MIN_PIXELS <= width * height <= self.MAX_PIXELS:
            raise self.invalid(
                "size",
                f"the image must have between {self.MIN_PIXELS} and {self.MAX_PIXELS} pixels",
            )
        if not 1 / 16 <= width / height <= 16:
            raise self.invalid("size", "the aspect ratio must be between 1/16 and 16")
        return parsed

    def _references(self, image: Any) -> list[str]:
        """The reference images: URLs (not fetched) or data URLs (which must hold an image)."""
        if image is None:
            return []
        images = image if isinstance(image, list) else [image]
        if not images or len(images) > self.MAX_IMAGES - 1:
            raise self.invalid("image", f"give 1 to {self.MAX_IMAGES - 1} images")
        for reference in images:
            if not isinstance(reference, str):
                raise self.invalid("image", "each image must be a URL or a data URL string")
            if reference.startswith(("http://", "https://")):
                continue
            match = re.fullmatch(r"data:image/([a-z]+);base64,(.+)", reference, re.DOTALL)
            if match is None or match[1] not in self.IMAGE_FORMATS:
                raise self.invalid(
                    "image", "must be an http(s) URL or data:image/<format>;base64,<data>"
                )
            try:
                raw = base64.b64decode(match[2], validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if inspect_image(raw) is None:
                raise self.invalid("image", "the data URL does not hold an image")
        return images

    def _count(self, params: dict[str, Any], references: int) -> int:
        mode = params.get("sequential_image_generation", "disabled")
        if mode not in ("disabled", "auto"):
            raise self.invalid("sequential_image_generation", "must be disabled or auto")
        options = params.get("sequential_image_generation_options") or {}
        if not isinstance(options, dict) or options.keys() - {"max_images"}:
            raise self.invalid("sequential_image_generation_options", "only max_images is known")
        max_images = options.get("max_images", self.MAX_IMAGES)
        if not isinstance(max_images, int) or not 1 <= max_images <= self.MAX_IMAGES:
            raise self.invalid(
                "sequential_image_generation_options.max_images", "must be in [1, 15]"
            )
        return 1 if mode == "disabled" else min(max_images, self.MAX_IMAGES - references)


HOSTED = {  # catalog model -> (backend, the vendor's model id, the fake's key name)
    "gpt-image-2": ("openai", "gpt-image-2", "OPENAI"),
    "gpt-image-2.5-flare": ("openai", "gpt-image-2.5-flare", "OPENAI"),
    "nano-banana": ("gemini", "gemini-2.5-flash-image", "GEMINI"),
    "nano-banana-2": ("gemini", "gemini-3.1-flash-image-preview", "GEMINI"),
    "nano-banana-2-lite": ("gemini", "gemini-3.1-flash-lite-image", "GEMINI"),
    "nano-banana-2.1": ("gemini", "gemini-3.2-flash-image-preview", "GEMINI"),
    "nano-banana-pro": ("gemini", "gemini-3-pro-image-preview", "GEMINI"),
    "seedream-v4": ("seedream", "seedream-4-0-250828", "ARK"),
    "seedream-v4.5": ("seedream", "seedream-4-5-251128", "ARK"),
    "seedream-v5-pro": ("seedream", "seedream-5-0-pro-260628", "ARK"),
}


def catalog_override(
    fakes: dict[str, FakeVendor],
    path: Path,
    *,
    timeout: float,
    retries: int,
    env_prefix: str,
) -> Path:
    """An operator's catalog override pointing the hosted models at these fakes (keyed by
    backend name: openai, gemini, seedream), their keys in ``{env_prefix}_OPENAI_KEY``, ..."""
    tables = []
    for name, (backend, vendor_model, key) in HOSTED.items():
        fake = fakes.get(backend)
        if fake is None:
            continue
        base_url = fake.origin if backend == "gemini" else fake.url  # Gemini's paths carry v1beta
        upstream = (
            f'base_url = "{base_url}", model = "{vendor_model}", '
            f'api_key_env = "{env_prefix}_{key}_KEY", '
            f"timeout_seconds = {timeout}, max_retries = {retries}"
        )
        tables.append(f'[models."{name}"]\nbackend = "{backend}"\nupstream = {{ {upstream} }}\n')
    path.write_text("\n".join(tables))
    return path

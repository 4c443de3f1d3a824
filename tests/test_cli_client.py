"""``darkroom generate``, ``projects``, ``models`` and ``balance`` through real subprocesses
against a live server: files written, JSON for scripts, and one exit status per failure class."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from darkroom.cli.remote import EXIT_CODES
from darkroom.engine.registry import Backends
from tests.backends import Failing
from tests.conftest import Account, LiveServer, ServerFactory

CODES = {text.split(" (")[0].split(",")[0]: code for code, text, _ in EXIT_CODES}


def darkroom(
    server: LiveServer | None, key: str | None, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
    if key is not None:
        env["DARKROOM_API_KEY"] = key
    if server is not None:
        env["DARKROOM_BASE_URL"] = server.url
    return subprocess.run(
        [sys.executable, "-m", "darkroom.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_generate_writes_files_and_reports_progress(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    out = tmp_path / "outputs"
    result = darkroom(
        server,
        account.key,
        "generate",
        "a lighthouse at dusk",
        "--model",
        "flux-schnell",
        "--aspect-ratio",
        "16:9",
        "--resolution",
        "640px",
        "--count",
        "4",
        "--tool",
        "ai-art-generator",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    project_id, status, *_ = lines[0].split()
    assert status == "complete"
    paths = [Path(line) for line in lines[1:]]
    assert paths == [out / f"{project_id}-{n}.png" for n in range(1, 5)]
    for path in paths:
        with Image.open(path) as image:
            assert image.size == (640, 368)
    # progress on stderr, one line per step when it is not a terminal
    assert "rendering" in result.stderr or "queued" in result.stderr
    assert "downloading 4/4" in result.stderr
    assert "complete, 4 saved" in result.stderr
    assert server.balance(account) == 10_000 - 20


def test_generate_json_for_scripts(server: LiveServer, account: Account, tmp_path: Path) -> None:
    result = darkroom(
        server, account.key, "generate", "a cat", "--json", "-q", "--seed", "5", cwd=tmp_path
    )
    project = as_json(result)
    assert result.stderr == ""  # --quiet: no progress
    assert project["status"] == "complete"
    assert project["seed"] == 5
    assert project["downloaded_paths"] == [f"{project['id']}-1.png"]  # relative to -o (.)
    assert (tmp_path / project["downloaded_paths"][0]).is_file()

    got = as_json(darkroom(server, account.key, "projects", "get", project["id"], "--json"))
    assert got["id"] == project["id"]
    assert got["downloads"][0]["sha256"] == project["downloads"][0]["sha256"]
    text = darkroom(server, account.key, "projects", "get", project["id"]).stdout
    assert f"id        {project['id']}" in text

    deleted = as_json(darkroom(server, account.key, "projects", "delete", project["id"], "--json"))
    assert deleted == {"id": project["id"], "deleted": True}
    gone = darkroom(server, account.key, "projects", "get", project["id"])
    assert gone.returncode == CODES["not found"]
    assert gone.stderr.startswith("darkroom: 404")


def test_models_and_balance(server: LiveServer) -> None:
    account = server.account(tier="free", credits=77)
    balance = as_json(darkroom(server, account.key, "balance", "--json"))
    assert balance["credits"] == 77
    assert balance["tier"] == "free"
    assert darkroom(server, account.key, "balance").stdout.strip() == "77 credits (free tier)"
    models = as_json(darkroom(server, account.key, "models", "--json"))
    names = {m["id"] for m in models["data"]}
    assert "flux-schnell" in names
    assert "nano-banana-pro" not in names  # the free tier may not use it
    text = darkroom(server, account.key, "models").stdout
    assert (
        "flux-schnell         credits/image: 640px 5, 1k 5; images: 1,2,3,4; "
        "generates, edits up to 1 image; preview"
    ) in text
    assert (
        "qwen-edit            credits/image: 640px 10, 1k 10; images: 1,2,3,4; "
        "edits only (up to 3 images)" in text
    )


def test_exit_codes_per_failure(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory()
    free = server.account(tier="free")
    broke = server.account(credits=3)

    no_key = darkroom(server, None, "balance")
    assert no_key.returncode == CODES["no API key"]
    assert no_key.stderr.strip() == ("darkroom: no API key: pass --api-key or set DARKROOM_API_KEY")
    bad_key = darkroom(server, "dk_nope", "balance")
    assert bad_key.returncode == CODES["no API key"]

    poor = darkroom(server, broke.key, "generate", "x", "-o", str(tmp_path / "out"))
    assert poor.returncode == CODES["not enough credits"]
    assert poor.stderr.startswith("darkroom: 402 ")
    assert len(poor.stderr.strip().splitlines()) == 1

    tier = darkroom(server, free.key, "generate", "x", "--model", "nano-banana-pro")
    assert tier.returncode == CODES["model or resolution not available on your tier"]
    assert tier.stderr.startswith("darkroom: 403 ")

    invalid = darkroom(server, free.key, "generate", "x", "--count", "99")
    assert invalid.returncode == CODES["bad request"]

    unreachable = darkroom(None, free.key, "balance", "--base-url", "http://127.0.0.1:9")
    assert unreachable.returncode == CODES["server unreachable or not answering"]
    assert unreachable.stderr.startswith("darkroom: server unreachable")
    assert not (tmp_path / "out").exists()  # nothing created for a refused request


def test_a_failed_job_exits_non_zero_with_its_reason(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(Backends([Failing()]))
    account = server.account()
    result = darkroom(server, account.key, "generate", "x", "--json", "-o", str(tmp_path))
    assert result.returncode == CODES["the job ended in error or was canceled"]
    project = json.loads(result.stdout)  # the project is still printed for scripts
    assert project["status"] == "error"
    assert project["credits_charged"] == 0
    assert result.stderr.strip().endswith("the GPU is on fire (gpu_on_fire)")
    assert server.balance(account) == 10_000

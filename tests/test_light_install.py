"""``pip install darkroom`` is the client alone: in a fresh virtual environment, without extras,
the SDK and ``darkroom generate`` work against a server, none of the server's packages is
installed, and ``darkroom serve`` says in one line what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ON_POSTGRES, Account, LiveServer

ROOT = Path(__file__).resolve().parent.parent
SERVER_ONLY = ("fastapi", "sqlalchemy", "alembic", "uvicorn", "PIL", "pydantic_settings", "boto3")

pytestmark = [
    pytest.mark.slow,
    # The package, not the database: once per `make test`.
    pytest.mark.skipif(ON_POSTGRES, reason="about the package: run on the SQLite pass"),
]


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("client") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-cache-dir"]
    subprocess.run([*pip, str(ROOT)], check=True, timeout=600, capture_output=True)
    return venv


def run(
    venv: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DARKROOM_", "PYTHON"))}
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=venv.parent,
        env=clean | (env or {}),
    )


def test_the_client_install_has_none_of_the_server(client_venv: Path) -> None:
    python = str(client_venv / "bin" / "python")
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    found = run(client_venv, python, "-c", probe, *SERVER_ONLY)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"
    serve = run(client_venv, str(client_venv / "bin" / "darkroom"), "serve")
    assert serve.returncode == 2
    lines = serve.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'darkroom[server]'" in lines[0]
    # --help says it too, instead of an empty usage
    helped = run(client_venv, str(client_venv / "bin" / "darkroom"), "serve", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "needs the server" in helped.stdout
    assert "pip install 'darkroom[server]'" in " ".join(helped.stdout.split())


def test_the_client_install_is_typed_and_runs_as_a_module(client_venv: Path) -> None:
    """mypy checks a user's calls against the SDK's types (py.typed), and ``python -m darkroom``
    is the ``darkroom`` command."""
    user = client_venv.parent / "user_code.py"
    user.write_text(
        "import darkroom\n"
        "client = darkroom.Client(token='dk_x')\n"
        "client.v1.ai_image_generator.create(image_count='two', style={'prompt': 'a cat'})\n"
    )
    mypy = Path(sys.executable).parent / "mypy"
    checked = run(
        client_venv,
        str(mypy),
        "--no-incremental",
        "--python-executable",
        str(client_venv / "bin" / "python"),
        str(user),
    )
    assert "py.typed" not in checked.stdout, checked.stdout  # not "missing library stubs"
    assert 'Argument "image_count"' in checked.stdout, checked.stdout
    assert checked.stdout.strip().endswith("Found 1 error in 1 file (checked 1 source file)")
    version = run(client_venv, str(client_venv / "bin" / "python"), "-m", "darkroom", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("darkroom ")


def test_the_sdk_and_the_cli_of_the_client_install_work(
    client_venv: Path, server: LiveServer, account: Account
) -> None:
    python = str(client_venv / "bin" / "python")
    script = (
        "import darkroom, sys\n"
        "client = darkroom.Client(token=sys.argv[1], base_url=sys.argv[2])\n"
        "r = client.v1.ai_image_generator.generate(image_count=1, style={'prompt': 'a cat'},"
        " resolution='640px', download_directory=sys.argv[3])\n"
        "print(r.status, len(r.downloaded_paths or []))\n"
    )
    out = client_venv.parent / "sdk-out"
    made = run(client_venv, python, "-c", script, account.key, server.url, str(out))
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == ["complete", "1"]
    env = {"DARKROOM_API_KEY": account.key, "DARKROOM_BASE_URL": server.url}
    cli_out = client_venv.parent / "cli-out"
    darkroom = str(client_venv / "bin" / "darkroom")
    generated = run(client_venv, darkroom, "generate", "a lighthouse", "-o", str(cli_out), env=env)
    assert generated.returncode == 0, generated.stderr
    assert len(list(cli_out.iterdir())) == 1
    assert run(client_venv, darkroom, "balance", env=env).returncode == 0

"""The web playground at ``/``, in a real browser: Playwright driving Debian's Chromium
(``scripts/ensure-chromium``) against a live server, doing what a person does: enter a key, pick
a model, type a prompt, press Generate, see the image, the balance and the usage chart; edit
images chosen from disk and from the history; cancel; a wrong key; not enough credits; the
history after a reload; a copied snippet. No console error on the way."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from darkroom.engine.registry import Backends
from tests.backends import Failing, Slow
from tests.conftest import ON_POSTGRES, Account, LiveServer, ServerFactory

CHROMIUM = os.environ.get("DARKROOM_TEST_CHROMIUM", "/usr/bin/chromium")
DOCS = Path(__file__).resolve().parent.parent / "docs"

pytestmark = [
    pytest.mark.slow,
    # The page, not the database: once per `make test`.
    pytest.mark.skipif(ON_POSTGRES, reason="about the web page: run on the SQLite pass"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, server_factory: ServerFactory) -> Iterator[Page]:
    """A fresh page. It needs ``server_factory`` so that it is closed before the test's servers
    stop: whatever it still loads when a test ends is dropped with it, not refused by a server
    that went away (ERR_CONNECTION_REFUSED)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text} ({message.location.get('url')})")
            if message.type == "error" and "status of 40" not in message.text
            else None
        ),
    )
    # Which request failed, should one (the console line does not say); a navigation aborts
    # what the page it leaves still loads.
    page.on(
        "requestfailed",
        lambda request: (
            problems.append(f"failed: {request.url} ({request.failure})")
            if request.failure != "net::ERR_ABORTED"
            else None
        ),
    )
    page.problems = problems  # type: ignore[attr-defined]
    yield page
    context.close()
    # The browser logs failed requests (a 401, a 402) as console errors: those are the tests'.
    assert problems == [], problems


def wait_for_images(page: Page, selector: str) -> None:
    """Until every image ``selector`` matches has loaded: an ``<img>`` with its width and
    height is visible before its bytes arrive (a broken one has no natural width)."""
    page.wait_for_function(
        "(selector) => [...document.querySelectorAll(selector)]"
        ".every((i) => i.complete && i.naturalWidth > 0)",
        arg=selector,
    )


def enter_key(page: Page, server: LiveServer, key: str) -> None:
    page.goto(server.url + "/")
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_label("API key", exact=True).press("Enter")


def test_a_person_makes_images_and_sees_what_they_cost(
    page: Page, server: LiveServer, account: Account
) -> None:
    enter_key(page, server, account.key)
    expect(page.locator("#account")).to_have_text("10000 credits · business tier")
    page.get_by_label("Model", exact=True).select_option("z-image-turbo")
    page.get_by_label("Resolution", exact=True).select_option("640px")
    page.get_by_label("Number of images", exact=True).select_option("2")
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
    generate = page.get_by_role("button", name="Generate")
    expect(generate).to_have_text("Generate (10 credits)")
    generate.click()
    images = page.get_by_role("img", name="a lighthouse at dusk")
    expect(images.first).to_be_visible(timeout=30_000)
    expect(page.locator("#results img")).to_have_count(2)
    wait_for_images(page, "#results img")
    expect(page.locator("#account")).to_have_text("9990 credits · business tier")
    expect(page.get_by_role("status")).to_have_text("Complete: 10 credits")
    # The usage chart: a credit scale, the days, and a legend of the models.
    chart = page.locator("#usage svg.chart")
    expect(chart).to_have_attribute("aria-label", re.compile(r"Credits spent per day .*: \S+ 10$"))
    labels = chart.locator("text").all_text_contents()
    assert {"credits", "day (UTC)", "0", "2", "10"} <= set(labels)
    assert sum(1 for text in labels if re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}", text)) >= 5  # days
    expect(chart.locator("rect")).to_have_count(1)
    expect(page.locator("#usage .legend li")).to_have_text(["z-image-turbo"])
    # The page is offline-clean: a strict CSP, and nothing loaded from elsewhere.
    policy = httpx.get(server.url + "/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    # The README's picture of the page, taken when asked (a test run leaves the tree as it was)
    if os.environ.get("DARKROOM_UPDATE_SCREENSHOTS") == "1":
        page.screenshot(path=str(DOCS / "playground.png"), full_page=True)


def test_the_history_is_there_after_a_reload_and_a_delete_removes_it(
    page: Page, server: LiveServer, account: Account
) -> None:
    with server.client(account) as client:
        body = {"image_count": 1, "resolution": "640px", "style": {"prompt": "a red door"}}
        project_id = client.post("/v1/ai-image-generator", json=body).json()["id"]
    server.wait(account, project_id)
    enter_key(page, server, account.key)
    expect(page.locator("#history li")).to_have_count(1)
    page.reload()  # the key stayed in this browser
    item = page.locator("#history li")
    expect(item).to_contain_text("a red door")
    expect(item.get_by_role("img", name="a red door")).to_be_visible()
    item.get_by_role("button", name='Delete "a red door"').click()
    expect(page.locator("#history li")).to_have_count(0)
    with server.client(account) as client:
        assert client.get(f"/v1/image-projects/{project_id}").status_code == 404


def test_the_banner_link_fills_in_the_key(page: Page, server: LiveServer, account: Account) -> None:
    page.goto(f"{server.url}/#key={account.key}")
    expect(page.locator("#account")).to_contain_text("credits")
    assert "#key" not in page.url  # the key left the address bar


def test_cancel_shows_the_refund(page: Page, server_factory: ServerFactory) -> None:
    backend = Slow()
    server = server_factory(backends=Backends([backend]))
    account = server.account(credits=1_000)
    enter_key(page, server, account.key)
    expect(page.locator("#account")).to_have_text("1000 credits · business tier")
    page.get_by_label("Prompt", exact=True).fill("a slow one")
    page.get_by_role("button", name="Generate").click()
    assert backend.entered.wait(20)
    expect(page.get_by_role("status")).to_contain_text("Rendering")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("status")).to_contain_text("credits refunded")
    expect(page.locator("#account")).to_have_text("1000 credits · business tier")
    backend.release.set()


def test_a_wrong_key_and_too_few_credits_are_explained(page: Page, server: LiveServer) -> None:
    enter_key(page, server, "dk_not-a-key")
    expect(page.get_by_role("alert")).to_contain_text("(401)")
    poor = server.account(credits=3)
    enter_key(page, server, poor.key)
    expect(page.locator("#account")).to_have_text("3 credits · business tier")
    page.get_by_label("Prompt", exact=True).fill("too dear")
    page.get_by_role("button", name="Generate").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Not enough credits (402)")
    expect(alert).to_contain_text("the balance is 3")


def test_a_copied_curl_snippet_makes_a_complete_project(
    page: Page, server: LiveServer, account: Account
) -> None:
    enter_key(page, server, account.key)
    page.get_by_label("Prompt", exact=True).fill("a copied cat")
    page.get_by_label("Resolution", exact=True).select_option("640px")
    page.locator("#code summary").click()
    page.get_by_role("tab", name="curl").click()
    command = page.locator("#snippet").inner_text()
    created = subprocess.run(
        ["bash", "-c", command],
        env={**os.environ, "DARKROOM_API_KEY": account.key},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert created.returncode == 0, created.stderr
    answer: dict[str, Any] = httpx.Response(200, content=created.stdout).json()
    assert server.wait(account, answer["id"])["status"] == "complete"
    for tab in ("Python (magic_hour)", "Python (darkroom)", "Python (openai)"):
        page.get_by_role("tab", name=tab).click()
        expect(page.locator("#snippet")).to_contain_text("a copied cat")


def test_models_the_tier_may_not_use_are_shown_disabled(page: Page, server: LiveServer) -> None:
    free = server.account(tier="free", credits=100)
    enter_key(page, server, free.key)
    expect(page.locator("#account")).to_have_text("100 credits · free tier")
    pro_only = page.locator("#model option[value='nano-banana-pro']")
    expect(pro_only).to_be_disabled()
    expect(pro_only).to_contain_text("not on your tier")


def test_a_failed_render_says_so_with_its_refund(page: Page, server_factory: ServerFactory) -> None:
    server = server_factory(backends=Backends([Failing()]))
    account = server.account(credits=500)
    enter_key(page, server, account.key)
    page.get_by_label("Prompt", exact=True).fill("on fire")
    page.get_by_role("button", name="Generate").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The render failed (gpu_on_fire)")
    expect(alert).to_contain_text("refunded")
    expect(page.locator("#account")).to_have_text("500 credits · business tier")


def test_the_page_fits_a_phone_and_works_from_the_keyboard(
    page: Page, server: LiveServer, account: Account
) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(server.url + "/")
    page.keyboard.type(account.key)  # the key field has the focus
    page.keyboard.press("Enter")
    expect(page.locator("#account")).to_contain_text("credits")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375  # nothing wider than the screen
    page.get_by_label("Prompt", exact=True).focus()
    page.keyboard.type("a keyboard cat")
    page.get_by_role("button", name="Generate").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("img", name="a keyboard cat").first).to_be_visible(timeout=30_000)
    wait_for_images(page, "#results img")
    expect(page.get_by_role("status")).to_contain_text("Complete")


def test_a_person_edits_images_from_disk_and_from_the_history(
    page: Page, server: LiveServer, account: Account, tmp_path: Path
) -> None:
    with server.client(account) as client:
        body = {"image_count": 1, "resolution": "640px", "style": {"prompt": "a red door"}}
        made = client.post("/v1/ai-image-generator", json=body).json()["id"]
    server.wait(account, made)
    wide, square = tmp_path / "wide.png", tmp_path / "square.jpg"
    Image.new("RGB", (300, 200), "tomato").save(wide)
    Image.new("RGB", (64, 64), "navy").save(square, format="JPEG")
    enter_key(page, server, account.key)
    page.get_by_role("radio", name="Edit images").check()
    model = page.get_by_label("Model", exact=True)
    expect(model.locator("option[value='qwen-edit']")).to_contain_text("up to 3 images")
    expect(model.locator("option[value='z-image-turbo']")).to_have_count(0)  # it cannot edit
    expect(page.get_by_role("button", name="Edit (")).to_be_disabled()  # no image yet
    page.locator("#files").set_input_files([str(wide), str(square)])
    dropped = page.evaluate_handle(  # a file dropped on the page, as a person drags one in
        """(b64) => { const data = new DataTransfer();
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        data.items.add(new File([bytes], "dropped.png", { type: "image/png" })); return data; }""",
        base64.b64encode(wide.read_bytes()).decode(),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    page.get_by_role("button", name='Edit the image of "a red door"').click()
    chosen = page.locator("#chosen li")
    expect(chosen).to_have_count(4)
    model.select_option("krea-2")  # takes the image and one reference
    expect(page.locator("#inputs-note")).to_have_text("Krea 2 takes at most 2 images: remove 2.")
    expect(page.get_by_role("button", name="Edit (")).to_be_disabled()
    page.get_by_role("button", name="Remove square.jpg").click()
    page.get_by_role("button", name="Remove dropped.png").click()
    expect(chosen).to_have_count(2)
    model.select_option("flux-2-klein")
    page.get_by_label("Resolution", exact=True).select_option("640px")
    page.get_by_label("Prompt", exact=True).fill("snow on the roof")
    edit = page.get_by_role("button", name="Edit (")
    expect(edit).to_have_text("Edit (5 credits)")
    page.locator("#code summary").click()
    page.get_by_role("tab", name="curl").click()
    command = page.locator("#snippet").inner_text()
    edit.click()
    result = page.locator("#results img")
    expect(result).to_have_count(1, timeout=30_000)
    page.wait_for_function("() => document.querySelector('#results img').naturalWidth > 0")
    # "auto": the first image's shape (300x200) at 640px
    assert result.evaluate("(i) => [i.naturalWidth, i.naturalHeight]") == [640, 432]
    expect(page.get_by_role("status")).to_have_text("Complete: 5 credits")
    expect(page.locator("#account")).to_have_text(f"{10_000 - 5 - 5} credits · business tier")
    # The copied curl commands upload the same files (here, beside it) and make the same edit.
    (tmp_path / f"{made}-1.png").write_bytes(server.stored_image(made))
    ran = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env={**os.environ, "DARKROOM_API_KEY": account.key},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    copied = server.wait(account, httpx.Response(200, content=ran.stdout).json()["id"])
    assert (copied["status"], copied["width"], copied["height"]) == ("complete", 640, 432)

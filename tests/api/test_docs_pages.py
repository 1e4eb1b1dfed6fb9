"""/docs and /redoc in a real headless Chromium, against a real server, with the network cut:
everything they load comes from the server (docs assets shipped in the package), and
Authorize takes a pasted API key that "Try it out" then sends.

The page behaves the same on either database, so it runs on SQLite only. Chromium is
Debian's (`apt-get install chromium`, which .ci/run does); a machine without it fails here
rather than skipping, so that a CI missing it cannot pass in silence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    Route,
    expect,
    sync_playwright,
)

from tablehouse.api.docs import ASSETS
from tests.support.accounts import PASSWORD, bearer
from tests.support.processes import CHEAP_PASSWORDS, Server, running_server

CHROMIUM = Path("/usr/bin/chromium")
# The probe's flags: no sandbox as root, and none of Chromium's own calls home, which this
# machine's closed network would refuse (they never pass through the page's routes anyway).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A loaded CI machine takes a few seconds to parse Swagger UI's 1.8 MB bundle.
PAGE_TIMEOUT_MS = 30_000
EMAIL = "docs-reader@example.com"


def test_shipped_docs_assets_are_the_ones_the_manifest_records() -> None:
    manifest = json.loads((ASSETS / "manifest.json").read_bytes())
    shipped = {path.name for path in ASSETS.iterdir()} - {"manifest.json"}
    assert shipped == set(manifest["files"])
    for name, recorded in manifest["files"].items():
        digest = hashlib.sha256((ASSETS / name).read_bytes()).hexdigest()
        assert digest == recorded["sha256"], f"{name} differs from what the fetch script wrote"
        assert recorded["package"] in manifest["packages"]


@pytest.mark.backends("sqlite")
async def test_every_protected_operation_takes_http_bearer_or_the_oauth2_password_flow(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["type"] == "http"
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert "API key" in schemes["HTTPBearer"]["description"]
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    requirements = [
        operation.get("security")
        for path_item in document["paths"].values()
        for operation in path_item.values()
    ]
    either: list[dict[str, list[str]]] = [{"OAuth2PasswordBearer": []}, {"HTTPBearer": []}]
    assert either in requirements
    assert all(found in (None, either) for found in requirements)


@pytest.mark.backends("sqlite")
async def test_only_the_pages_own_assets_are_served(client: httpx.AsyncClient) -> None:
    served = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/javascript")
    for name in ("manifest.json", "redoc-LICENSE", "..%2Fdocs.py", "..%2F..%2Fapp.py"):
        refused = await client.get(f"/docs/assets/{name}")
        assert refused.status_code == 404, name
        assert refused.json()["code"] == "not_found"


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    env = {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path / "data"),
        **CHEAP_PASSWORDS,
        "ANALYTICS_ENABLED": "false",
        "DB_STARTUP_ATTEMPTS": "1",
    }
    with running_server(env, tmp_path / "server.log") as running:
        yield running


class OfflineContext:
    """A browser context whose only network is the server. What a page tried beyond it:
    ``elsewhere``, requests for another host (aborted here, as a closed network would);
    ``refused``, loads the page's own Content-Security-Policy stopped in the browser, before
    any request. What went wrong: ``failed``, any other failed request or error status;
    ``console_errors``, errors the page logged (a policy refusal logs one too)."""

    def __init__(self, browser: Browser, server: Server) -> None:
        self.origin = urlsplit(server.base_url).netloc
        self.elsewhere: list[str] = []
        self.refused: list[str] = []
        self.failed: list[str] = []
        self.console_errors: list[str] = []
        self.context: BrowserContext = browser.new_context(base_url=server.base_url)
        self.context.set_default_timeout(PAGE_TIMEOUT_MS)
        self.context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        if urlsplit(route.request.url).netloc == self.origin:
            route.continue_()
            return
        self.elsewhere.append(route.request.url)
        route.abort("internetdisconnected")

    def new_page(self) -> Page:
        page = self.context.new_page()
        page.on("requestfailed", self._request_failed)
        page.on("response", self._response)
        page.on("console", self._console)
        return page

    def _request_failed(self, request: Request) -> None:
        if request.failure == "csp":
            self.refused.append(request.url)
        elif request.url not in self.elsewhere:
            self.failed.append(f"{request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.url}: {response.status}")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)


@pytest.fixture
def offline(server: Server) -> Iterator[OfflineContext]:
    """A fresh Chromium for each test, started after the server: Playwright's sync API runs
    an event loop of its own, which the database fixtures' asyncio.run cannot share."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"the docs page tests need Chromium at {CHROMIUM}: "
            "run 'apt-get install -y chromium' (.ci/run installs it)"
        )
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield OfflineContext(browser, server)
        finally:
            browser.close()


def _api_key_for(server: Server, email: str) -> str:
    """A read-only API key of a new user, made through the API as a user would."""
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        registered = http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        tokens = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert tokens.status_code == 200, tokens.text
        created = http.post(
            "/api/v1/auth/api-keys",
            json={"name": "docs page", "scopes": ["read"]},
            headers=bearer(tokens.json()["access_token"]),
        )
        assert created.status_code == 201, created.text
        key: str = created.json()["key"]
        return key


@pytest.mark.slow
@pytest.mark.backends("sqlite")
def test_swagger_ui_works_offline_and_authorizes_with_a_pasted_api_key(
    offline: OfflineContext, server: Server
) -> None:
    key = _api_key_for(server, EMAIL)
    page = offline.new_page()
    page.goto("/docs")  # which waits for the page's scripts and styles
    assert offline.elsewhere == [], "the docs page tried to reach beyond the server"
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tablehouse")

    page.locator(".auth-wrapper button.authorize").click()
    bearer_form = page.locator(".modal-ux .auth-container").filter(
        has=page.locator("h4", has_text="HTTPBearer")
    )
    bearer_form.locator("input").fill(key)
    bearer_form.locator("button", has_text="Authorize").click()
    expect(bearer_form.locator("button", has_text="Logout")).to_be_visible()
    page.locator(".modal-ux button.close-modal").click()

    me = page.locator(".opblock-get").filter(has=page.locator('[data-path="/api/v1/users/me"]'))
    me.locator(".opblock-summary-control").click()
    me.get_by_role("button", name="Try it out").click()
    me.get_by_role("button", name="Execute").click()
    answer = me.locator(".live-responses-table tbody .response")
    expect(answer.locator(".response-col_status")).to_have_text("200")
    expect(answer.locator(".response-col_description")).to_contain_text(EMAIL)
    # The request Swagger UI sent carried the key as a bearer token (its curl line says so).
    expect(me.locator(".curl-command")).to_contain_text(f"Authorization: Bearer {key}")

    assert offline.elsewhere == [], "the docs page tried to reach beyond the server"
    assert offline.refused == []
    assert offline.failed == []
    assert offline.console_errors == []


@pytest.mark.slow
@pytest.mark.backends("sqlite")
def test_redoc_renders_the_title_and_operations_offline(
    offline: OfflineContext, server: Server
) -> None:
    document = httpx.get(f"{server.base_url}/openapi.json", timeout=30).json()
    summary = document["paths"]["/api/v1/users/me"]["get"]["summary"]
    page = offline.new_page()
    page.goto("/redoc")
    assert offline.elsewhere == [], "/redoc tried to reach beyond the server"
    expect(page.locator("h1").first).to_contain_text("Tablehouse")
    expect(page.get_by_role("menuitem", name="users")).to_be_visible()
    # Each operation is rendered with its summary as a heading.
    expect(page.locator("h2", has_text=summary)).to_be_attached()

    assert offline.elsewhere == [], "/redoc tried to reach beyond the server"
    # ReDoc's side menu shows its vendor's logo from a CDN: the page's policy refuses it in
    # the browser (the menu then shows the link's text alone), and nothing else.
    assert all(urlsplit(url).netloc != offline.origin for url in offline.refused)
    assert len(offline.console_errors) == len(offline.refused)
    assert all("Content Security Policy" in error for error in offline.console_errors)
    assert offline.failed == []

"""The API's documentation pages work with no way out to the internet: every script,
stylesheet and icon they load is served by the API itself."""

from __future__ import annotations

import re

import httpx
import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_documentation_pages_load_everything_from_the_api(api_url: str, page: str) -> None:
    with httpx.Client(base_url=api_url, timeout=10) as http:
        html = http.get(page)
        assert html.status_code == 200
        assert "text/html" in html.headers["content-type"]
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
        assert assets, html.text  # the page loads something: its script at least
        for url in assets:
            assert url.startswith("/"), f"{page} loads {url} from outside the API"
            asset = http.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 100, url
        assert "/openapi.json" in html.text
        assert http.get("/openapi.json").json()["info"]["title"] == "cairn"

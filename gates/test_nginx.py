"""The nginx image: nginx is installed, runs as the container's command and serves its page."""

from __future__ import annotations

import time
from typing import Any

import pytest

FETCH = (
    "python3 -c \"import urllib.request as u; r = u.urlopen('http://127.0.0.1/', timeout=5); "
    "print(r.status); print(r.headers.get('Server')); print(r.read().decode())\""
)


@pytest.fixture(scope="module")
def page(host: Any) -> list[str]:
    """The landing page as served, retried while nginx starts."""
    for _ in range(50):
        result = host.run(FETCH)
        if result.rc == 0:
            return list(result.stdout.splitlines())
        time.sleep(0.2)
    pytest.fail(f"nginx did not answer on 127.0.0.1:80: {result.stderr}")


def test_nginx_installed(host: Any) -> None:
    assert host.package("nginx-light").is_installed


def test_nginx_config_is_valid(host: Any) -> None:
    assert host.run("nginx -t").rc == 0


def test_serves_http_200(page: list[str]) -> None:
    assert page[0] == "200"


def test_hides_its_version(page: list[str]) -> None:
    assert page[1] == "nginx"


def test_page_names_the_image_version(page: list[str], image_name: str, image_version: str) -> None:
    assert f"<h1>{image_name} {image_version}</h1>" in "\n".join(page)


def test_no_debian_placeholder_page(host: Any) -> None:
    assert not host.file("/var/www/html/index.nginx-debian.html").exists

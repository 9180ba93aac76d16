"""Testinfra suites that gate images. Run by `factory bake`/`factory verify`, not by `make test`:

    pytest gates/test_base.py --hosts=podman://CONTAINER \
        --image-name=base --image-version=VERSION --image-commit=COMMIT
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("image factory")
    group.addoption("--image-name", required=True, help="image under test")
    group.addoption("--image-version", required=True, help="version id being verified")
    group.addoption("--image-commit", required=True, help="full git commit it was built from")


@pytest.fixture(scope="session")
def image_name(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--image-name"))


@pytest.fixture(scope="session")
def image_version(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--image-version"))


@pytest.fixture(scope="session")
def image_commit(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--image-commit"))

"""Random bytes and random JSON thrown at the factory's inputs: a webhook payload on stdin, the
catalog index, and an image definition. Every outcome is exit 0 or 2, never a traceback, and the
checkout is byte-identical afterwards (nothing written by a refused input).

The CLI runs in-process (``factory.__main__.main``): a subprocess costs ~0.5 s an example, and
``main`` is the same entry point the subprocess would run. Any exception escaping ``main`` is what
would have been a traceback. The whole module stays around a minute.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory.__main__ import main
from factory.catalog import trust

from .catalog_fixture import populate
from .conftest import Scratch, make_scratch, tree_digest

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
BASE_V1 = "20261101.000100-8b7e1ebc788a"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and Infinity included: json.dumps writes them, the factory must refuse them
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
alert_like = st.fixed_dictionaries(
    {"version": st.sampled_from(["4", 4, "3"]), "status": st.sampled_from(["firing", "resolved", "x"])},
    optional={
        "alerts": st.lists(
            st.fixed_dictionaries(
                {"status": st.sampled_from(["firing", "resolved"]), "fingerprint": st.text(max_size=20)},
                optional={
                    "labels": st.dictionaries(
                        st.sampled_from(["image", "image_version", "artifact_id", "severity", "alertname"]),
                        st.sampled_from(["base", "nginx", BASE_V1, "critical", "warning", "", "\u202e"])
                        | st.text(max_size=10),
                    )
                },
            ),
            max_size=3,
        ),
        "extra": json_values,
    },
)


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


@contextmanager
def stdin_bytes(data: bytes) -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    try:
        yield
    finally:
        sys.stdin = saved


def run(root: Path, *argv: str, stdin: bytes = b"") -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    with stdin_bytes(stdin), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(["--root", str(root), *argv])
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
    outcome = Outcome(code, out.getvalue(), err.getvalue())
    assert outcome.code in (0, 2), outcome
    assert "Traceback" not in outcome.stderr, outcome.stderr
    return outcome


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    root = tmp_path_factory.mktemp("fuzz") / "repo"
    scratch = make_scratch(root)
    populate(root, trust.DEFAULT_KEY.expanduser(), {"base": 2, "nginx": 1})
    scratch.commit_all("signed catalog")
    shutil.copytree(root / ".factory", root.parent / "pristine-state", symlinks=True)
    return scratch


@pytest.fixture
def env(checkout: Scratch, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Scratch:
    """The checkout's environment in this process (cache in tmp: query writes there, not in the tree)."""
    for key in [k for k in os.environ if k.startswith("FACTORY_")]:
        monkeypatch.delenv(key)
    for key, value in checkout.env.items():
        if key.startswith("FACTORY_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    return checkout


@contextmanager
def replaced(path: Path, data: bytes) -> Iterator[None]:
    """``path`` holds ``data`` for the block, then its old bytes again."""
    saved = path.read_bytes()
    path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(saved)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", errors="surrogatepass")


@FUZZ
@given(st.binary(max_size=300) | alert_like.map(_json_bytes) | json_values.map(_json_bytes))
def test_signal_stdin(env: Scratch, payload: bytes) -> None:
    before = tree_digest(env.root)
    outcome = run(env.root, "signal", "-", stdin=payload)
    if tree_digest(env.root) != before:
        # Only a payload the factory accepted may change the catalog; the next example starts
        # from the signed catalog again.
        assert outcome.code == 0, outcome
        state = env.root / ".factory"
        shutil.rmtree(state)
        shutil.copytree(env.root.parent / "pristine-state", state, symlinks=True)
        assert tree_digest(env.root) == before


def _mutated_index(original: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(original))
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@st.composite
def index_mutations(draw: st.DrawFn, original: dict[str, Any]) -> bytes:
    """The signed catalog.json with one node (chosen by walking down at random) replaced by random JSON."""
    path: list[Any] = []
    node: Any = original
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        key = draw(
            st.sampled_from(sorted(node)) if isinstance(node, dict) else st.integers(0, len(node) - 1)
        )
        path.append(key)
        node = node[key]
    if not path:
        return _json_bytes(draw(json_values))
    return _json_bytes(_mutated_index(original, path, draw(json_values)))


@pytest.fixture(scope="module")
def signed_index(checkout: Scratch) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((checkout.catalog / "catalog.json").read_bytes())
    return loaded


READERS = (["resolve", "base"], ["verify-catalog"], ["catalog", "nginx"], ["query", "--package", "openssl"])


@FUZZ
@given(data=st.data())
def test_catalog_index(env: Scratch, signed_index: dict[str, Any], data: st.DataObject) -> None:
    raw = data.draw(st.binary(max_size=300) | index_mutations(signed_index), label="catalog.json")
    argv = data.draw(st.sampled_from(READERS), label="argv")
    index = env.catalog / "catalog.json"  # the file every reader parses and verifies first
    with replaced(index, raw):
        before = tree_digest(env.root)
        run(env.root, *argv)
        assert tree_digest(env.root) == before


@FUZZ
@given(
    st.binary(max_size=300)
    | st.text(max_size=300).map(lambda t: t.encode("utf-8", errors="surrogatepass"))
    | st.lists(
        st.sampled_from(
            ['description = "x"\n', "[[roles]]\n", 'name = "common"\n', "[roles.vars]\n", "tests = [\n"]
        ),
        max_size=8,
    ).map(lambda parts: "".join(parts).encode())
)
def test_image_definition(env: Scratch, definition: bytes) -> None:
    path = env.root / "images" / "nginx" / "image.toml"
    with replaced(path, definition):
        before = tree_digest(env.root)
        run(env.root, "list")
        assert tree_digest(env.root) == before

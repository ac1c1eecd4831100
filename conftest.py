"""Shared pytest fixtures: a local feed server, a real Synapse, matrix-js-sdk clients."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.feed_server", "tests.synapse_server", "tests.js_client"]

# A test that asks for one of these runs a homeserver: it is marked `synapse`, so that the
# unit tests alone run with `-m "not synapse"` (as `make test` does against the floors).
_SYNAPSE_FIXTURES = frozenset(
    {"synapse", "synapse_factory", "synapse_strict", "matrix_client", "js_user"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs Synapse."""
    for item in items:
        if _SYNAPSE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.synapse)

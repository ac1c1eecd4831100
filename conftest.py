"""Shared pytest fixtures: a local feed server, a real Synapse, matrix-js-sdk clients."""

pytest_plugins = ["tests.feed_server", "tests.synapse_server", "tests.js_client"]

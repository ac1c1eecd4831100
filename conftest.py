"""Shared pytest fixtures: a real local feed server and a real Synapse."""

pytest_plugins = ["tests.feed_server", "tests.synapse_server"]

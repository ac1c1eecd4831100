"""A real Synapse homeserver on 127.0.0.1 for the Matrix tests."""

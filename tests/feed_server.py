"""A real local aiohttp feed server whose behaviour each test sets."""

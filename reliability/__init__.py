"""Reliability scenarios: crashes, outages, hostile feeds and content, abuse, bad input."""

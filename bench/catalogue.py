"""The benchmarks' catalogue: one organisation per feed of the farm, spread over a few regions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.config import Config, parse_config

REGIONS = 20
INTERVAL = "30m"
# Every feed of the farm is on 127.0.0.1: one host. With the default per_host of 2 the bot would
# poll two feeds at a time, so the per-host limit is raised to the global one.
CONCURRENCY = 16
PER_HOST = 16
UNUSED_HOMESERVER = "http://127.0.0.1:9"  # for the benchmarks that never reach Matrix


def region_slug(number: int) -> str:
    """The slug of region `number`."""
    return f"region-{number}"


def config_data(
    database: Path,
    feed_urls: Sequence[str],
    *,
    homeserver: str = UNUSED_HOMESERVER,
    user_id: str = "@crieur:localhost",
    password: str = "unused",
    rooms: Mapping[str, Sequence[str]] | None = None,
    interval: str = INTERVAL,
    regions: int = REGIONS,
) -> dict[str, Any]:
    """The YAML data of a configuration: feed i belongs to organisation `org-i` of region i % R."""
    rooms = rooms or {}
    region_data: dict[str, Any] = {}
    for number in range(min(regions, max(len(feed_urls), 1))):
        slug = region_slug(number)
        region_data[slug] = {"name": f"Region {number}"}
        if rooms.get(slug):
            region_data[slug]["rooms"] = list(rooms[slug])
    organisations = {
        f"org-{index}": {
            "name": f"Organisation {index}",
            "region": region_slug(index % len(region_data)),
            "url": f"https://org{index}.example.org/",
            "feeds": [url],
        }
        for index, url in enumerate(feed_urls)
    }
    return {
        "matrix": {
            "homeserver": homeserver,
            "user_id": user_id,
            "password": password,
            "device_name": "crieur-bench",
            # The rooms are unencrypted and the baselines send plain events: measured alike.
            "encryption": False,
        },
        "database": str(database),
        "language": "fr",
        "polling": {
            "interval": interval,
            "timeout": "20s",
            "concurrency": CONCURRENCY,
            "per_host": PER_HOST,
            # The farm, Synapse and everything else listen on 127.0.0.1.
            "allow_private_networks": True,
        },
        "regions": region_data,
        "organisations": organisations,
    }


def load(data: Mapping[str, Any], base_dir: Path) -> Config:
    """Validate configuration data as `crieur run` does with its YAML file."""
    return parse_config(dict(data), base_dir=base_dir, env={})

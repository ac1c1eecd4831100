"""Scenario 6 of the reliability report: bad configuration and database, with `crieur` processes.

The same code as `make reliability` (reliability/bad_input.py). tests/test_config.py and
tests/test_cli.py check each configuration message in detail; here the real commands must exit 1
with them, and the database cases run against `crieur run` itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import bad_input
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer


async def test_broken_configurations_end_check_and_run_with_a_clear_message(
    tmp_path: Path,
) -> None:
    outcomes = await bad_input.bad_configs(tmp_path)
    assert {(o.case, o.command) for o in outcomes} == {
        (case, command) for case in bad_input.config_cases() for command in ("check", "run")
    }
    for outcome in outcomes:
        assert outcome.clear, (outcome.case, outcome.command, outcome.code, outcome.stderr)


async def test_a_database_from_a_newer_crieur_is_refused_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    refusal = await bad_input.newer_schema(tmp_path)
    assert refusal.clear, refusal.log
    assert refusal.unchanged


async def test_a_read_only_database_is_refused_with_a_clear_message(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    refusal = await bad_input.read_only(tmp_path, feed_server)
    if refusal.skipped:
        pytest.skip(refusal.skipped)
    assert refusal.clear, refusal.log
    assert "read-only" in refusal.log or "cannot be opened" in refusal.log
    assert refusal.unchanged


async def test_a_full_disk_stops_crieur_run_clearly_and_loses_nothing(
    tmp_path: Path, synapse: SynapseServer, feed_server: FeedServer
) -> None:
    disk = await bad_input.disk_full(tmp_path, synapse, feed_server)
    if disk.skipped:
        pytest.skip(disk.skipped)
    assert disk.clear, disk.log
    assert len(disk.pending_before) >= 2  # messages really waited in the outbox
    assert disk.pending_kept
    assert disk.entries_kept
    assert disk.lost == [], disk.restart_log
    assert disk.duplicated == []
    assert disk.big_batch_recorded, disk.restart_log
    assert "Traceback" not in disk.log + disk.restart_log

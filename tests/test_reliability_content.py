"""Scenario 4 of the reliability report, short: malicious HTML as entries' titles and summaries,
relayed by `crieur run` into a room of the session's Synapse, every `formatted_body` checked
against the allow-list (`make reliability` runs the whole corpus)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import hostile_content
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer


@pytest.mark.parametrize(
    ("fragment", "found"),
    [
        ("<script>alert(1)</script>", "tag <script>"),
        ("<span>x</span>", "tag <span>"),
        ('<p onclick="alert(1)">x</p>', "attribute onclick on <p>"),
        ('<a href="https://example.org/" title="t">x</a>', "attribute title on <a>"),
        ('<a href="java&#x09;script:alert(1)">x</a>', "URL 'java\\tscript:alert(1)' in <a href>"),
        ('<a href="&#1;javascript:alert(1)">x</a>', "URL 'javascript:alert(1)' in <a href>"),
        ('<a href="mxc://example.org/x">x</a>', "URL 'mxc://example.org/x' in <a href>"),
        ('<img src="https://example.org/x.png">', "URL 'https://example.org/x.png' in <img src>"),
        ("<!-- x -->", "comment"),
        (
            '<a href="https://example.org/\u202eevil">x</a>',
            "invisible character in URL 'https://example.org/\\u202eevil'",
        ),
    ],
)
def test_the_checker_finds_what_is_outside_the_allow_list(fragment: str, found: str) -> None:
    assert found in hostile_content.violations(fragment)


@pytest.mark.parametrize(
    "fragment",
    [
        '<p><a href="https://example.org/"><b>titre</b></a><br><i>date</i></p>',
        '<blockquote><a href="mailto:a@example.org">a</a><img src="mxc://example.org/x">'
        "</blockquote>",
    ],
)
def test_the_checker_accepts_what_crieur_may_send(fragment: str) -> None:
    assert hostile_content.violations(fragment) == []


async def test_hostile_html_reaches_the_room_inside_the_allow_list(
    synapse: SynapseServer, feed_server: FeedServer, tmp_path: Path
) -> None:
    payloads = hostile_content.corpus(full=False)

    figures = await hostile_content.run(synapse, feed_server, tmp_path, payloads=payloads)

    assert figures.crashes == 0
    assert figures.entries == 2 * len(payloads) + len(hostile_content.LINKS) > 80
    assert (figures.lost, figures.duplicated) == (0, 0)
    assert figures.checked == figures.entries
    assert figures.violations == 0, figures.examples

"""Filters with the whole bot against a real Synapse and real local feeds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nio import AsyncClient, Event

from tests.e2e_support import WAIT, content, posts_from, wait_for_membership
from tests.feed_server import FeedServer
from tests.synapse_server import ClientFactory, SynapseServer
from tests.test_e2e import Crieur, bot_room, make_crieur


@pytest.fixture
async def crieur(
    synapse: SynapseServer, feed_server: FeedServer, tmp_path: Path
) -> AsyncIterator[Crieur]:
    made = await make_crieur(synapse, feed_server, tmp_path)
    yield made
    await made.stop_all()


def bodies(crieur: Crieur, events: list[Event]) -> list[str]:
    return [str(content(post)["body"]) for post in posts_from(events, crieur.user_id)]


def summed_up(crieur: Crieur, events: list[Event], count: int) -> bool:
    return any(body.startswith(f"… et {count} autres") for body in bodies(crieur, events))


async def test_a_rooms_filters_hold_back_what_they_leave_out_and_the_digest_counts_the_rest(
    crieur: Crieur, matrix_client: ClientFactory
) -> None:
    alice = await matrix_client("alice")  # creates the rooms: in room version 12, a moderator
    filtered = await bot_room(alice, crieur)
    plain = await bot_room(alice, crieur)
    await crieur.start(rooms={"ile-de-france": [filtered, plain]}, max_posts_per_poll=2)
    for room in (filtered, plain):
        await wait_for_membership(alice, room, crieur.user_id, "join")
    await crieur.wait_seeded("parinux")
    _, reply = await crieur.command(alice, filtered, '!filter +linux +"logiciel libre" -évènement')
    assert 'Tout le salon : +linux, +"logiciel libre", -évènement' in content(reply)["body"]

    # A match by the summary (accents and markup aside), and one left out by a `-` word the
    # site wrote without accents; two items, within the cap however the polls fall.
    kept = crieur.feeds.publish(
        "parinux", "Atelier du samedi", summary="<p>Découvrez <b>GNU/Linux</b> !</p>"
    )
    dropped = crieur.feeds.publish("parinux", "Linux : evenement annule")
    await crieur.wait_for_titles(alice, plain, [kept, dropped])
    await crieur.wait_for_titles(alice, filtered, [kept])
    await crieur.quiet("parinux")
    assert [body.splitlines()[1] for body in bodies(crieur, await timeline(alice, filtered))] == [
        kept
    ]

    titles = [
        "Journée du Logiciel-Libre",  # kept: the phrase, across punctuation
        "Apéro mensuel",
        "Install party Linux",  # kept
        "Linuxfr : les nouvelles",  # "linux" is no whole word of it
        "Debian sur Linux",  # kept
        "Linux embarqué",  # kept
        "Café vie privée",
    ]
    crieur.feeds.publish_many("parinux", titles)
    # Each room's "… and N more" counts what passes its filters: 4 pass, 2 posted, 2 summed up.
    for room, more in ((filtered, 2), (plain, 5)):
        await crieur.guard(
            SynapseServer.wait_for_messages(
                alice, room, lambda events, n=more: summed_up(crieur, events, n), WAIT
            )
        )
    await crieur.quiet("parinux")

    posted = bodies(crieur, await timeline(alice, filtered))
    assert [body.splitlines()[1] for body in posted[1:3]] == [titles[0], titles[2]]
    assert posted[3:] == [
        "… et 2 autres articles publiés par Parinux\nhttps://parinux.example.org/"
    ]
    others = bodies(crieur, await timeline(alice, plain))
    assert others[-1].startswith("… et 5 autres articles publiés par Parinux")

    _, status = await crieur.command(alice, filtered, "!status")
    assert "Filtres (3/20 mots) : 4 articles écartés jusqu'ici." in content(status)["body"]
    _, status = await crieur.command(alice, plain, "!status")
    assert "Filtres (" not in content(status)["body"]


async def timeline(client: AsyncClient, room: str) -> list[Event]:
    return await SynapseServer.timeline(client, room)

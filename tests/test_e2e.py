"""The whole bot against a real Synapse and real local feeds, run in this process.

`run_bot` runs as a task of the test's event loop and is stopped by cancelling it, as
`crieur run` does on a signal. People are real Matrix users (nio clients); what the tests
check is what they see in their rooms, and what the feed server and the HTTP listener show.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio
from nio import AsyncClient, Event
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e_support import (
    WAIT,
    BotWaits,
    Feeds,
    RunningBot,
    bot_account,
    config_data,
    content,
    eventually,
    load,
    posts_from,
    replies_to,
    sender,
    titles_posted,
    unless_stopped,
    wait_for_membership,
)
from tests.feed_server import FeedServer
from tests.synapse_server import Account, ClientFactory, SynapseServer

T = TypeVar("T")

MODERATOR = 50


class Crieur(BotWaits):
    """The bot under test: one account, one database, the test catalogue's feeds."""

    def __init__(self, synapse: SynapseServer, account: Account, feeds: Feeds, tmp: Path) -> None:
        self.synapse = synapse
        self.account = account
        self.feeds = feeds
        self.database = tmp / "crieur.sqlite3"
        self.tmp = tmp
        self._running: list[RunningBot] = []

    def data(self, **options: Any) -> dict[str, Any]:
        return config_data(
            synapse=self.synapse,
            account=self.account,
            feeds=self.feeds,
            database=self.database,
            **options,
        )

    async def start(self, *, ready_within: float = 30.0, **options: Any) -> RunningBot:
        """Start the bot on this account and database (again, after a stop)."""
        bot = RunningBot(load(self.data(**options), self.tmp))
        self._running.append(bot)
        return await bot.start(ready_within)

    async def stop_all(self) -> None:
        """Stop every bot still running; then raise what made one of them stop by itself."""
        errors: list[BaseException] = []
        for bot in self._running:
            try:
                await bot.stop()
            except Exception as error:  # every bot must be stopped, whatever one raises
                errors.append(error)
        if errors:
            raise errors[0]

    def posts(self, events: list[Event], titles: list[str]) -> list[str]:
        """Which of these titles the bot posted, in the order they arrived."""
        return titles_posted(events, self.user_id, titles)

    async def guard(self, awaitable: Awaitable[T]) -> T:
        running = [bot.task for bot in self._running if bot.task is not None]
        return await unless_stopped(awaitable, running)


async def make_crieur(synapse: SynapseServer, feed_server: FeedServer, tmp: Path) -> Crieur:
    return Crieur(synapse, await bot_account(synapse), Feeds(feed_server), tmp)


@pytest.fixture
async def crieur(
    synapse: SynapseServer, feed_server: FeedServer, tmp_path: Path
) -> AsyncIterator[Crieur]:
    made = await make_crieur(synapse, feed_server, tmp_path)
    yield made
    await made.stop_all()


@pytest.fixture
async def alice(matrix_client: ClientFactory) -> AsyncClient:
    """Creates the rooms: in room version 12 their creator, hence a moderator."""
    return await matrix_client("alice")


@pytest.fixture
async def moderator(matrix_client: ClientFactory) -> AsyncClient:
    """Given power level 50 in the rooms that invite them."""
    return await matrix_client("mod")


@pytest.fixture
async def bob(matrix_client: ClientFactory) -> AsyncClient:
    """A plain member (power level 0)."""
    return await matrix_client("bob")


async def bot_room(
    owner: AsyncClient,
    crieur: Crieur,
    *,
    members: tuple[AsyncClient, ...] = (),
    moderators: tuple[AsyncClient, ...] = (),
) -> str:
    """A room of `owner`'s with these members joined and the bot invited (not joined)."""
    power_levels = {"users": {client.user_id: MODERATOR for client in moderators}}
    return await SynapseServer.create_room(
        owner,
        invite=[*members, *moderators, crieur.user_id],
        power_levels=power_levels if moderators else None,
    )


# -- routing -------------------------------------------------------------------------------------


async def test_region_room_receives_a_new_entry_of_its_region_exactly_once(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    await crieur.start(rooms={"ile-de-france": [room]})
    await crieur.wait_seeded()

    title = crieur.feeds.publish("parinux", "Install party du 14 mars")
    await crieur.wait_for_titles(alice, room, [title])
    await crieur.quiet("parinux")

    events = await SynapseServer.timeline(alice, room)
    assert crieur.posts(events, [title]) == [title]
    assert len(posts_from(events, crieur.user_id)) == 1


async def test_entry_of_another_region_does_not_reach_a_region_room(
    crieur: Crieur, alice: AsyncClient
) -> None:
    idf = await bot_room(alice, crieur)
    bretagne = await bot_room(alice, crieur)
    await crieur.start(rooms={"ile-de-france": [idf], "bretagne": [bretagne]})
    await crieur.wait_seeded()

    other = crieur.feeds.publish("infini", "Café vie privée à Brest")
    await crieur.wait_for_titles(alice, bretagne, [other])
    await crieur.quiet("infini")

    assert posts_from(await SynapseServer.timeline(alice, idf), crieur.user_id) == []


async def test_room_following_a_region_and_one_of_its_organisations_gets_each_entry_once(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    await crieur.start(rooms={"ile-de-france": [room]})
    await crieur.wait_seeded("parinux")
    await crieur.command(alice, room, "!subscribe parinux")

    title = crieur.feeds.publish("parinux", "Journée du logiciel libre")
    await crieur.wait_for_titles(alice, room, [title])
    await crieur.quiet("parinux")

    events = await SynapseServer.timeline(alice, room)
    assert crieur.posts(events, [title]) == [title]
    assert len(posts_from(events, crieur.user_id)) == 1


async def test_new_entries_beyond_max_posts_per_poll_are_summed_up_in_one_line(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    await crieur.start(rooms={"ile-de-france": [room]}, max_posts_per_poll=2)
    await crieur.wait_seeded("parinux")

    titles = crieur.feeds.publish_many("parinux", [f"Soirée n° {n}" for n in range(1, 5)])

    def summed_up(events: list[Event]) -> bool:
        return any(
            str(content(post)["body"]).startswith("… et ")
            for post in posts_from(events, crieur.user_id)
        )

    await crieur.guard(SynapseServer.wait_for_messages(alice, room, summed_up, WAIT))
    await crieur.quiet("parinux")
    posts = posts_from(await SynapseServer.timeline(alice, room), crieur.user_id)
    assert crieur.posts(posts, titles) == titles[:2]
    assert len(posts) == 3
    assert content(posts[2])["body"] == (
        "… et 2 autres articles publiés par Parinux\nhttps://parinux.example.org/"
    )
    assert (
        '<a href="https://parinux.example.org/">Parinux</a>' in content(posts[2])["formatted_body"]
    )


async def test_relayed_entry_is_a_notice_naming_organisation_region_title_link_and_date(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    await crieur.start(rooms={"ile-de-france": [room]})
    await crieur.wait_seeded("parinux")

    title = crieur.feeds.publish("parinux", "Permanence Linux de mars")
    events = await crieur.wait_for_titles(alice, room, [title])

    (post,) = posts_from(events, crieur.user_id)
    body, formatted = content(post)["body"], content(post)["formatted_body"]
    assert content(post)["msgtype"] == "m.notice"
    assert content(post)["format"] == "org.matrix.custom.html"
    assert body.splitlines()[:2] == ["Parinux · Île-de-France", title]
    assert "https://parinux.example.org/news/" in body
    assert "Publié le " in body
    assert '<a href="https://parinux.example.org/news/' in formatted
    assert f"<b>{title}</b>" in formatted


# -- subscribing and muting ------------------------------------------------------------------------


async def test_moderator_subscribes_the_room_to_an_organisation_and_its_next_entry_arrives(
    crieur: Crieur, alice: AsyncClient, moderator: AsyncClient
) -> None:
    room = await bot_room(alice, crieur, moderators=(moderator,))
    await crieur.start(accept_invites_from=[alice.user_id])
    await wait_for_membership(alice, room, crieur.user_id, "join")
    await crieur.wait_seeded("april")

    _, reply = await crieur.command(moderator, room, "!subscribe april")
    assert content(reply)["body"] == "Ce salon suit désormais : April."
    title = crieur.feeds.publish("april", "Libre en Fête 2026")

    await crieur.wait_for_titles(alice, room, [title])


async def test_member_without_power_cannot_subscribe_and_nothing_changes(
    crieur: Crieur, alice: AsyncClient, bob: AsyncClient
) -> None:
    room = await bot_room(alice, crieur, members=(bob,))
    follows_france = await bot_room(alice, crieur)
    await crieur.start(rooms={"france": [follows_france]}, accept_invites_from=[alice.user_id])
    await wait_for_membership(alice, room, crieur.user_id, "join")
    await crieur.wait_seeded("april")

    _, reply = await crieur.command(bob, room, "!subscribe april")
    assert content(reply)["body"] == (
        "Désolé, seuls les modérateurs de ce salon peuvent faire cela "
        "(niveau de pouvoir 50 requis)."
    )
    title = crieur.feeds.publish("april", "Apéro April de mars")
    await crieur.wait_for_titles(alice, follows_france, [title])
    await crieur.quiet("april")

    assert posts_from(await SynapseServer.timeline(alice, room), crieur.user_id) == []


async def test_unsubscribing_an_organisation_of_a_followed_region_mutes_only_it(
    crieur: Crieur, alice: AsyncClient, moderator: AsyncClient
) -> None:
    room = await bot_room(alice, crieur, moderators=(moderator,))
    witness = await bot_room(alice, crieur)
    await crieur.start(rooms={"ile-de-france": [room, witness]})
    await crieur.wait_seeded("parinux", "ubuntu-paris")

    _, reply = await crieur.command(moderator, room, "!unsubscribe parinux")
    assert content(reply)["body"] == (
        "« Parinux » est mise en sourdine : ce salon suit toujours la région "
        "« Île-de-France », mais sans ses articles."
    )
    muted = crieur.feeds.publish("parinux", "Parinux déménage")
    other = crieur.feeds.publish("ubuntu-paris", "Ubuntu Party de printemps")
    await crieur.wait_for_titles(alice, witness, [muted, other])
    await crieur.wait_for_titles(alice, room, [other])
    await crieur.quiet("parinux")

    events = await SynapseServer.timeline(alice, room)
    assert crieur.posts(events, [muted, other]) == [other]


# -- answers to the read-only commands ---------------------------------------------------------


@dataclass
class AnsweringBot:
    """A running bot in one language, with a room that follows Île-de-France."""

    language: str
    crieur: Crieur
    owner: AsyncClient
    room: str
    members: list[AsyncClient] = field(default_factory=list)

    @property
    def feeds(self) -> Feeds:
        return self.crieur.feeds

    async def ask(self, text: str) -> tuple[str, Event]:
        """Send `text` as a new member of the room (fresh: the per-user rate limit stays far)."""
        member = await self.crieur.synapse.client("reader")
        self.members.append(member)
        await self.owner.room_invite(self.room, member.user_id)
        await SynapseServer.join(member, self.room)
        return await self.crieur.command(member, self.room, text)


@pytest_asyncio.fixture(scope="class", loop_scope="class", params=["fr", "en"])
async def answering(
    request: pytest.FixtureRequest,
    synapse: SynapseServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[AnsweringBot]:
    feed_server = FeedServer()
    await feed_server.start()
    owner = await synapse.client("alice")
    crieur = await make_crieur(synapse, feed_server, tmp_path_factory.mktemp("crieur"))
    answering = AnsweringBot(request.param, crieur, owner, await bot_room(owner, crieur))
    try:
        await crieur.start(language=request.param, rooms={"ile-de-france": [answering.room]})
        await crieur.wait_seeded()
        yield answering
    finally:
        await crieur.stop_all()
        for client in (owner, *answering.members):
            await client.close()
        await feed_server.stop()


def said(language: str, fr: str, en: str) -> str:
    return fr if language == "fr" else en


@pytest.mark.asyncio(loop_scope="class")
class TestReadOnlyCommandsAnswerAsRepliesInTheConfiguredLanguage:
    async def test_help_lists_every_command(self, answering: AnsweringBot) -> None:
        command_id, reply = await answering.ask("!help")

        body = self.check_reply(answering, command_id, reply)
        lang = answering.language
        assert body.startswith(said(lang, "Commandes de Crieur :", "Crieur's commands:"))
        for name in (
            "help",
            "orgs",
            "regions",
            "subscribe",
            "unsubscribe",
            "subscriptions",
            "latest",
            "status",
            "trust",
        ):
            assert any(line.startswith(f"!{name}") for line in body.splitlines()), name
        assert said(lang, "(modérateurs)", "(moderators)") in body

    async def test_orgs_lists_organisations_with_their_region(
        self, answering: AnsweringBot
    ) -> None:
        command_id, reply = await answering.ask("!orgs")

        lines = self.check_reply(answering, command_id, reply).splitlines()
        assert lines[0] == said(answering.language, "Organisations (4) :", "Organisations (4):")
        assert "Parinux (parinux) — Île-de-France" in lines
        assert "Infini (infini) — Bretagne" in lines

    async def test_regions_lists_regions_with_their_number_of_organisations(
        self, answering: AnsweringBot
    ) -> None:
        command_id, reply = await answering.ask("!regions")

        lines = self.check_reply(answering, command_id, reply).splitlines()
        assert lines[0] == said(answering.language, "Régions (3) :", "Regions (3):")
        assert "Île-de-France (ile-de-france) — 2 organisations" in lines
        assert "Bretagne (bretagne) — 1 organisation" in lines

    async def test_subscriptions_shows_the_configured_region(self, answering: AnsweringBot) -> None:
        command_id, reply = await answering.ask("!subscriptions")

        body = self.check_reply(answering, command_id, reply)
        assert body == said(
            answering.language,
            "Ce salon reçoit :\nRégions : Île-de-France",
            "This room receives:\nRegions: Île-de-France",
        )

    async def test_latest_shows_the_organisations_newest_entries(
        self, answering: AnsweringBot
    ) -> None:
        command_id, reply = await answering.ask("!latest PARINUX")

        lines = self.check_reply(answering, command_id, reply).splitlines()
        newest, older = reversed(answering.feeds.initial_titles("parinux"))
        assert lines[0] == said(
            answering.language, "Derniers articles — Parinux :", "Latest posts — Parinux:"
        )
        assert len(lines) == 3
        assert newest in lines[1] and older in lines[2]
        assert said(answering.language, "— Parinux : ", "— Parinux: ") in lines[1]

    async def test_status_shows_the_health_of_the_rooms_feeds(
        self, answering: AnsweringBot
    ) -> None:
        command_id, reply = await answering.ask("!status")

        body = self.check_reply(answering, command_id, reply)
        lines = body.splitlines()
        lang = answering.language
        assert lines[0] == said(
            lang,
            "État des flux que reçoit ce salon :",
            "Health of the feeds this room receives:",
        )
        assert lines[1] == said(
            lang, "En bonne santé : 2 ; en erreur : 0.", "Healthy: 2; failing: 0."
        )
        feeds, encryption, identity = lines[2:-2], lines[-2], lines[-1]
        assert {line.split(" — ")[0] for line in feeds} == {"Parinux", "Ubuntu Paris"}
        assert all(said(lang, "dernier succès", "last success") in line for line in feeds)
        assert encryption == said(
            lang,
            "Chiffrement : activé ; ce salon n'est pas chiffré.",
            "Encryption: on; this room is not encrypted.",
        )
        assert identity.startswith(
            said(lang, "Identité de Crieur : clé maîtresse ", "Crieur's identity: master key ")
        )
        assert identity.endswith(
            said(
                lang,
                "confiance accordée : cross-signed (matrix.trust).",
                "trust: cross-signed (matrix.trust).",
            )
        )

    @staticmethod
    def check_reply(answering: AnsweringBot, command_id: str, reply: Event) -> str:
        """Check that `reply` is the bot's notice answering `command_id`; return its text."""
        relation = content(reply)["m.relates_to"]
        assert relation["m.in_reply_to"]["event_id"] == command_id
        assert sender(reply) == answering.crieur.user_id
        assert content(reply)["msgtype"] == "m.notice"
        return str(content(reply)["body"])


# -- first fetch and restarts ------------------------------------------------------------------


async def test_first_fetch_of_a_feed_posts_nothing(crieur: Crieur, alice: AsyncClient) -> None:
    room = await bot_room(alice, crieur)
    await crieur.start(rooms={"ile-de-france": [room], "bretagne": [room], "france": [room]})

    await crieur.wait_seeded()
    await crieur.quiet()

    assert posts_from(await SynapseServer.timeline(alice, room), crieur.user_id) == []


async def test_feed_added_to_the_configuration_posts_nothing_on_its_first_fetch(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    rooms = {"ile-de-france": [room], "bretagne": [room]}
    bot = await crieur.start(rooms=rooms, organisations=["parinux"])
    await crieur.wait_seeded("parinux")
    await bot.stop()

    await crieur.start(rooms=rooms)  # now with Infini, whose feed already has items
    await crieur.wait_seeded("infini")
    await crieur.quiet("infini")
    assert posts_from(await SynapseServer.timeline(alice, room), crieur.user_id) == []

    title = crieur.feeds.publish("infini", "Permanence du jeudi")
    await crieur.wait_for_titles(alice, room, [title])


async def test_restart_posts_nothing_twice_and_delivers_what_was_published_meanwhile(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    bot = await crieur.start(rooms={"ile-de-france": [room]})
    await crieur.wait_seeded("parinux")
    before = crieur.feeds.publish("parinux", "Avant l'arrêt")
    await crieur.wait_for_titles(alice, room, [before])

    await bot.stop()
    during = crieur.feeds.publish("parinux", "Pendant l'arrêt")
    await crieur.start(rooms={"ile-de-france": [room]})
    await crieur.wait_for_titles(alice, room, [during])
    await crieur.quiet("parinux")

    events = await SynapseServer.timeline(alice, room)
    assert crieur.posts(events, [before, during]) == [before, during]
    assert len(posts_from(events, crieur.user_id)) == 2


async def test_restart_executes_no_command_twice(crieur: Crieur, alice: AsyncClient) -> None:
    room = await bot_room(alice, crieur)
    bot = await crieur.start(rooms={"ile-de-france": [room]})
    subscribe_id, _ = await crieur.command(alice, room, "!subscribe april")

    await bot.stop()
    await crieur.start(rooms={"ile-de-france": [room]})
    _, subscriptions = await crieur.command(alice, room, "!subscriptions")

    assert content(subscriptions)["body"] == (
        "Ce salon reçoit :\nRégions : Île-de-France\nOrganisations : April"
    )
    events = await SynapseServer.timeline(alice, room)
    assert len(replies_to(events, subscribe_id)) == 1


async def test_unsubscribing_a_configured_room_from_its_region_survives_a_restart(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    bot = await crieur.start(rooms={"ile-de-france": [room]})
    _, reply = await crieur.command(alice, room, "!unsubscribe ile-de-france")
    assert content(reply)["body"] == "Ce salon ne suit plus : Île-de-France."

    await bot.stop()
    await crieur.start(rooms={"ile-de-france": [room]})
    _, subscriptions = await crieur.command(alice, room, "!subscriptions")

    assert content(subscriptions)["body"] == (
        "Ce salon ne suit encore rien. Un modérateur peut taper !subscribe."
    )


async def test_command_sent_while_the_bot_was_stopped_is_answered_once_after_restart(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    bot = await crieur.start(rooms={"ile-de-france": [room]})
    await crieur.command(alice, room, "!help")  # the bot is in the room and listening
    await bot.stop()

    command_id = await SynapseServer.send_text(alice, room, "!subscribe april")
    await crieur.start(rooms={"ile-de-france": [room]})
    await crieur.command(alice, room, "!regions")  # answered after the one sent while stopped

    events = await SynapseServer.timeline(alice, room)
    (reply,) = replies_to(events, command_id)
    assert content(reply)["body"] == "Ce salon suit désormais : April."


# -- invites -------------------------------------------------------------------------------------


async def test_invite_from_an_allowed_user_is_accepted(crieur: Crieur, alice: AsyncClient) -> None:
    await crieur.start(accept_invites_from=[alice.user_id])

    room = await bot_room(alice, crieur)

    await wait_for_membership(alice, room, crieur.user_id, "join")


async def test_invite_from_a_user_of_an_allowed_server_is_accepted(
    crieur: Crieur, alice: AsyncClient
) -> None:
    await crieur.start(accept_invites_from=[crieur.synapse.server_name])

    room = await bot_room(alice, crieur)

    await wait_for_membership(alice, room, crieur.user_id, "join")


async def test_invite_from_anyone_else_is_declined(
    crieur: Crieur, alice: AsyncClient, bob: AsyncClient
) -> None:
    await crieur.start(accept_invites_from=[alice.user_id, "example.org"])

    room = await bot_room(bob, crieur)

    await wait_for_membership(bob, room, crieur.user_id, "leave")


# -- hostile summaries ---------------------------------------------------------------------------

HOSTILE_SUMMARY = """
<p>Venez nombreux à notre <strong>assemblée générale</strong> du 12 mars.</p>
<script>alert("xss")</script>
<p><img src="http://127.0.0.1:9/pixel.png" alt="pixel"><img src=x onerror="alert(1)"></p>
<p><a href="javascript:alert(document.cookie)">Inscription</a> et
<a href="https://parinux.example.org/ag" onclick="steal()">le programme</a>.</p>
<iframe src="https://evil.example/"></iframe>
"""


async def test_hostile_summary_arrives_sanitised_with_its_visible_text(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    await crieur.start(rooms={"ile-de-france": [room]})
    await crieur.wait_seeded("parinux")

    title = crieur.feeds.publish("parinux", "Assemblée générale", summary=HOSTILE_SUMMARY)
    events = await crieur.wait_for_titles(alice, room, [title])

    (post,) = posts_from(events, crieur.user_id)
    formatted = content(post)["formatted_body"]
    for banned in ("<script", "alert(", "onerror", "onclick", "javascript:", "<img", "<iframe"):
        assert banned not in formatted.lower(), banned
    assert "pixel.png" not in formatted
    assert "<strong>assemblée générale</strong>" in formatted
    assert '<a href="https://parinux.example.org/ag">le programme</a>' in formatted
    assert "Inscription" in formatted
    assert "Venez nombreux à notre assemblée générale du 12 mars." in content(post)["body"]


# -- the homeserver misbehaving ------------------------------------------------------------------


async def test_entries_published_while_synapse_is_down_all_arrive_once_in_order(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    await crieur.start(rooms={"ile-de-france": [room]})
    await crieur.wait_seeded("parinux")
    before = crieur.feeds.publish("parinux", "Avant la panne")
    await crieur.wait_for_titles(alice, room, [before])

    during: list[str] = []
    async with crieur.synapse.outage():
        for number in range(1, 4):
            during.append(crieur.feeds.publish("parinux", f"Pendant la panne, n° {number}"))
            # Polled and queued before the next one is published.
            await crieur.guard(crieur.feeds.wait_polls(2, ["parinux"]))

    await crieur.wait_for_titles(alice, room, during, timeout=90)
    await crieur.quiet("parinux")
    events = await SynapseServer.timeline(alice, room)
    assert crieur.posts(events, [before, *during]) == [before, *during]


async def test_bot_started_while_synapse_is_down_relays_once_it_is_back(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    async with crieur.synapse.outage():
        starting = asyncio.create_task(
            crieur.start(rooms={"ile-de-france": [room]}, ready_within=90)
        )
        await asyncio.sleep(2)  # a few login attempts fail meanwhile
        assert not starting.done()
    await starting
    await crieur.wait_seeded("parinux")

    title = crieur.feeds.publish("parinux", "Après le démarrage")

    await crieur.wait_for_titles(alice, room, [title])


async def test_entries_queued_for_a_configured_room_arrive_soon_after_the_bot_is_let_in(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await SynapseServer.create_room(alice)  # private, and the bot is not invited yet
    await crieur.start(rooms={"ile-de-france": [room]})
    await crieur.wait_seeded("parinux")
    title = crieur.feeds.publish("parinux", "En attente d'une invitation")
    await crieur.guard(crieur.feeds.wait_polls(2, ["parinux"]))  # queued, and not sendable

    await alice.room_invite(room, crieur.user_id)
    await crieur.guard(wait_for_membership(alice, room, crieur.user_id, "join"))

    await crieur.wait_for_titles(alice, room, [title], timeout=8)


async def test_rate_limited_bot_delivers_every_entry_once_in_order(
    synapse_strict: SynapseServer,
    feed_server: FeedServer,
    tmp_path: Path,
    matrix_client: ClientFactory,
) -> None:
    owner = await matrix_client("alice", server=synapse_strict)
    await synapse_strict.exempt_from_rate_limits(owner.user_id)
    crieur = await make_crieur(synapse_strict, feed_server, tmp_path)
    room = await bot_room(owner, crieur)
    try:
        await crieur.start(rooms={"ile-de-france": [room]}, max_posts_per_poll=8)
        await crieur.wait_seeded("parinux")

        titles = crieur.feeds.publish_many(
            "parinux", [f"Atelier {number} du cycle de printemps" for number in range(1, 9)]
        )
        await crieur.wait_for_titles(owner, room, titles, timeout=90)
        await crieur.quiet("parinux")
    finally:
        await crieur.stop_all()

    events = await SynapseServer.timeline(owner, room)
    assert crieur.posts(events, titles) == titles


# -- health and metrics --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def get(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(url) as response,
    ):
        return response.status, await response.text()


def totals(metrics_text: str, name: str) -> float:
    """Sum of a counter's samples over its labels (`name` without `_total`)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == name
        for sample in family.samples
        if sample.name == f"{name}_total"
    )


async def test_health_answers_200_while_the_bot_runs(crieur: Crieur, alice: AsyncClient) -> None:
    listen = f"127.0.0.1:{free_port()}"
    await crieur.start(http={"listen": listen})

    status, body = await get(f"http://{listen}/health")

    assert status == 200, body
    assert '"ok": true' in body


async def test_metrics_count_polls_and_messages_sent_when_a_feed_gets_a_new_item(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    listen = f"127.0.0.1:{free_port()}"
    await crieur.start(rooms={"ile-de-france": [room]}, http={"listen": listen})
    await crieur.wait_seeded("parinux")
    _, before = await get(f"http://{listen}/metrics")

    title = crieur.feeds.publish("parinux", "Nouvelle permanence")
    await crieur.wait_for_titles(alice, room, [title])
    status, after = await get(f"http://{listen}/metrics")

    assert status == 200
    assert totals(before, "crieur_messages_sent") == 0
    assert totals(after, "crieur_messages_sent") == 1
    assert totals(after, "crieur_polls") > totals(before, "crieur_polls") > 0


async def test_health_answers_503_while_synapse_is_down_and_200_once_it_is_back(
    crieur: Crieur, alice: AsyncClient
) -> None:
    room = await bot_room(alice, crieur)
    listen = f"127.0.0.1:{free_port()}"
    await crieur.start(
        rooms={"ile-de-france": [room]}, http={"listen": listen, "unhealthy_after": "2s"}
    )
    url = f"http://{listen}/health"
    assert (await get(url))[0] == 200

    async def health_is(expected: int) -> bool:
        return (await get(url))[0] == expected

    async with crieur.synapse.outage():
        await crieur.guard(eventually(lambda: health_is(503), 20, what="503", interval=0.5))
    # Something to sync, so that the bot's next long-poll answers at once.
    await SynapseServer.send_text(alice, room, "Synapse est revenu")
    await crieur.guard(eventually(lambda: health_is(200), 60, what="200", interval=0.5))

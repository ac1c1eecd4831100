"""`!filter`: what a person types in a room, what the bot answers, what changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.catalogue import Catalogue
from bot.model import Entry
from bot.store import FoundSource, Store
from tests.test_commands import MEMBER, NOW, ORGANISATIONS, REGIONS, ROOM, Bot

NO_FILTERS = "This room has no filters: it receives everything it follows."


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    """The command handler of test_commands, over a database holding the catalogue's feeds."""
    catalogue = Catalogue(REGIONS, ORGANISATIONS)
    async with await Store.open(tmp_path / "crieur.sqlite3") as store:
        await store.sync_feeds(
            (org.slug, url) for org in catalogue.organisations for url in org.feeds
        )
        yield Bot(store, catalogue)


async def listed(bot: Bot) -> list[str]:
    """The lines of `!filter` naming a scope and its terms, as anyone sees them."""
    lines = (await bot.ask("!filter", sender=MEMBER)).splitlines()
    if not lines[0].startswith("Filters of this room"):
        return []
    return lines[1 : lines.index(next(line for line in lines if line.startswith("An item")))]


def entry(key: str, title: str) -> Entry:
    return Entry(key, title, f"https://april.example/{key}", datetime.fromtimestamp(NOW, UTC), "")


async def test_anyone_lists_a_room_without_filters(bot: Bot) -> None:
    answer = await bot.ask("!filter", sender=MEMBER)
    assert answer.startswith(NO_FILTERS)
    assert '!filter +linux -emploi "logiciel libre"' in answer


async def test_a_moderator_adds_words_and_anyone_sees_them(bot: Bot) -> None:
    answer = await bot.ask("!filter +Linux -emploi")
    assert answer.splitlines()[:3] == [
        "Filter updated: Whole room.",
        "Filters of this room (2/20 words):",
        "Whole room: +Linux, -emploi",
    ]
    assert "one of the + words" in answer
    assert "held back 0 items" in answer
    assert await listed(bot) == ["Whole room: +Linux, -emploi"]


async def test_a_later_filter_adds_to_the_rooms_words(bot: Bot) -> None:
    await bot.ask("!filter +linux")
    answer = await bot.ask("!filter +bsd -LINUX")
    assert "Whole room: -LINUX, +bsd" in answer  # a term given again keeps its place
    assert "(2/20 words)" in answer
    assert (await bot.ask("!filter +bsd")).startswith("Nothing new: Whole room already had")


async def test_a_member_cannot_change_filters_and_nothing_changes(bot: Bot) -> None:
    for command in ("!filter +linux", "!filter clear", "!filter April +linux"):
        answer = await bot.ask(command, sender=MEMBER)
        assert answer == ("Sorry, only this room's moderators can do that (power level 50 needed).")
    await bot.ask("!filter +linux")
    await bot.ask("!filter clear", sender=MEMBER)
    assert await listed(bot) == ["Whole room: +linux"]


async def test_quoted_phrases_are_one_term_each_whichever_the_quotes(bot: Bot) -> None:
    answer = await bot.ask('!filter +"logiciel libre" -« offre d\'emploi » “install party”')
    assert "(3/20 words)" in answer
    assert await listed(bot) == [
        'Whole room: +"logiciel libre", -"offre d\'emploi", +"install party"'
    ]


async def test_the_source_is_an_organisation_or_region_named_ignoring_case_and_accents(
    bot: Bot,
) -> None:
    await bot.ask("!filter GUTENBERG +tex")
    await bot.ask("!filter ile de france -emploi")
    await bot.ask("!filter +libre")
    assert await listed(bot) == [
        "Whole room: +libre",
        "GUTenberg: +tex",
        "Île-de-France: -emploi",
    ]


async def test_the_source_may_be_one_of_the_rooms_own_feeds_by_title_or_url(bot: Bot) -> None:
    await bot.store.add_room_source(
        ROOM,
        "https://lug.example/",
        FoundSource("https://lug.example/feed/", "Mon LUG", None, []),
        now=NOW,
        next_poll=NOW + 60,
    )
    await bot.ask("!filter mon lug -emploi")
    await bot.ask("!filter https://lug.example/feed/ +atelier")
    assert await listed(bot) == ["Mon LUG: -emploi, +atelier"]
    answer = await bot.ask("!filter https://elsewhere.example/ +x")
    assert answer == "This room follows no feed at https://elsewhere.example/."


async def test_an_unknown_source_gets_suggestions(bot: Bot) -> None:
    answer = await bot.ask("!filter Framasfot +linux")
    assert answer.startswith("Unknown name “Framasfot”. Did you mean")
    assert "Framasoft" in answer
    assert await listed(bot) == []


async def test_clear_removes_every_filter_or_one_sources(bot: Bot) -> None:
    await bot.ask("!filter +linux")
    await bot.ask("!filter april -emploi")
    answer = await bot.ask("!filter clear April")
    assert answer.startswith("The filter “April” is removed.")
    assert await listed(bot) == ["Whole room: +linux"]
    assert await bot.ask("!filter clear") == (
        "All of this room's filters are removed: it receives everything again."
    )
    assert (await bot.ask("!filter", sender=MEMBER)).startswith(NO_FILTERS)
    assert await bot.ask("!filter clear") == "There was no filter to remove."


async def test_at_most_twenty_words_per_room_phrases_counting_one(bot: Bot) -> None:
    words = " ".join(f"+w{n}" for n in range(17))
    await bot.ask(f"!filter {words}")
    await bot.ask('!filter april +"un deux trois" -"quatre cinq"')
    answer = await bot.ask("!filter framasoft +a +b")
    assert answer == (
        "A room has at most 20 filter words (a phrase counts as one): this room has 19, "
        "these would add 2. Remove some first with !filter clear."
    )
    assert "(19/20 words)" in await bot.ask("!filter", sender=MEMBER)
    assert "(20/20 words)" in await bot.ask("!filter +a +w0")


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (
            '!filter +"logiciel libre',
            'A quote is not closed: "logiciel libre. Write a phrase between quotes, for '
            'example !filter +linux -emploi "logiciel libre".',
        ),
        ("!filter + linux", "A “+” with no word after it."),
        (
            "!filter +linux emploi",
            "“emploi”: put + (keep) or - (leave out) before each word, the source if any "
            'first, for example !filter +linux -emploi "logiciel libre".',
        ),
        ("!filter +!!!", "“+!!!” holds no letter or digit: filters look for words."),
        ("!filter +linux -Linux", "“Linux” is given both with + and with -."),
        (
            '!filter +"a b c d e f g h i"',
            '“+"a b c d e f g h i"” is too long: a phrase has at most 8 words.',
        ),
        (
            "!filter linux",
            "No word to filter on: put + (keep) or - (leave out) before each word, for "
            'example !filter +linux -emploi "logiciel libre".',
        ),
    ],
)
async def test_malformed_input_is_answered_and_changes_nothing(
    bot: Bot, command: str, answer: str
) -> None:
    assert await bot.ask(command) == answer
    assert (await bot.ask("!filter", sender=MEMBER)).startswith(NO_FILTERS)


async def test_status_says_how_many_items_filters_held_back(bot: Bot) -> None:
    store = bot.store
    await store.follow(ROOM, "organisation", "april", now=NOW)
    (april,) = await store.feeds(["april"])
    options = {
        "now": NOW,
        "next_poll": NOW + 1800,
        "max_age": 86400.0,
        "max_posts": 5,
        "etag": None,
        "last_modified": None,
        "body_hash": None,
    }
    await store.record_poll(april, "france", [entry("old", "Old")], **options)  # type: ignore[arg-type]
    assert "Filters (" not in await bot.ask("!status", sender=MEMBER)
    await bot.ask("!filter +linux")
    new = [entry("a", "Atelier Linux"), entry("b", "Windows"), entry("c", "Mac")]
    await store.record_poll(april, "france", new, **options)  # type: ignore[arg-type]

    assert "Filters (1/20 words): 2 items held back so far." in await bot.ask(
        "!status", sender=MEMBER
    )
    assert "The filters have held back 2 items so far." in await bot.ask("!filter")


async def test_answers_in_french(bot: Bot) -> None:
    bot = Bot(bot.store, Catalogue(REGIONS, ORGANISATIONS), language="fr")
    answer = await bot.ask("!filtre +logiciel -emploi")
    assert answer.splitlines()[:3] == [
        "Filtre mis à jour : Tout le salon.",
        "Filtres de ce salon (2/20 mots) :",
        "Tout le salon : +logiciel, -emploi",
    ]
    assert await bot.ask("!filter +x +y -x") == "« x » est donné à la fois avec + et avec -."

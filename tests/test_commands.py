"""Chat commands: what a person types in a room and what the bot answers and changes."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.catalogue import Catalogue
from bot.commands import Arguments, Commands, Context, Registry, Reply, build_registry
from bot.config import Language, Organisation, Region
from bot.i18n import t
from bot.model import Entry
from bot.store import Store
from tests.clock import Clock

NOW = datetime(2026, 1, 9, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0
ROOM = "!room:example.org"
OTHER_ROOM = "!other:example.org"
MODERATOR = "@mod:example.org"
MEMBER = "@member:example.org"
ADMIN = "@admin:example.org"
MASTER_KEY = "Q2dD8ZJ9oHqsZ1sXvL0Xn3qY7m4bN0c5dE6fG7hI8jK"

REGIONS = {
    "france": Region("france", "France"),
    "ile-de-france": Region("ile-de-france", "Île-de-France"),
    "bretagne": Region("bretagne", "Bretagne"),
    "pays-de-la-loire": Region("pays-de-la-loire", "Pays de la Loire"),
}
ORGANISATIONS = {
    "april": Organisation("april", "April", "france", feeds=("https://april.example/rss",)),
    "framasoft": Organisation(
        "framasoft", "Framasoft", "france", feeds=("https://framablog.example/feed/",)
    ),
    "gutenberg": Organisation(
        "gutenberg", "GUTenberg", "france", feeds=("https://gutenberg.example/feed",)
    ),
    "parinux": Organisation(
        "parinux", "Parinux", "ile-de-france", feeds=("https://parinux.example/rss",)
    ),
    "alliance-libre": Organisation(
        "alliance-libre",
        "Alliance Libre",
        "pays-de-la-loire",
        feeds=("https://alliance-libre.example/feed",),
    ),
}


class Bot:
    """The command handler as a room sees it, with power levels and a clock of its own.

    It is also the handler's view of the rooms: power levels from `levels`, whether the bot
    and the room encrypt from `encrypts`, the trust policy and identity from `policy` and
    `master`, and the pins from `pins` (what `!trust reset` forgot lands in `resets`).
    """

    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        *,
        language: Language = "en",
        levels: Mapping[str, int] | None = None,
    ) -> None:
        self.store = store
        self.clock = Clock(NOW)
        self.levels = dict(levels or {MODERATOR: 50, MEMBER: 0, ADMIN: 0})
        self.encrypts = (False, False)
        self.policy: str | None = "cross-signed"
        self.master: str | None = MASTER_KEY
        self.pins: dict[str, str] = {}
        self.resets: list[str] = []
        self.commands = Commands(
            store,
            catalogue,
            language=language,
            prefix="!",
            admins=[ADMIN],
            manage_power_level=50,
            clock=self.clock,
        )

    async def power_level(self, room_id: str, user_id: str) -> int:
        return self.levels.get(user_id, 0)

    def encryption(self, room_id: str) -> tuple[bool, bool]:
        return self.encrypts

    def trust_policy(self) -> str | None:
        return self.policy if self.encrypts[0] else None

    def master_key(self) -> str | None:
        return self.master if self.encrypts[0] else None

    async def reset_trust(self, user_id: str) -> str | None:
        self.resets.append(user_id)
        return self.pins.pop(user_id, None)

    async def call(self, body: str, sender: str = MODERATOR, room: str = ROOM) -> Reply | None:
        return await self.commands(self, room, sender, "$event", body)

    async def ask(self, body: str, sender: str = MODERATOR, room: str = ROOM) -> str:
        """Send a command at a calm pace (no rate limit) and return the plain answer."""
        text, _ = await self.ask_html(body, sender, room)
        return text

    async def ask_html(
        self, body: str, sender: str = MODERATOR, room: str = ROOM
    ) -> tuple[str, str | None]:
        self.clock.now += 10
        reply = await self.call(body, sender, room)
        assert reply is not None, body
        return reply.text, reply.html


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue(REGIONS, ORGANISATIONS)


@pytest.fixture
async def store(tmp_path: Path, catalogue: Catalogue) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "crieur.sqlite3")
    await db.sync_feeds((org.slug, url) for org in catalogue.organisations for url in org.feeds)
    yield db
    await db.close()


@pytest.fixture
def bot(store: Store, catalogue: Catalogue) -> Bot:
    return Bot(store, catalogue)


def entry(key: str, *, hours_ago: float, title: str | None = None) -> Entry:
    published = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=hours_ago)
    return Entry(
        key, title or f"Post {key}", f"https://example.org/{key}", published, "<p>text</p>"
    )


async def poll(store: Store, organisation: str, entries: list[Entry], *, now: float = NOW) -> int:
    """Record a successful poll of the organisation's feed; return the outbox rows added."""
    (feed,) = await store.feeds([organisation])
    record = await store.record_poll(
        feed,
        {**ORGANISATIONS, "lug974": LUG974}[organisation].region,
        entries,
        now=now,
        next_poll=now + 1800,
        max_age=7 * DAY,
        max_posts=10,
        etag=None,
        last_modified=None,
        body_hash=None,
    )
    return record.deliveries


async def publish(store: Store, organisation: str, entries: list[Entry]) -> None:
    """Seed the feed with an old entry, then record `entries` as new ones."""
    await poll(store, organisation, [entry(f"{organisation}-seed", hours_ago=1000)])
    await poll(store, organisation, entries)


# -- help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["fr", "en"])
async def test_help_lists_every_command_and_marks_moderators_only_ones(
    store: Store, catalogue: Catalogue, language: Language
) -> None:
    bot = Bot(store, catalogue, language=language)
    text, markup = await bot.ask_html("!help", sender=MEMBER)
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("!")}
    marker = t(language, "help.moderators_only")
    specs = build_registry().specs
    assert set(lines) == {f"!{spec.name}" for spec in specs}
    for spec in specs:
        line = lines[f"!{spec.name}"]
        assert t(language, spec.description) in line
        only_moderators = spec.changes_state and not spec.admins_only
        assert (marker in line) == (only_moderators and not spec.reads_when_bare)
    assert {"!subscribe", "!unsubscribe"} == {
        name for name, line in lines.items() if marker in line
    }
    assert t(language, "help.moderators_to_change") in lines["!filter"]
    assert t(language, "help.admins_only") in lines["!trust"]
    assert t(language, "help.header") in text
    assert markup is not None and "<code>!subscribe " in markup


def test_a_name_or_alias_cannot_be_declared_twice() -> None:
    registry = build_registry()
    with pytest.raises(ValueError, match="taken"):
        registry.declare("Abonnéments", registry.help)


async def test_a_registry_built_apart_answers_only_its_own_commands(
    store: Store, catalogue: Catalogue
) -> None:
    registry = Registry()

    async def ping(ctx: Context, args: Arguments) -> Reply:
        return Reply(f"pong {args.text}")

    registry.declare("ping", ping)
    bot = Bot(store, catalogue)
    bot.commands = Commands(
        store,
        catalogue,
        language="en",
        prefix="!",
        admins=(),
        manage_power_level=50,
        clock=bot.clock,
        registry=registry,
    )
    assert await bot.ask("!ping « a b »") == "pong a b"
    assert await bot.call("!help") is None
    assert "ping" not in {spec.name for spec in build_registry().specs}


# -- subscribe and permissions --------------------------------------------------------------------


async def test_moderator_subscribes_the_room_to_an_organisation_and_a_region(
    bot: Bot, store: Store
) -> None:
    answer = await bot.ask("!subscribe april ile-de-france")
    subscriptions = await store.subscriptions(ROOM)
    assert subscriptions.organisations == ("april",)
    assert subscriptions.regions == ("ile-de-france",)
    assert answer == "This room now follows: April and Île-de-France."


async def test_member_without_power_is_refused_and_nothing_changes(bot: Bot, store: Store) -> None:
    answer = await bot.ask("!subscribe april", sender=MEMBER)
    assert answer == t("en", "error.permission", level=50)
    subscriptions = await store.subscriptions(ROOM)
    assert subscriptions.organisations == subscriptions.regions == ()


async def test_member_cannot_unsubscribe_either(bot: Bot, store: Store) -> None:
    await bot.ask("!subscribe april")
    answer = await bot.ask("!unsubscribe april", sender=MEMBER)
    assert answer == t("en", "error.permission", level=50)
    assert (await store.subscriptions(ROOM)).organisations == ("april",)


async def test_configured_admin_with_power_level_zero_may_subscribe(bot: Bot, store: Store) -> None:
    await bot.ask("!subscribe framasoft", sender=ADMIN)
    assert (await store.subscriptions(ROOM)).organisations == ("framasoft",)


async def test_power_level_is_checked_in_the_room_of_the_command(
    store: Store, catalogue: Catalogue
) -> None:
    class ModeratorElsewhere(Bot):
        async def power_level(self, room_id: str, user_id: str) -> int:
            return 100 if room_id == OTHER_ROOM else 0

    bot = ModeratorElsewhere(store, catalogue)
    await bot.ask("!subscribe april", room=ROOM)
    await bot.ask("!subscribe april", room=OTHER_ROOM)
    assert (await store.subscriptions(ROOM)).organisations == ()
    assert (await store.subscriptions(OTHER_ROOM)).organisations == ("april",)


@pytest.mark.parametrize(
    ("typed", "kind", "slug"),
    [
        ("GUTenberg", "organisation", "gutenberg"),
        ("gutenberg", "organisation", "gutenberg"),
        ("GUTENBERG", "organisation", "gutenberg"),
        ("Île-de-France", "region", "ile-de-france"),
        ("ile-de-france", "region", "ile-de-france"),
        ("ILE DE FRANCE", "region", "ile-de-france"),
        ("« Île de France »", "region", "ile-de-france"),
        ('"ile de france"', "region", "ile-de-france"),
        ("alliance libre", "organisation", "alliance-libre"),
    ],
)
async def test_names_match_ignoring_case_accents_and_punctuation(
    bot: Bot, store: Store, typed: str, kind: str, slug: str
) -> None:
    await bot.ask(f"!subscribe {typed}")
    subscriptions = await store.subscriptions(ROOM)
    followed = subscriptions.regions if kind == "region" else subscriptions.organisations
    assert followed == (slug,)


async def test_several_names_with_spaces_are_told_apart(bot: Bot, store: Store) -> None:
    await bot.ask('!subscribe ile de france april "pays de la loire" alliance libre')
    subscriptions = await store.subscriptions(ROOM)
    assert subscriptions.regions == ("ile-de-france", "pays-de-la-loire")
    assert subscriptions.organisations == ("alliance-libre", "april")


async def test_subscribing_again_says_the_room_already_follows_it(bot: Bot) -> None:
    await bot.ask("!subscribe april")
    answer = await bot.ask("!subscribe april bretagne")
    assert answer.splitlines() == [
        "This room now follows: Bretagne.",
        "This room already follows: April.",
    ]


async def test_subscribing_works_in_french_with_a_french_alias(
    store: Store, catalogue: Catalogue
) -> None:
    bot = Bot(store, catalogue, language="fr")
    answer = await bot.ask("!abonner april")
    assert answer == "Ce salon suit désormais : April."


# -- unsubscribe and mutes ------------------------------------------------------------------------


async def test_unsubscribing_an_organisation_inside_a_followed_region_mutes_it(
    bot: Bot, store: Store
) -> None:
    await bot.ask("!subscribe france")
    answer = await bot.ask("!unsubscribe april")
    assert answer == t("en", "unsubscribe.muted", organisation="April", region="France")
    subscriptions = await store.subscriptions(ROOM)
    assert subscriptions.regions == ("france",)
    assert subscriptions.muted == ("april",)
    # Routing now skips April in this room, while the rest of France still arrives.
    await poll(store, "april", [entry("a0", hours_ago=50)])
    await poll(store, "framasoft", [entry("f0", hours_ago=50)])
    assert await poll(store, "april", [entry("a1", hours_ago=1)]) == 0
    assert await poll(store, "framasoft", [entry("f1", hours_ago=1)]) == 1


async def test_unsubscribing_an_organisation_followed_by_name_stops_it(
    bot: Bot, store: Store
) -> None:
    await bot.ask("!subscribe april framasoft")
    answer = await bot.ask("!unsubscribe april")
    assert answer == "This room no longer follows: April."
    subscriptions = await store.subscriptions(ROOM)
    assert subscriptions.organisations == ("framasoft",)
    assert subscriptions.muted == ()


async def test_unsubscribing_a_region_and_one_of_its_organisations_mutes_nothing(
    bot: Bot, store: Store
) -> None:
    await bot.ask("!subscribe france april")
    await bot.ask("!unsubscribe april france")
    assert await store.subscriptions(ROOM) == await store.subscriptions(OTHER_ROOM)


async def test_unsubscribing_what_the_room_does_not_follow_says_so(bot: Bot, store: Store) -> None:
    answer = await bot.ask("!unsubscribe parinux bretagne")
    assert answer.splitlines() == [
        t("en", "unsubscribe.not_subscribed", name="Bretagne"),
        t("en", "unsubscribe.not_subscribed", name="Parinux"),
    ]
    assert (await store.subscriptions(ROOM)).muted == ()


async def test_subscribing_a_muted_organisation_lifts_the_mute(bot: Bot, store: Store) -> None:
    await bot.ask("!subscribe france")
    await bot.ask("!unsubscribe april")
    answer = await bot.ask("!subscribe April")
    assert t("en", "subscribe.unmuted", name="April") in answer.splitlines()
    assert (await store.subscriptions(ROOM)).muted == ()
    await poll(store, "april", [entry("a0", hours_ago=50)])
    assert await poll(store, "april", [entry("a1", hours_ago=1)]) == 1


# -- unknown names and commands -------------------------------------------------------------------


async def test_unknown_name_gets_suggestions_and_nothing_changes(bot: Bot, store: Store) -> None:
    answer = await bot.ask("!subscribe framasoft aprill")
    assert answer == "Unknown name “aprill”. Did you mean “April”?"
    assert (await store.subscriptions(ROOM)).organisations == ()


async def test_unknown_multi_word_name_is_reported_whole(bot: Bot) -> None:
    answer = await bot.ask("!subscribe ile de fronce april")
    assert answer == "Unknown name “ile de fronce”. Did you mean “Île-de-France”?"


async def test_unknown_name_without_a_near_miss_points_to_the_listings(bot: Bot) -> None:
    answer = await bot.ask("!latest zzzzqqq")
    assert answer == t(
        "en", "error.unknown_name.no_suggestion", name="zzzzqqq", orgs="!orgs", regions="!regions"
    )


@pytest.mark.parametrize(
    ("body", "meant"),
    [
        ("!subscrib april", "!subscribe"),  # a deletion
        ("!subscirbe april", "!subscribe"),  # a swap of neighbours
        ("!stauts", "!status"),
        ("!Satuts", "!status"),  # two edits from a name longer than 5 letters
        ("!hepl", "!help"),  # one edit from a name of up to 5 letters
        ("!abonnner april", "!abonner"),  # an alias is suggested as typed
        ("!ÉTATS", "!etat"),  # case and accents ignored
    ],
)
async def test_a_near_miss_of_a_command_gets_did_you_mean(bot: Bot, body: str, meant: str) -> None:
    word = body.split()[0]
    assert await bot.ask(body) == f"Unknown command “{word}”. Did you mean “{meant}”?"


async def test_a_near_miss_of_several_commands_names_each_once_nearest_first(bot: Bot) -> None:
    assert await bot.ask("!subx") == "Unknown command “!subx”. Did you mean “!sub” or “!subs”?"
    # "etat" is the nearest word of !status, one edit away ("status" is two).
    assert await bot.ask("!stat") == "Unknown command “!stat”. Did you mean “!etat”?"


async def test_a_near_miss_is_answered_in_french(store: Store, catalogue: Catalogue) -> None:
    bot = Bot(store, catalogue, language="fr")
    assert await bot.ask("!abonements") == (
        "Commande inconnue : « !abonements ». Vouliez-vous dire « !abonnements » ?"
    )


async def test_a_near_miss_of_a_moderators_command_is_answered_to_anyone(bot: Bot) -> None:
    answer = await bot.ask("!subscibe april", sender=MEMBER)
    assert answer == "Unknown command “!subscibe”. Did you mean “!subscribe”?"


@pytest.mark.parametrize(
    "body",
    [
        "!fun",
        "!rss subscribe https://example.org/feed/",
        "!ping",
        "!weather Paris",
        "!xyzzy",
        "!hpel",  # two edits from a name of 4 letters
        "!statusxyz",  # three edits from a name of 6 letters
        "!subscriptionssss",
        "!" + "y" * 5000,
    ],
)
async def test_other_bots_commands_and_far_misses_get_no_answer(bot: Bot, body: str) -> None:
    bot.clock.now += 10
    assert await bot.call(body) is None


async def test_other_bots_commands_spend_nothing_of_the_rate_limit(bot: Bot) -> None:
    for _ in range(20):
        assert await bot.call("!fun", sender=MEMBER) is None
    reply = await bot.call("!help", sender=MEMBER)
    assert reply is not None and reply.text.startswith("Crieur")


def test_near_misses_allow_one_edit_up_to_five_letters_and_two_beyond() -> None:
    registry = build_registry()
    assert registry.near_misses("ogrs") == ["orgs"]
    assert registry.near_misses("xrgx") == []
    assert registry.near_misses("regoins") == ["regions"]
    assert registry.near_misses("rgeoins") == ["regions"]
    assert registry.near_misses("rgeoinss") == []


@pytest.mark.parametrize("body", ["!SUBSCRIPTIONS", "!Subscriptions", "!abonnements", "!subs"])
async def test_command_names_ignore_case_and_accents(bot: Bot, body: str) -> None:
    assert await bot.ask(body) == t("en", "subscriptions.none", command="!subscribe")


async def test_french_aliases_may_carry_their_accents(bot: Bot, store: Store) -> None:
    await bot.ask("!subscribe april")
    await bot.ask("!Désabonner april")
    assert (await store.subscriptions(ROOM)).organisations == ()


@pytest.mark.parametrize("body", ["hello", "! help", "!!!", "!", "!…", "  "])
async def test_text_that_is_not_a_command_gets_no_answer(bot: Bot, body: str) -> None:
    assert await bot.call(body) is None


# -- subscriptions, orgs, regions ------------------------------------------------------------------


async def test_subscriptions_lists_regions_organisations_and_muted_ones(bot: Bot) -> None:
    await bot.ask("!subscribe france bretagne parinux")
    await bot.ask("!unsubscribe gutenberg")
    answer = await bot.ask("!subscriptions", sender=MEMBER)
    assert answer.splitlines() == [
        "This room receives:",
        "Regions: Bretagne and France",
        "Organisations: Parinux",
        "Muted: GUTenberg",
    ]


async def test_subscriptions_of_a_room_that_follows_nothing_invites_to_subscribe(
    store: Store, catalogue: Catalogue
) -> None:
    bot = Bot(store, catalogue, language="fr")
    answer = await bot.ask("!subscriptions")
    assert answer == "Ce salon ne suit encore rien. Un modérateur peut taper !subscribe."


async def test_orgs_lists_every_organisation_with_its_region(bot: Bot) -> None:
    answer = await bot.ask("!orgs", sender=MEMBER)
    lines = answer.splitlines()
    assert lines[0] == "Organisations (5):"
    assert "Parinux (parinux) — Île-de-France" in lines
    assert "GUTenberg (gutenberg) — France" in lines
    assert len(lines) == 6


async def test_orgs_filtered_by_a_region(bot: Bot) -> None:
    answer = await bot.ask("!orgs ile de france")
    assert answer.splitlines() == [
        "Organisations matching “Île-de-France” (1):",
        "Parinux (parinux) — Île-de-France",
    ]


async def test_orgs_filtered_by_a_text(bot: Bot) -> None:
    answer = await bot.ask("!orgs SOFT")
    assert answer.splitlines() == [
        "Organisations matching “SOFT” (1):",
        "Framasoft (framasoft) — France",
    ]


async def test_orgs_with_no_match_says_so(bot: Bot) -> None:
    assert await bot.ask("!orgs nothing-like-this") == t(
        "en", "orgs.none", filter="nothing-like-this"
    )


async def test_long_organisation_listings_are_capped(store: Store) -> None:
    many = {
        f"org-{n:03}": Organisation(
            f"org-{n:03}", f"Org {n:03}", "france", feeds=(f"https://o{n}.example/",)
        )
        for n in range(120)
    }
    bot = Bot(store, Catalogue({"france": REGIONS["france"]}, many))
    lines = (await bot.ask("!orgs")).splitlines()
    assert lines[0] == "Organisations (120):"
    assert lines[-1] == t("en", "orgs.truncated", count=70)
    assert len(lines) == 52


async def test_regions_lists_each_region_with_its_number_of_organisations(
    store: Store, catalogue: Catalogue
) -> None:
    bot = Bot(store, catalogue, language="fr")
    answer = await bot.ask("!regions")
    assert answer.splitlines() == [
        "Régions (4) :",
        "Bretagne (bretagne) — 0 organisation",
        "France (france) — 3 organisations",
        "Île-de-France (ile-de-france) — 1 organisation",
        "Pays de la Loire (pays-de-la-loire) — 1 organisation",
    ]


# -- latest ---------------------------------------------------------------------------------------


@pytest.fixture
async def posts(store: Store) -> None:
    await publish(store, "april", [entry(f"a{n}", hours_ago=10 - n) for n in range(7)])
    await publish(store, "framasoft", [entry("f1", hours_ago=0.5)])


@pytest.mark.usefixtures("posts")
async def test_latest_shows_three_posts_by_default_newest_first(bot: Bot) -> None:
    text, markup = await bot.ask_html("!latest april", sender=MEMBER)
    lines = text.splitlines()
    assert lines[0] == "Latest posts — April:"
    assert len(lines) == 4
    assert lines[1].endswith("April: Post a6 — https://example.org/a6")
    assert lines[3].endswith("April: Post a4 — https://example.org/a4")
    assert lines[1].startswith("Friday 9 January 2026, 09:00 — ")  # 08:00 UTC
    assert markup is not None and '<a href="https://example.org/a6">Post a6</a>' in markup


async def test_latest_shows_no_invisible_character_of_a_stored_link(store: Store, bot: Bot) -> None:
    # Links stored before the parser encoded them still reach the answer encoded.
    hidden = dataclasses.replace(
        entry("rlo", hours_ago=1), link="https://example.org/\u202emoc.elgoog"
    )
    await publish(store, "april", [hidden])
    text, markup = await bot.ask_html("!latest april 1")
    assert "\u202e" not in text and "https://example.org/%E2%80%AEmoc.elgoog" in text
    assert markup is not None and "\u202e" not in markup


@pytest.mark.usefixtures("posts")
async def test_latest_shows_up_to_five_posts(bot: Bot) -> None:
    lines = (await bot.ask("!latest april 5")).splitlines()
    assert len(lines) == 6


@pytest.mark.usefixtures("posts")
async def test_latest_of_a_region_mixes_its_organisations(bot: Bot) -> None:
    lines = (await bot.ask("!latest France 2")).splitlines()
    assert lines[0] == "Latest posts — France:"
    assert "Framasoft: Post f1" in lines[1]
    assert "April: Post a6" in lines[2]


@pytest.mark.usefixtures("posts")
@pytest.mark.parametrize("count", ["0", "abc", "99", "6", "-1", "3.5", "\u0663"])
async def test_latest_rejects_a_count_outside_one_to_five(bot: Bot, count: str) -> None:
    answer = await bot.ask(f"!latest april {count}")
    assert answer == t("en", "error.invalid_number", value=count, max=5)


async def test_latest_of_an_organisation_without_posts_says_so(bot: Bot) -> None:
    assert await bot.ask("!latest parinux") == t("en", "latest.none", name="Parinux")


async def test_latest_escapes_feed_text_and_links_only_web_addresses(
    bot: Bot, store: Store
) -> None:
    hostile = Entry("x", "<script>alert(1)</script> & co", "javascript:alert(1)", None, "<p>x</p>")
    await publish(store, "parinux", [hostile])
    text, markup = await bot.ask_html("!latest parinux 1")
    assert markup is not None
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    assert "javascript:" not in markup and "href" not in markup
    assert t("en", "latest.undated") in text


# -- status ---------------------------------------------------------------------------------------


async def fail(store: Store, organisation: str, times: int, error: str) -> None:
    (feed,) = await store.feeds([organisation])
    for _ in range(times):
        await store.record_failure(feed.id, now=NOW, error=error, next_poll=NOW + 3600)


async def test_status_shows_a_failing_feed_with_its_last_error(bot: Bot, store: Store) -> None:
    await bot.ask("!subscribe france")
    await poll(store, "framasoft", [entry("f0", hours_ago=1)], now=NOW - 3 * DAY)
    await fail(store, "april", 3, "HTTP 500 Internal Server Error")
    await fail(store, "framasoft", 1, "timeout")
    text, markup = await bot.ask_html("!status", sender=MEMBER)
    lines = text.splitlines()
    assert lines[:2] == [t("en", "status.header"), "Healthy: 1; failing: 2."]
    april = next(
        line for line in lines if line.startswith(("April", "⚠ failing for a long time — April"))
    )
    assert "never fetched successfully" in april
    assert "3 consecutive errors" in april
    assert "last error: HTTP 500 Internal Server Error" in april
    framasoft = next(line for line in lines if "Framasoft" in line)
    # Three days without a success stands out.
    assert framasoft.startswith("⚠ failing for a long time — Framasoft")
    assert "last success: Tuesday 6 January 2026, 13:00" in framasoft
    assert "GUTenberg" in text  # few feeds: the healthy ones are listed too
    assert "Parinux" not in text  # not received here
    assert markup is not None and "<b>April</b>" in markup


async def test_status_masks_the_secrets_of_urls_in_errors(bot: Bot, store: Store) -> None:
    await bot.ask("!subscribe france")
    await fail(store, "april", 1, "https://april.example/rss?token=t0k3n: HTTP 500")
    text, markup = await bot.ask_html("!status", sender=MEMBER)
    assert "https://april.example/rss?token=***: HTTP 500" in text
    assert "t0k3n" not in text and markup is not None and "t0k3n" not in markup


async def test_status_skips_muted_organisations(bot: Bot, store: Store) -> None:
    await bot.ask("!subscribe france")
    await bot.ask("!unsubscribe april")
    await fail(store, "april", 2, "HTTP 404")
    answer = await bot.ask("!status")
    assert "April" not in answer
    assert "Healthy: 2; failing: 0." in answer


async def test_status_shows_the_room_pause_and_pending_messages(bot: Bot, store: Store) -> None:
    await bot.ask("!subscribe april")
    await poll(store, "april", [entry("a0", hours_ago=50)])
    await poll(store, "april", [entry("a1", hours_ago=1)])
    await store.pause_room(ROOM, now=NOW, reason="M_FORBIDDEN: not allowed to send")
    lines = (await bot.ask("!status")).splitlines()
    assert (
        "Delivery to this room has been paused since Friday 9 January 2026, 13:00: "
        "M_FORBIDDEN: not allowed to send"
    ) in lines
    assert t("en", "status.pending", count=1) in lines


# -- time zones -----------------------------------------------------------------------------------

REUNION = Region("la-reunion", "La Réunion", timezone="Indian/Reunion")
LUG974 = Organisation("lug974", "LUG 974", "la-reunion", feeds=("https://lug974.example/feed",))


@pytest.fixture
async def reunion_bot(tmp_path: Path) -> AsyncIterator[Bot]:
    catalogue = Catalogue({**REGIONS, "la-reunion": REUNION}, {**ORGANISATIONS, "lug974": LUG974})
    db = await Store.open(tmp_path / "reunion.sqlite3")
    await db.sync_feeds((org.slug, url) for org in catalogue.organisations for url in org.feeds)
    yield Bot(db, catalogue, language="fr")
    await db.close()


async def test_latest_shows_a_reunion_post_in_reunion_time_named(reunion_bot: Bot) -> None:
    await publish(reunion_bot.store, "lug974", [entry("r1", hours_ago=4)])  # 08:00 UTC
    lines = (await reunion_bot.ask("!latest lug974 1")).splitlines()
    assert lines[1].startswith("vendredi 9 janvier 2026 à 12 h 00 (heure de La Réunion, UTC+4) — ")


async def test_latest_of_a_region_in_the_default_zone_leaves_the_zone_unnamed(
    reunion_bot: Bot,
) -> None:
    await publish(reunion_bot.store, "april", [entry("a1", hours_ago=4)])
    lines = (await reunion_bot.ask("!latest april 1")).splitlines()
    assert lines[1].startswith("vendredi 9 janvier 2026 à 9 h 00 — ")


async def test_status_shows_a_reunion_feed_and_the_rooms_pause_in_reunion_time(
    reunion_bot: Bot,
) -> None:
    store = reunion_bot.store
    await reunion_bot.ask("!subscribe la-reunion france")
    await poll(store, "lug974", [entry("r0", hours_ago=1)], now=NOW - 3600)
    await store.pause_room(ROOM, now=NOW, reason="M_FORBIDDEN")
    text = await reunion_bot.ask("!status")
    # The feed belongs to La Réunion; the room's first followed region is La Réunion too.
    assert "dernier succès : vendredi 9 janvier 2026 à 15 h 00 (heure de La Réunion, UTC+4)" in text
    assert (
        "en pause depuis le vendredi 9 janvier 2026 à 16 h 00 (heure de La Réunion, UTC+4)" in text
    )


async def test_a_rooms_own_dates_follow_its_first_followed_region(reunion_bot: Bot) -> None:
    await reunion_bot.ask("!subscribe france")
    await reunion_bot.ask("!subscribe la-reunion")
    await reunion_bot.store.pause_room(ROOM, now=NOW, reason="M_FORBIDDEN")
    text = await reunion_bot.ask("!status")
    assert "en pause depuis le vendredi 9 janvier 2026 à 13 h 00 :" in text


async def test_status_of_a_room_that_receives_nothing_says_so(bot: Bot) -> None:
    assert await bot.ask("!status") == "\n".join(
        [t("en", "status.header"), t("en", "status.none"), t("en", "status.encryption_off")]
    )


@pytest.mark.parametrize(
    ("encrypts", "line"),
    [
        ((False, False), "status.encryption_off"),
        ((False, True), "status.encryption_off"),
        ((True, True), "status.encryption_on_encrypted"),
        ((True, False), "status.encryption_on_plain"),
    ],
)
async def test_status_says_whether_the_bot_and_the_room_encrypt(
    bot: Bot, encrypts: tuple[bool, bool], line: str
) -> None:
    bot.encrypts = encrypts
    assert t("en", line) in (await bot.ask("!status")).splitlines()


async def test_status_shows_the_bots_identity_and_trust_policy(bot: Bot) -> None:
    bot.encrypts = (True, True)
    lines = (await bot.ask("!status")).splitlines()
    identity = t("en", "status.identity", master_key="Q2dD 8ZJ9 oHqs…", policy="cross-signed")
    assert lines[-1] == identity
    bot.master, bot.policy = None, "tofu"
    lines = (await bot.ask("!status")).splitlines()
    assert lines[-1] == t("en", "status.identity_none", policy="tofu")
    bot.encrypts = (False, False)
    assert not any("identity" in line for line in (await bot.ask("!status")).splitlines())


# -- !trust ----------------------------------------------------------------------------------------


async def test_an_admin_resets_a_users_pinned_identity(bot: Bot) -> None:
    bot.encrypts = (True, True)
    bot.pins["@alice:example.org"] = "AbCdEfGhIjKlMnOp"
    answer = await bot.ask("!trust reset @alice:example.org", sender=ADMIN)
    assert answer == t(
        "en", "trust.reset_done", user="@alice:example.org", master_key="AbCd EfGh IjKl…"
    )
    assert bot.resets == ["@alice:example.org"] and not bot.pins
    again = await bot.ask("!trust reset @alice:example.org", sender=ADMIN)
    assert again == t("en", "trust.reset_none", user="@alice:example.org")


@pytest.mark.parametrize("sender", [MODERATOR, MEMBER])
async def test_trust_reset_is_refused_politely_to_anyone_but_an_admin(
    bot: Bot, sender: str
) -> None:
    bot.encrypts = (True, True)
    bot.pins["@alice:example.org"] = "AbCdEfGhIjKlMnOp"
    answer = await bot.ask("!trust reset @alice:example.org", sender=sender)
    assert answer == t("en", "error.admins_only")
    assert bot.resets == [] and "@alice:example.org" in bot.pins


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("!trust", "trust.usage"),
        ("!trust forget @alice:example.org", "trust.usage"),
        ("!trust reset alice", "trust.bad_user"),
    ],
)
async def test_trust_needs_reset_and_a_user_id(bot: Bot, body: str, key: str) -> None:
    bot.encrypts = (True, True)
    answer = await bot.ask(body, sender=ADMIN)
    assert answer == t("en", key, command="!trust", user="alice")
    assert bot.resets == []


async def test_trust_reset_explains_that_only_cross_signed_trust_pins(bot: Bot) -> None:
    bot.encrypts, bot.policy = (True, True), "tofu"
    answer = await bot.ask("!trust reset @alice:example.org", sender=ADMIN)
    assert answer == t("en", "trust.not_cross_signed", policy="tofu")
    assert bot.resets == []


async def test_admin_status_covers_every_feed(bot: Bot, store: Store) -> None:
    await fail(store, "parinux", 4, "connection refused")
    text = await bot.ask("!status", sender=ADMIN)
    lines = text.splitlines()
    assert lines[0] == t("en", "status.header_all", count=5)
    assert "Healthy: 4; failing: 1." in lines
    assert any(line.startswith("⚠ failing for a long time — Parinux") for line in lines)
    # Healthy feeds are counted, not listed.
    assert "April" not in text
    assert t("en", "status.paused_rooms", count=0) in lines


async def test_admin_status_of_many_failing_feeds_stays_readable_and_small(
    bot: Bot, store: Store, catalogue: Catalogue
) -> None:
    urls = [f"https://failing{n}.example/{'x' * 300}" for n in range(200)]
    await store.sync_feeds(
        [(org.slug, url) for org in catalogue.organisations for url in org.feeds]
        + [("april", url) for url in urls]
    )
    for feed in await store.feeds(["april"]):
        await store.record_failure(feed.id, now=NOW, error="E" * 500, next_poll=NOW + 60)
    text, markup = await bot.ask_html("!status", sender=ADMIN)
    assert "Healthy: 4; failing: 201." in text
    assert t("en", "status.more_failing.other", count=191) in text
    assert len(text.encode()) + len((markup or "").encode()) < 16 * 1024


# -- malformed input ------------------------------------------------------------------------------


async def test_missing_argument_answers_with_the_usage(bot: Bot, store: Store) -> None:
    assert await bot.ask("!subscribe") == "Missing argument. Usage: !subscribe NAME … or URL"
    assert await bot.ask("!latest   ") == "Missing argument. Usage: !latest NAME [N]"


async def test_missing_argument_in_french(store: Store, catalogue: Catalogue) -> None:
    bot = Bot(store, catalogue, language="fr")
    assert (
        await bot.ask("!unsubscribe") == "Il manque un argument. Usage : !unsubscribe NOM … ou URL"
    )


@pytest.mark.parametrize(
    "body",
    [
        "!subscribe " + "a" * 10_000,
        "!latest " + "april " * 2000,
        "!orgs " + "b" * 10_000,
        "!subscribe " + "d" * 201,
    ],
)
async def test_overlong_input_gets_a_short_error(bot: Bot, store: Store, body: str) -> None:
    answer = await bot.ask(body)
    assert answer in {
        t("en", "error.argument_too_long", max=200),
        t("en", "error.argument_too_long", max=2000),
    }
    assert (await store.subscriptions(ROOM)).organisations == ()


async def test_too_many_names_at_once_are_refused(store: Store) -> None:
    many = Bot(
        store,
        Catalogue(
            {"france": REGIONS["france"]},
            {
                f"o{n}": Organisation(f"o{n}", f"O{n}", "france", feeds=(f"https://o{n}.example/",))
                for n in range(30)
            },
        ),
    )
    answer = await many.ask("!subscribe " + " ".join(f"o{n}" for n in range(30)))
    assert answer == t("en", "error.too_many_names", max=20)
    assert (await store.subscriptions(ROOM)).organisations == ()


@pytest.mark.parametrize(
    "body",
    [
        "!subscribe \u200b",
        "!subscribe \u202eevil\u202c",
        "!latest 🎉 3",
        "!orgs e\u0301\u0301\u0301",
        "!subscribe 👨\u200d👩\u200d👧",
        "!\u202ehelp",
        "!subscribe \ud800",
        "!orgs \ud83d",
        "!help\u0000",
        "!subscribe " + "\u0301" * 150,
        "!latest april \u200f5",
        "!orgs \u2066\u2069",
        "!s\u0336u\u0336b\u0336 april",
        "!subscribe «",
        '!subscribe "',
        "!subscribe « »",
        "!unsubscribe \ufeffapril\u00a0",
    ],
)
async def test_odd_unicode_is_answered_without_crashing(bot: Bot, body: str) -> None:
    reply = await bot.call(body)
    assert reply is not None
    text, markup = reply.text, reply.html
    assert text != t("en", "error.internal")
    text.encode("utf-8")
    (markup or "").encode("utf-8")
    assert "\u202e" not in text


async def test_invisible_marks_around_a_name_are_ignored(bot: Bot, store: Store) -> None:
    await bot.ask("!subscribe \u200fapril\u200b frama\u00adsoft")
    assert (await store.subscriptions(ROOM)).organisations == ("april", "framasoft")


# -- rate limiting --------------------------------------------------------------------------------


async def test_a_burst_gets_one_slow_down_answer_then_silence(bot: Bot) -> None:
    replies = [await bot.call("!help", sender=MEMBER) for _ in range(10)]
    assert all(reply is not None and reply.text.startswith("Crieur") for reply in replies[:3])
    assert replies[3] == Reply(t("en", "error.slow_down", seconds=3))
    assert replies[4:] == [None] * 6


async def test_commands_work_again_once_the_bucket_refills(bot: Bot) -> None:
    for _ in range(5):
        await bot.call("!help", sender=MEMBER)
    bot.clock.now += 1
    assert await bot.call("!help", sender=MEMBER) is None  # still silenced after a warning
    bot.clock.now += 2
    reply = await bot.call("!help", sender=MEMBER)
    assert reply is not None and reply.text.startswith("Crieur")


async def test_one_user_flooding_does_not_silence_another(bot: Bot) -> None:
    for _ in range(10):
        await bot.call("!hepl", sender=MEMBER)
    assert await bot.call("!help", sender=MODERATOR) is not None


# -- failures and logging -------------------------------------------------------------------------


class BrokenCatalogue(Catalogue):
    @property
    def regions(self) -> tuple[Region, ...]:
        raise RuntimeError("catalogue exploded")


async def test_a_handler_failure_is_answered_and_logged_with_its_traceback(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    bot = Bot(store, BrokenCatalogue(REGIONS, ORGANISATIONS), language="fr")
    with caplog.at_level(logging.INFO, logger="bot.commands"):
        answer = await bot.ask("!regions secret-words")
    assert answer == t("fr", "error.internal")
    (failure,) = [record for record in caplog.records if record.exc_info]
    assert failure.exc_info is not None and failure.exc_info[0] is RuntimeError
    message = failure.getMessage()
    assert "regions" in message and ROOM in message and MODERATOR in message
    assert "secret-words" not in caplog.text


async def test_a_closed_store_gets_the_internal_error_answer(
    tmp_path: Path, catalogue: Catalogue, caplog: pytest.LogCaptureFixture
) -> None:
    store = await Store.open(tmp_path / "closed.sqlite3")
    await store.close()
    bot = Bot(store, catalogue)
    with caplog.at_level(logging.ERROR, logger="bot.commands"):
        assert await bot.ask("!subscriptions") == t("en", "error.internal")
    assert any(record.exc_info for record in caplog.records)


async def test_each_executed_command_is_logged_once_without_its_arguments(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bot.commands"):
        await bot.ask("!subscribe april")
    (record,) = caplog.records
    message = record.getMessage()
    assert "subscribe" in message and ROOM in message and MODERATOR in message
    assert "april" not in message

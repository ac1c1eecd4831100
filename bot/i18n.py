"""The fr and en messages of Crieur (dates in words live in dates.py).

Messages use `str.format` placeholders. Both catalogues must hold the same keys with the same
placeholders (a test checks it), so a missing translation is caught before it reaches a room.
Keys ending in `.one` / `.other` are plural forms: pick them with `plural()`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, Literal

from . import i18n_filters
from .config import Language
from .event_messages import EVENTS_EN, EVENTS_FR

_FR: Final[Mapping[str, str]] = MappingProxyType(
    {
        **EVENTS_FR,
        # Messages posted by the relay.
        "entry.published": "Publié le {date}",
        "entry.untitled": "(sans titre)",
        "date.zoned": "{date} (heure de {place}, {offset})",
        "rule.daily": "tous les jours",
        "rule.daily_n": "tous les {n} jours",
        "rule.weekly": "tous les {days}",
        "rule.weekly_2": "un {days} sur deux",
        "rule.weekly_n": "un {days} toutes les {n} semaines",
        "rule.nth": "{nth} {day}",
        "rule.monthly_nth": "le {days} du mois",
        "rule.monthly_day": "le {days} de chaque mois",
        "rule.every_n_months": "{rule}, tous les {n} mois",
        "rule.yearly": "tous les ans",
        "rule.irregular": "à intervalles réguliers",
        "digest.more.one": "… et {count} autre article publié par {organisation}",
        "digest.more.other": "… et {count} autres articles publiés par {organisation}",
        "bot.welcome": (
            "Bonjour ! Je suis Crieur : je relaie ici les actualités des organisations que ce "
            "salon suit. Tapez {help} pour la liste des commandes."
        ),
        # Help.
        "help.header": "Commandes de Crieur :",
        "help.line": "{command} — {description}",
        "help.moderators_only": "(modérateurs)",
        "help.aliases": "(alias : {aliases})",
        "help.footer": (
            "Les noms ignorent majuscules et accents. Les modérateurs sont les membres de niveau "
            "de pouvoir {level} ou plus."
        ),
        "help.help": "affiche cette aide",
        "help.orgs": "liste les organisations, filtrées par région ou par texte",
        "help.regions": "liste les régions et leur nombre d'organisations",
        "help.subscribe": (
            "abonne ce salon à des organisations, à des régions, ou au flux d'un site (URL)"
        ),
        "help.unsubscribe": (
            "désabonne ce salon ; une organisation d'une région suivie est mise en sourdine"
        ),
        "help.subscriptions": "montre ce que ce salon reçoit",
        "help.latest": (
            "montre les N derniers articles d'une organisation, d'une région ou d'un flux "
            "ajouté par ce salon"
        ),
        "help.status": "montre l'état des flux que reçoit ce salon",
        "help.trust": "reconnaît la nouvelle identité de chiffrement d'une personne",
        "help.admins_only": "(administrateurs de Crieur)",
        "usage.trust": "reset @personne:serveur",
        "usage.orgs": "[RÉGION ou TEXTE]",
        "usage.subscribe": "NOM … ou URL",
        "usage.unsubscribe": "NOM … ou URL",
        "usage.latest": "NOM [N]",
        # Errors a person can fix.
        "error.unknown_command": (
            "Commande inconnue : « {command} ». Vouliez-vous dire {suggestions} ?"
        ),
        "error.unknown_name": "Nom inconnu : « {name} ». Vouliez-vous dire {suggestions} ?",
        "error.unknown_name.no_suggestion": (
            "Nom inconnu : « {name} ». Tapez {orgs} ou {regions} pour voir les noms connus."
        ),
        "error.permission": (
            "Désolé, seuls les modérateurs de ce salon peuvent faire cela "
            "(niveau de pouvoir {level} requis)."
        ),
        "error.admins_only": "Désolé, seuls les administrateurs de Crieur peuvent faire cela.",
        "error.missing_argument": "Il manque un argument. Usage : {usage}",
        "error.argument_too_long": "Argument trop long : {max} caractères au plus.",
        "error.invalid_number": "« {value} » n'est pas un nombre entre 1 et {max}.",
        "error.too_many_names": "Trop de noms d'un coup : {max} au plus.",
        "error.slow_down": "Doucement ! Trop de commandes d'un coup ; réessayez dans {seconds} s.",
        "error.internal": "Désolé, une erreur interne s'est produite. Elle a été consignée.",
        # !subscribe and !unsubscribe.
        "subscribe.done": "Ce salon suit désormais : {names}.",
        "subscribe.already": "Ce salon suit déjà : {names}.",
        "subscribe.unmuted": "« {name} » n'est plus en sourdine dans ce salon.",
        "unsubscribe.done": "Ce salon ne suit plus : {names}.",
        "unsubscribe.muted": (
            "« {organisation} » est mise en sourdine : ce salon suit toujours la région "
            "« {region} », mais sans ses articles."
        ),
        "unsubscribe.not_subscribed": "Ce salon ne suit pas « {name} ».",
        # !subscribe URL and !unsubscribe URL: a room's own feeds.
        "sources.added": (
            "Ce salon suit désormais « {title} » ({url}) : son prochain nouvel article sera "
            "publié ici."
        ),
        "sources.others": "Autres flux trouvés sur ce site : {feeds}.",
        "sources.already": "Ce salon suit déjà « {title} » ({url}).",
        "sources.removed": "Ce salon ne suit plus « {title} » ({url}).",
        "error.invalid_url": "Adresse invalide : {reason}.",
        "error.one_url": "Une seule adresse à la fois, sans autre nom.",
        "error.sources_full": (
            "Ce salon suit déjà {max} flux à lui, le maximum (rooms.max_own_feeds) ; "
            "désabonnez-en un d'abord."
        ),
        "error.sources_off": (
            "Ce Crieur ne permet pas aux salons d'ajouter leurs propres flux "
            "(rooms.max_own_feeds vaut 0)."
        ),
        "error.private_address": (
            "Refusé : {address} est une adresse privée ou locale, que Crieur ne consulte pas "
            "(polling.allow_private_networks). Rien n'a été ajouté."
        ),
        "error.site_too_slow": "{url} met trop de temps à répondre ; réessayez plus tard.",
        "error.no_feed": "Aucun flux trouvé à {url} : {reason}.",
        "error.source_not_followed": "Ce salon ne suit aucun flux à l'adresse {url}.",
        # !subscriptions.
        "subscriptions.header": "Ce salon reçoit :",
        "subscriptions.regions": "Régions : {names}",
        "subscriptions.organisations": "Organisations : {names}",
        "subscriptions.muted": "En sourdine : {names}",
        "subscriptions.sources": "Flux ajoutés par ce salon : {names}",
        "subscriptions.none": "Ce salon ne suit encore rien. Un modérateur peut taper {command}.",
        # !orgs and !regions.
        "orgs.header": "Organisations ({count}) :",
        "orgs.header_filtered": "Organisations correspondant à « {filter} » ({count}) :",
        "orgs.line": "{name} ({slug}) — {region}",
        "orgs.none": "Aucune organisation ne correspond à « {filter} ».",
        "orgs.truncated": "… et {count} de plus ; précisez la recherche.",
        "regions.header": "Régions ({count}) :",
        "regions.line.one": "{name} ({slug}) — {count} organisation",
        "regions.line.other": "{name} ({slug}) — {count} organisations",
        # !latest.
        "latest.header": "Derniers articles — {name} :",
        "latest.line": "{date} — {organisation} : {title}",
        "latest.none": "Rien encore pour « {name} » : aucun article reçu pour l'instant.",
        "latest.undated": "date inconnue",
        # !status.
        "status.header": "État des flux que reçoit ce salon :",
        "status.header_all": "État de tous les flux ({count}) :",
        "status.summary": "En bonne santé : {ok} ; en erreur : {failing}.",
        "status.feed": "{organisation} — {url}",
        "status.last_success": "dernier succès : {when}",
        "status.never_succeeded": "jamais récupéré avec succès",
        "status.discovered": "trouvé sur {site}",
        "status.instead_of": "à la place de {url}",
        "status.errors.one": "{count} erreur consécutive",
        "status.errors.other": "{count} erreurs consécutives",
        "status.last_error": "dernière erreur : {error}",
        "status.next_poll": "prochaine vérification : {when}",
        "status.next_poll_due": "prochaine vérification : imminente",
        "status.failing_long": "⚠ en échec depuis longtemps",
        "status.more_failing.one": "… et {count} autre flux en erreur",
        "status.more_failing.other": "… et {count} autres flux en erreur",
        "status.paused": "Les envois vers ce salon sont en pause depuis le {when} : {error}",
        "status.pending": "Messages en attente d'envoi vers ce salon : {count}",
        "status.pending_all": "Messages en attente d'envoi, tous salons confondus : {count}",
        "status.paused_rooms": "Salons en pause : {count}",
        "status.none": "Ce salon ne reçoit aucun flux.",
        "status.encryption_on_encrypted": "Chiffrement : activé ; ce salon est chiffré.",
        "status.encryption_on_plain": "Chiffrement : activé ; ce salon n'est pas chiffré.",
        "status.encryption_off": (
            "Chiffrement : désactivé (matrix.encryption) ; les salons chiffrés ne reçoivent rien."
        ),
        "status.identity": (
            "Identité de Crieur : clé maîtresse {master_key} ; confiance accordée : {policy} "
            "(matrix.trust)."
        ),
        "status.identity_none": (
            "Identité de Crieur : pas encore publiée ; confiance accordée : {policy} "
            "(matrix.trust)."
        ),
        # !trust.
        "trust.usage": "Usage : {command} reset @personne:serveur",
        "trust.bad_user": "« {user} » n'est pas un identifiant Matrix (@personne:serveur).",
        "trust.not_cross_signed": (
            "Rien à réinitialiser : Crieur ne retient d'identité que si matrix.trust vaut "
            "cross-signed (ici : {policy})."
        ),
        "trust.reset_done": (
            "L'identité retenue pour {user} (clé maîtresse {master_key}) est oubliée : son "
            "identité actuelle est désormais reconnue, et les appareils qu'elle a signés "
            "reçoivent les clés."
        ),
        "trust.reset_none": (
            "Aucune identité n'était retenue pour {user} : la sienne le sera à la prochaine "
            "lecture de ses clés."
        ),
        "bot.encryption_off": (
            "Ce salon est chiffré de bout en bout, mais le chiffrement est désactivé pour Crieur "
            "(matrix.encryption) : je ne peux ni lire les commandes ni publier ici. Demandez à "
            "l'administrateur de Crieur de l'activer, ou invitez-moi dans un salon non chiffré."
        ),
        # Lists.
        "list.and": "{head} et {last}",
        "list.or": "{head} ou {last}",
        "list.quote": "« {text} »",
        **i18n_filters.FR,
    }
)

_EN: Final[Mapping[str, str]] = MappingProxyType(
    {
        **EVENTS_EN,
        "entry.published": "Published on {date}",
        "entry.untitled": "(untitled)",
        "date.zoned": "{date} ({place} time, {offset})",
        "rule.daily": "every day",
        "rule.daily_n": "every {n} days",
        "rule.weekly": "every {days}",
        "rule.weekly_2": "every other {days}",
        "rule.weekly_n": "every {n} weeks on {days}",
        "rule.nth": "{nth} {day}",
        "rule.monthly_nth": "on the {days} of the month",
        "rule.monthly_day": "on day {days} of each month",
        "rule.every_n_months": "{rule}, every {n} months",
        "rule.yearly": "every year",
        "rule.irregular": "repeatedly",
        "digest.more.one": "… and {count} more post from {organisation}",
        "digest.more.other": "… and {count} more posts from {organisation}",
        "bot.welcome": (
            "Hello! I'm Crieur: I relay here the news of the organisations this room follows. "
            "Type {help} for the list of commands."
        ),
        "help.header": "Crieur's commands:",
        "help.line": "{command} — {description}",
        "help.moderators_only": "(moderators)",
        "help.aliases": "(aliases: {aliases})",
        "help.footer": (
            "Names ignore case and accents. Moderators are members with power level {level} "
            "or more."
        ),
        "help.help": "show this help",
        "help.orgs": "list organisations, filtered by region or text",
        "help.regions": "list regions with their number of organisations",
        "help.subscribe": "make this room follow organisations, regions, or a site's feed (URL)",
        "help.unsubscribe": (
            "stop following; an organisation inside a followed region is muted instead"
        ),
        "help.subscriptions": "show what this room receives",
        "help.latest": (
            "show the N latest posts of an organisation, a region or a feed this room added"
        ),
        "help.status": "show the health of the feeds this room receives",
        "help.trust": "trust a person's new encryption identity",
        "help.admins_only": "(Crieur's admins)",
        "usage.trust": "reset @person:server",
        "usage.orgs": "[REGION or TEXT]",
        "usage.subscribe": "NAME … or URL",
        "usage.unsubscribe": "NAME … or URL",
        "usage.latest": "NAME [N]",
        "error.unknown_command": "Unknown command “{command}”. Did you mean {suggestions}?",
        "error.unknown_name": "Unknown name “{name}”. Did you mean {suggestions}?",
        "error.unknown_name.no_suggestion": (
            "Unknown name “{name}”. Type {orgs} or {regions} to see the known names."
        ),
        "error.permission": (
            "Sorry, only this room's moderators can do that (power level {level} needed)."
        ),
        "error.admins_only": "Sorry, only Crieur's admins can do that.",
        "error.missing_argument": "Missing argument. Usage: {usage}",
        "error.argument_too_long": "Argument too long: {max} characters at most.",
        "error.invalid_number": "“{value}” is not a number between 1 and {max}.",
        "error.too_many_names": "Too many names at once: {max} at most.",
        "error.slow_down": "Slow down! Too many commands at once; try again in {seconds} s.",
        "error.internal": "Sorry, something went wrong on my side. It has been logged.",
        "subscribe.done": "This room now follows: {names}.",
        "subscribe.already": "This room already follows: {names}.",
        "subscribe.unmuted": "“{name}” is no longer muted in this room.",
        "unsubscribe.done": "This room no longer follows: {names}.",
        "unsubscribe.muted": (
            "Muted “{organisation}”: this room still follows the region “{region}”, "
            "but without its posts."
        ),
        "unsubscribe.not_subscribed": "This room doesn't follow “{name}”.",
        "sources.added": (
            "This room now follows “{title}” ({url}): its next new post will be posted here."
        ),
        "sources.others": "Other feeds found on that site: {feeds}.",
        "sources.already": "This room already follows “{title}” ({url}).",
        "sources.removed": "This room no longer follows “{title}” ({url}).",
        "error.invalid_url": "Invalid address: {reason}.",
        "error.one_url": "One address at a time, without other names.",
        "error.sources_full": (
            "This room already follows {max} feeds of its own, the most allowed "
            "(rooms.max_own_feeds); unsubscribe one first."
        ),
        "error.sources_off": (
            "This Crieur does not let rooms add feeds of their own (rooms.max_own_feeds is 0)."
        ),
        "error.private_address": (
            "Refused: {address} is a private or local address, which Crieur does not fetch "
            "(polling.allow_private_networks). Nothing was added."
        ),
        "error.site_too_slow": "{url} takes too long to answer; try again later.",
        "error.no_feed": "No feed found at {url}: {reason}.",
        "error.source_not_followed": "This room follows no feed at {url}.",
        "subscriptions.header": "This room receives:",
        "subscriptions.regions": "Regions: {names}",
        "subscriptions.organisations": "Organisations: {names}",
        "subscriptions.muted": "Muted: {names}",
        "subscriptions.sources": "Feeds this room added: {names}",
        "subscriptions.none": "This room follows nothing yet. A moderator can type {command}.",
        "orgs.header": "Organisations ({count}):",
        "orgs.header_filtered": "Organisations matching “{filter}” ({count}):",
        "orgs.line": "{name} ({slug}) — {region}",
        "orgs.none": "No organisation matches “{filter}”.",
        "orgs.truncated": "… and {count} more; narrow the search.",
        "regions.header": "Regions ({count}):",
        "regions.line.one": "{name} ({slug}) — {count} organisation",
        "regions.line.other": "{name} ({slug}) — {count} organisations",
        "latest.header": "Latest posts — {name}:",
        "latest.line": "{date} — {organisation}: {title}",
        "latest.none": "Nothing yet for “{name}”: no posts received so far.",
        "latest.undated": "undated",
        "status.header": "Health of the feeds this room receives:",
        "status.header_all": "Health of all feeds ({count}):",
        "status.summary": "Healthy: {ok}; failing: {failing}.",
        "status.feed": "{organisation} — {url}",
        "status.last_success": "last success: {when}",
        "status.never_succeeded": "never fetched successfully",
        "status.discovered": "found on {site}",
        "status.instead_of": "instead of {url}",
        "status.errors.one": "{count} consecutive error",
        "status.errors.other": "{count} consecutive errors",
        "status.last_error": "last error: {error}",
        "status.next_poll": "next check: {when}",
        "status.next_poll_due": "next check: due now",
        "status.failing_long": "⚠ failing for a long time",
        "status.more_failing.one": "… and {count} more failing feed",
        "status.more_failing.other": "… and {count} more failing feeds",
        "status.paused": "Delivery to this room has been paused since {when}: {error}",
        "status.pending": "Messages waiting to be sent to this room: {count}",
        "status.pending_all": "Messages waiting to be sent, all rooms: {count}",
        "status.paused_rooms": "Paused rooms: {count}",
        "status.none": "This room receives no feeds.",
        "status.encryption_on_encrypted": "Encryption: on; this room is encrypted.",
        "status.encryption_on_plain": "Encryption: on; this room is not encrypted.",
        "status.encryption_off": (
            "Encryption: off (matrix.encryption); encrypted rooms receive nothing."
        ),
        "status.identity": (
            "Crieur's identity: master key {master_key}; trust: {policy} (matrix.trust)."
        ),
        "status.identity_none": (
            "Crieur's identity: not published yet; trust: {policy} (matrix.trust)."
        ),
        "trust.usage": "Usage: {command} reset @person:server",
        "trust.bad_user": "“{user}” is not a Matrix user id (@person:server).",
        "trust.not_cross_signed": (
            "Nothing to reset: Crieur pins identities only when matrix.trust is cross-signed "
            "(here: {policy})."
        ),
        "trust.reset_done": (
            "The identity pinned for {user} (master key {master_key}) is forgotten: their current "
            "identity is trusted from now on, and the devices it signed get room keys."
        ),
        "trust.reset_none": (
            "No identity was pinned for {user}: theirs will be at the next reading of their keys."
        ),
        "bot.encryption_off": (
            "This room is end-to-end encrypted, but encryption is turned off for Crieur "
            "(matrix.encryption): I can neither read commands nor post here. Ask Crieur's "
            "administrator to turn it on, or invite me to an unencrypted room."
        ),
        "list.and": "{head} and {last}",
        "list.or": "{head} or {last}",
        "list.quote": "“{text}”",
        **i18n_filters.EN,
    }
)

CATALOGUES: Final[Mapping[Language, Mapping[str, str]]] = MappingProxyType({"fr": _FR, "en": _EN})


def t(language: Language, key: str, **params: object) -> str:
    """Return the message `key` in `language`, with its placeholders filled from `params`."""
    return CATALOGUES[language][key].format(**params)


def t_html(language: Language, key: str, **html_params: str) -> str:
    """Return the message `key` as HTML: its text escaped, `html_params` inserted as given."""
    return html.escape(CATALOGUES[language][key], quote=False).format(**html_params)


def plural_key(language: Language, key: str, count: int) -> str:
    """Return the key of the plural form of `key` (`key.one` or `key.other`) that fits `count`."""
    # French uses the singular for 0 and 1 ("0 organisation"), English only for 1.
    singular = count in (0, 1) if language == "fr" else count == 1
    return f"{key}.{'one' if singular else 'other'}"


def plural(language: Language, key: str, count: int, **params: object) -> str:
    """Return the plural form of `key` that fits `count`, with `count` and `params` filled in."""
    return t(language, plural_key(language, key, count), count=count, **params)


def quote(language: Language, text: str) -> str:
    """Return `text` between the language's quotation marks (« » or “ ”)."""
    return t(language, "list.quote", text=text)


def join_list(
    language: Language, items: Iterable[str], *, last: Literal["and", "or"] = "and"
) -> str:
    """Join items as prose: "a, b and c" (`last="or"`: "a, b or c"); "" for no items."""
    words = list(items)
    if len(words) <= 1:
        return "".join(words)
    return t(language, f"list.{last}", head=", ".join(words[:-1]), last=words[-1])

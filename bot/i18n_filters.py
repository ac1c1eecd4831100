"""The fr and en messages of `!filter`, merged into i18n's catalogues."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

FR: Final[Mapping[str, str]] = {
    "help.filter": (
        "ne garde que les articles contenant certains mots et aucun de certains autres, dans "
        "tout le salon ou pour une source ; seul, montre les filtres"
    ),
    "help.moderators_to_change": "(modérateurs pour les changer)",
    "usage.filter": '[SOURCE] +mot -mot "une expression" | clear [SOURCE]',
    "filter.header": "Filtres de ce salon ({count}/{max} mots) :",
    "filter.scope": "{scope} : {terms}",
    "filter.whole_room": "Tout le salon",
    "filter.rule": (
        "Un article est publié si son titre ou son résumé contient l'un des mots + (s'il y en "
        "a) et aucun des mots -, pour chaque filtre qui le concerne."
    ),
    "filter.none": (
        "Ce salon n'a pas de filtre : il reçoit tout ce qu'il suit. Un modérateur peut taper "
        "{example}."
    ),
    "filter.updated": "Filtre mis à jour : {scope}.",
    "filter.unchanged": "Rien de nouveau : {scope} avait déjà ces mots.",
    "filter.cleared": "Tous les filtres de ce salon sont supprimés : il reçoit de nouveau tout.",
    "filter.cleared_scope": "Le filtre « {scope} » est supprimé.",
    "filter.nothing_to_clear": "Il n'y avait aucun filtre à supprimer.",
    "filter.held_back.one": "Les filtres ont écarté {count} article jusqu'ici.",
    "filter.held_back.other": "Les filtres ont écarté {count} articles jusqu'ici.",
    "filter.status.one": "Filtres ({words}/{max} mots) : {count} article écarté jusqu'ici.",
    "filter.status.other": "Filtres ({words}/{max} mots) : {count} articles écartés jusqu'ici.",
    "filter.no_terms": (
        "Aucun mot à filtrer : mettez + (garder) ou - (écarter) devant chaque mot, par "
        "exemple {example}."
    ),
    "filter.unsigned": (
        "« {word} » : mettez + (garder) ou - (écarter) devant chaque mot, la source éventuelle "
        "en premier, par exemple {example}."
    ),
    "filter.empty_term": "Un « {sign} » sans mot après lui.",
    "filter.unterminated": (
        "Guillemet non fermé : {text}. Une expression s'écrit entre guillemets, par exemple "
        "{example}."
    ),
    "filter.no_letters": "« {term} » n'a ni lettre ni chiffre : un filtre cherche des mots.",
    "filter.term_too_long": "« {term} » est trop long : une expression a au plus {max} mots.",
    "filter.both_signs": "« {term} » est donné à la fois avec + et avec -.",
    "filter.too_many": (
        "Un salon a au plus {max} mots de filtre (une expression compte pour un) : ce salon en "
        "a {count}, ceux-ci en ajouteraient {adding}. Supprimez-en d'abord avec {clear}."
    ),
}

EN: Final[Mapping[str, str]] = {
    "help.filter": (
        "keep only the items holding some words and none of others, in the whole room or for "
        "one source; alone, show the filters"
    ),
    "help.moderators_to_change": "(moderators, to change them)",
    "usage.filter": '[SOURCE] +word -word "a phrase" | clear [SOURCE]',
    "filter.header": "Filters of this room ({count}/{max} words):",
    "filter.scope": "{scope}: {terms}",
    "filter.whole_room": "Whole room",
    "filter.rule": (
        "An item is posted when its title or summary holds one of the + words (if there are "
        "any) and none of the - words, for every filter that concerns it."
    ),
    "filter.none": (
        "This room has no filters: it receives everything it follows. A moderator can type "
        "{example}."
    ),
    "filter.updated": "Filter updated: {scope}.",
    "filter.unchanged": "Nothing new: {scope} already had these words.",
    "filter.cleared": "All of this room's filters are removed: it receives everything again.",
    "filter.cleared_scope": "The filter “{scope}” is removed.",
    "filter.nothing_to_clear": "There was no filter to remove.",
    "filter.held_back.one": "The filters have held back {count} item so far.",
    "filter.held_back.other": "The filters have held back {count} items so far.",
    "filter.status.one": "Filters ({words}/{max} words): {count} item held back so far.",
    "filter.status.other": "Filters ({words}/{max} words): {count} items held back so far.",
    "filter.no_terms": (
        "No word to filter on: put + (keep) or - (leave out) before each word, for example "
        "{example}."
    ),
    "filter.unsigned": (
        "“{word}”: put + (keep) or - (leave out) before each word, the source if any first, "
        "for example {example}."
    ),
    "filter.empty_term": "A “{sign}” with no word after it.",
    "filter.unterminated": (
        "A quote is not closed: {text}. Write a phrase between quotes, for example {example}."
    ),
    "filter.no_letters": "“{term}” holds no letter or digit: filters look for words.",
    "filter.term_too_long": "“{term}” is too long: a phrase has at most {max} words.",
    "filter.both_signs": "“{term}” is given both with + and with -.",
    "filter.too_many": (
        "A room has at most {max} filter words (a phrase counts as one): this room has "
        "{count}, these would add {adding}. Remove some first with {clear}."
    ),
}

"""Scenario 4, hostile content: malicious HTML as the titles and summaries of feed entries,
relayed by `crieur run` into a real room, then every `formatted_body` the room received checked
against the allow-list of Crieur's messages.

The corpus: feedparser's sanitiser payloads (`tests/data/sanitize/payloads.json`) and the
payloads below (script, style, iframe, object, SVG and MathML, event handlers, CSS expressions,
`javascript:`, `vbscript:` and `data:` URLs spelled with entities, mixed case, white space and
control characters, unclosed and nested tags). Each one goes out twice: as an entry's summary
and as its title. The checker parses each `formatted_body` with `html.parser` and counts every
tag, attribute or URL outside the allow-list, every URL holding an invisible (control or
format) character, every comment, declaration or processing
instruction, as a violation.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from nio import Event

from bot.sanitise import ALLOWED_TAGS
from reliability.hostile import (
    Deployment,
    GrowingFeed,
    Item,
    bot_posts,
    dated,
    organisation,
    room_for,
    services,
    wait_until,
)
from reliability.report import Row
from tests.e2e_support import content
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer

PAYLOADS = Path(__file__).resolve().parent.parent / "tests" / "data" / "sanitize" / "payloads.json"
BATCH = 20  # entries published per poll: polling.max_posts_per_poll of the scenario
# What Crieur's messages may hold (DESIGN.md, "Messages"): the tags sanitise.py declares, `href`
# on links (http, https, mailto) and `src` on images (mxc) as the only attributes.
ALLOWED_ATTRIBUTES = {"a": {"href": {"http", "https", "mailto"}}, "img": {"src": {"mxc"}}}

_SCHEMES = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "\tjavascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "java\rscript:alert(1)",
    "java&#x09;script:alert(1)",
    "java&#10;script:alert(1)",
    "java&#x0D;script:alert(1)",
    "&#x01;javascript:alert(1)",
    "&#14;javascript:alert(1)",
    "\x01javascript:alert(1)",
    "&#106;avascript:alert(1)",
    "&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;:alert(1)",
    "&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116:1",
    "javascript&#58;alert(1)",
    "javascript&#x3A;alert(1)",
    "javascript&colon;alert(1)",
    "vbscript:msgbox(1)",
    "VBScript:msgbox(1)",
    "vbs&#99;ript:msgbox(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "DATA:text/html,<script>alert(1)</script>",
    "d&#97;ta:text/html,<script>alert(1)</script>",
    "data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+",
    "livescript:alert(1)",
    "mocha:alert(1)",
    "feed:javascript:alert(1)",
    "jar:http://example.org/x.jar!/",
    "file:///etc/passwd",
    "mxc://example.org/not-a-link",
    "//evil.example/protocol-relative",
    "ｊａｖａｓｃｒｉｐｔ:alert(1)",
]

_MARKUP = [
    "<script>alert(1)</script>after",
    "<ScRiPt>alert(1)</sCrIpT>after",
    "<script src=//evil.example/x.js></script>",
    "<script/src=data:,alert(1)></script>",
    "<<script>script>alert(1)<</script>/script>",
    "<script>alert(1)",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<style>body{background:url(javascript:alert(1))}</style>text",
    "<STYLE>@import'//evil.example/x.css';</STYLE>",
    "<p style=\"background:url('javascript:alert(1)')\">styled</p>",
    '<div style="width: expression(alert(1))">css expression</div>',
    '<div style="width: exp/**/ression(alert(1))">css comment</div>',
    '<div style="behavior: url(x.htc)">behaviour</div>',
    '<div style="-moz-binding: url(x.xml#xss)">binding</div>',
    '<link rel="stylesheet" href="javascript:alert(1)">',
    '<iframe src="javascript:alert(1)"></iframe>framed',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<IFRAME SRC=//evil.example>",
    '<frameset><frame src="javascript:alert(1)"></frameset>',
    '<object data="javascript:alert(1)"></object>',
    '<object type="text/html" data="//evil.example"><param name=x value=y></object>',
    '<embed src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<applet code="x.class"></applet>',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>clic</text></a></svg>',
    "<svg><animate attributeName=href values=javascript:alert(1) /></svg>",
    "<svg><foreignObject><iframe src=javascript:alert(1)></iframe></foreignObject></svg>",
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    '<math><maction actiontype="statusline#" xlink:href="javascript:alert(1)">x</maction></math>',
    "<img src=x onerror=alert(1)>",
    "<img/src=x/onerror=alert(1)>",
    '<img src="mxc://example.org/ok" onerror="alert(1)">',
    '<img src="mxc://example.org/ok" style="position:fixed">',
    '<img srcset="javascript:alert(1) 1x">',
    '<body onload="alert(1)">body</body>',
    '<a href="https://example.org/" onclick="alert(1)">handler</a>',
    '<a href="https://example.org/" onmouseover  =  "alert(1)">spaced handler</a>',
    '<a href="https://example.org/" ONFOCUS=alert(1) autofocus>upper handler</a>',
    '<a href="https://example.org/" target="_blank" rel="opener">target</a>',
    '<a href="https://example.org/" style="color:red" class="x" id="y">attributes</a>',
    '<details open ontoggle="alert(1)"><summary>s</summary>d</details>',
    '<marquee onstart="alert(1)">m</marquee>',
    '<form action="javascript:alert(1)"><button>b</button></form>',
    '<button formaction="javascript:alert(1)">b</button>',
    '<input type="image" src="javascript:alert(1)">',
    '<isindex action="javascript:alert(1)" type=image>',
    '<video poster="javascript:alert(1)"><source src=x onerror=alert(1)></video>',
    '<audio src=x onerror="alert(1)"></audio>',
    '<table background="javascript:alert(1)"><tr><td>cell</td></tr></table>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<template><script>alert(1)</script></template>",
    "<xmp><img src=x onerror=alert(1)></xmp>",
    "<textarea><img src=x onerror=alert(1)></textarea>",
    "<!--<script>alert(1)</script>-->comment",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<?xml-stylesheet href='javascript:alert(1)'?>",
    '<a href="https://example.org/"><a href="javascript:alert(1)">nested</a></a>',
    '<a href="<a href=javascript:alert(1)>">quoted</a>',
    '<p><b><i><u><a href="javascript:alert(1)">unclosed',
    "<div>" * 300 + "deep" + "</div>" * 3,
    "<b>" * 5000 + "many",
    '<a href="https://example.org/"' + " x" * 2000 + ">many attributes</a>",
    '<p title="a" title="b" onclick="1" onclick="2">duplicates</p>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><p>namespaced</p></div>',
    '<html:script xmlns:html="http://www.w3.org/1999/xhtml">alert(1)</html:script>',
    "&lt;script&gt;alert(1)&lt;/script&gt; escaped",
    "<p>\"quotes\" & 'apostrophes' < > stray</p>",
]


# Entry links (RSS <link>), which become the href of the message's title.
LINKS = [
    *_SCHEMES[::2],
    'https://example.org/"><script>alert(1)</script>',
    "https://example.org/' onmouseover='alert(1)",
    "https://example.org/<img src=x onerror=alert(1)>",
    "https://example.org/\u202eevil",
    "https:javascript:alert(1)",
    "https://user:password@example.org/",
    "https://example.org/" + "a" * 5000,
]


def corpus(full: bool) -> list[str]:
    """The hostile HTML fragments, in a fixed order (the short version takes a quarter)."""
    links = [f'<a href="{url}">link {n}</a>' for n, url in enumerate(_SCHEMES)]
    images = [f'<img src="{url}">' for url in _SCHEMES[::3]]
    ours = [*_MARKUP, *links, *images]
    feedparser = [p["html"] for p in json.loads(PAYLOADS.read_text(encoding="utf-8"))]
    unique = list(dict.fromkeys([*ours, *feedparser]))
    return unique if full else unique[::4]


@dataclass(frozen=True, slots=True)
class Figures:
    payloads: int
    entries: int
    lost: int
    duplicated: int
    crashes: int
    checked: int
    violations: int
    examples: tuple[str, ...]


class AllowList(HTMLParser):
    """Collect what a `formatted_body` holds outside the allow-list."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.violations: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.violations.append(f"tag <{tag}>")
            return
        allowed = ALLOWED_ATTRIBUTES.get(tag, {})
        names = [name for name, _ in attrs]
        if len(names) != len(set(names)):
            self.violations.append(f"repeated attribute in <{tag}>")
        for name, value in attrs:
            if name not in allowed:
                self.violations.append(f"attribute {name} on <{tag}>")
            elif _scheme(value or "") not in allowed[name]:
                self.violations.append(f"URL {value!r} in <{tag} {name}>")
            elif any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value or ""):
                self.violations.append(f"invisible character in URL {value!r}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag not in ALLOWED_TAGS:
            self.violations.append(f"end tag </{tag}>")

    def handle_comment(self, data: str) -> None:
        self.violations.append("comment")

    def handle_decl(self, decl: str) -> None:
        self.violations.append(f"declaration {decl[:20]!r}")

    def handle_pi(self, data: str) -> None:
        self.violations.append("processing instruction")

    def unknown_decl(self, data: str) -> None:
        self.violations.append(f"declaration {data[:20]!r}")


def _scheme(url: str) -> str:
    """The scheme a browser would see: control characters and white space removed first."""
    cleaned = "".join(c for c in url if c > " " and c != "\x7f")
    try:
        return urlsplit(cleaned).scheme.lower()
    except ValueError:
        return "invalid"


def violations(formatted_body: str) -> list[str]:
    """Everything in `formatted_body` outside the allow-list."""
    checker = AllowList()
    checker.feed(formatted_body)
    checker.close()
    return checker.violations


def _items(payloads: Sequence[str], links: Sequence[str] = ()) -> list[Item]:
    """Two entries per payload: as summary (titled "Payload summary-N"), and as title; then
    one entry per hostile link (titled "Payload link-N"). Each has a `marker`: the line of the
    message's plain body that tells it arrived."""
    items: list[Item] = []
    cases = [
        *((f"{field}-{n}", field, payload) for n, payload in enumerate(payloads)
          for field in ("summary", "title")),
        *((f"link-{n}", "link", link) for n, link in enumerate(links)),
    ]  # fmt: skip
    for key, field, value in cases:
        own_link = f"https://hostile.example.org/{key}"
        items.append(
            {
                "title": value if field == "title" else f"Payload {key}",
                "link": value if field == "link" else own_link,
                "guid": own_link,
                "isPermaLink": False,
                "pubDate": dated(len(cases) - len(items)),
                "description": value if field == "summary" else f"Payload {key}.",
                "marker": own_link if field == "title" else f"Payload {key}",
            }
        )
    return items


async def run(
    synapse: SynapseServer, server: FeedServer, directory: Path, *, payloads: Sequence[str]
) -> Figures:
    """Relay every payload through `crieur run` into a room; check what the room received."""
    deployment = await Deployment.create(synapse, directory / "bot")
    user = await synapse.client("reader")
    feed = GrowingFeed(server, "hostile-content", window=BATCH * 2)
    try:
        room = await room_for(user, deployment.user_id, "content")
        feed.publish({"title": "Seed", "guid": "seed", "pubDate": dated(600)})
        config = deployment.config(
            regions={"content": [room]},
            organisations={"hostile-content": organisation(feed.slug, "content", feed.url)},
            polling={"max_posts_per_poll": BATCH},
        )
        process = await deployment.start(config)
        items = _items(payloads, LINKS)

        await wait_until(_polled(server, feed.path, 2), 60, 0.1)  # seeded
        for start in range(0, len(items), BATCH):
            # Two more requests: the first after publishing has seen the batch in full.
            target = server.hits(feed.path) + 2
            feed.publish(*items[start : start + BATCH])
            await wait_until(_polled(server, feed.path, target), 60, 0.1)
            if process.exited:
                break
        markers = [item["marker"] for item in items]

        async def arrived() -> bool:
            events = await SynapseServer.timeline(user, room)
            lines = {line for e in events for line in str(content(e).get("body", "")).splitlines()}
            return process.exited or all(marker in lines for marker in markers)

        await wait_until(arrived, 120)
        crashes = int(process.exited)
        await deployment.stop()
        posts = bot_posts(await SynapseServer.timeline(user, room), deployment.user_id)
        return _count(payloads, items, posts, crashes)
    finally:
        await deployment.kill()
        await user.close()


def _polled(server: FeedServer, path: str, count: int) -> Callable[[], Awaitable[bool]]:
    """A check that the feed server has answered `count` requests for `path`."""

    async def check() -> bool:
        return server.hits(path) >= count

    return check


def _count(
    payloads: Sequence[str], items: Sequence[Item], posts: Sequence[Event], crashes: int
) -> Figures:
    seen = Counter(
        line for event in posts for line in str(content(event).get("body", "")).splitlines()
    )
    markers = [item["marker"] for item in items]
    found: list[str] = []
    for event in posts:
        formatted = content(event).get("formatted_body")
        found.extend(violations(formatted if isinstance(formatted, str) else ""))
    return Figures(
        payloads=len(payloads),
        entries=len(items),
        lost=sum(seen[marker] == 0 for marker in markers),
        duplicated=sum(seen[marker] > 1 for marker in markers),
        crashes=crashes,
        checked=len(posts),
        violations=len(found),
        examples=tuple(dict.fromkeys(found))[:5],
    )


def rows(figures: Figures) -> list[Row]:
    f = figures
    found = f"; first ones: {', '.join(f.examples)}" if f.examples else ""
    return [
        Row(
            "4. hostile content: entries relayed",
            1,
            f.entries,
            f.lost,
            f.duplicated,
            f.crashes,
            f"{f.payloads} malicious HTML payloads, each as a summary and as a title, and "
            f"{len(LINKS)} hostile entry links",
        ),
        Row(
            "4. hostile content: allow-list (lost = violations)",
            1,
            f.checked,
            f.violations,
            0,
            f.crashes,
            f"every formatted_body received parsed with html.parser: tags, attributes, URL "
            f"schemes; {f.violations} violations{found}",
        ),
    ]


async def scenario(full: bool, workdir: Path) -> list[Row]:
    """Scenario 4 with its own Synapse and feed server."""
    async with services(workdir) as (synapse, server):
        figures = await run(synapse, server, workdir / "run", payloads=corpus(full))
    return rows(figures)

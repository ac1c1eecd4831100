"""Finding and reading the configuration file: safe YAML, duplicated keys, readable errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .validate import join_key
from .values import clip

CONFIG_ENV = "CRIEUR_CONFIG"
DEFAULT_CONFIG_NAME = "config.yaml"

# A configuration is five levels deep at most; PyYAML composes recursively, so a document
# nested thousands of levels would otherwise end in a RecursionError.
MAX_DEPTH = 32
# No configured number needs more; Python refuses to read an int of more than 4,300 digits,
# and one of more than 308 overflows a float.
MAX_NUMBER_DIGITS = 32

_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_NULL_TAG = "tag:yaml.org,2002:null"


def resolve_config_path(arg: str | None, env: Mapping[str, str]) -> Path:
    """Pick the config file: `-c` if given, else ./config.yaml if it exists, else $CRIEUR_CONFIG."""
    if arg:
        return Path(arg)
    default = Path(DEFAULT_CONFIG_NAME)
    if default.exists():
        return default
    from_env = env.get(CONFIG_ENV, "")
    if from_env:
        return Path(from_env)
    return default


def read_source(path: Path) -> tuple[object, list[tuple[str, str]]]:
    """Read the YAML file at path; return its data and the keys it gives twice.

    Raise ConfigError when the file cannot be read or is not YAML.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("", f"{path}: config file not found")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [("", f"{path}: not UTF-8 text (invalid byte at offset {exc.start})")]
        ) from None
    except OSError as exc:
        raise ConfigError([("", f"{path}: cannot read config file ({exc.strerror})")]) from None
    return load_yaml(text, str(path))


class _TooDeep(Exception):
    """The document nests collections deeper than MAX_DEPTH."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _Loader(yaml.SafeLoader):
    """A safe loader that knows the dotted key of the node it composes.

    Values no configuration holds (numbers of more than MAX_NUMBER_DIGITS digits, text with a
    NUL character) are noted under their key and read as nothing, so that validation does not
    report them a second time nor choke on them; nesting past MAX_DEPTH stops the reading.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.unreadable: list[tuple[str, str]] = []
        self._keys: list[str] = []

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Compose one node with its dotted key known (depth-bounded)."""
        # PyYAML passes a list item's position, a mapping value's key node, or None for a key.
        where: object = index
        key = self._keys[-1] if self._keys else ""
        if isinstance(where, int):
            key = join_key(key, f"[{where}]")
        elif isinstance(where, yaml.ScalarNode):
            key = join_key(key, clip(str(where.value).replace("\x00", "\\0")))
        if len(self._keys) >= MAX_DEPTH:
            raise _TooDeep(key)
        self._keys.append(key)
        try:
            return super().compose_node(parent, index)
        finally:
            self._keys.pop()

    def compose_scalar_node(self, anchor: Any) -> yaml.ScalarNode:  # the anchor's name or None
        """Compose a scalar; note and blank out one that no configuration value could be."""
        node: yaml.ScalarNode = super().compose_scalar_node(anchor)
        value = str(node.value)
        problem = None
        if "\x00" in value:
            problem = "contains a NUL character"
        elif node.tag == _INT_TAG and len(value) > MAX_NUMBER_DIGITS:
            problem = f"a number of {len(value):,} digits is too large"
        if problem is None:
            return node
        self.unreadable.append((self._keys[-1], problem))
        blank = yaml.ScalarNode(_NULL_TAG, "", node.start_mark, node.end_mark)
        if anchor is not None:
            self.anchors[anchor] = blank
        return blank


def load_yaml(text: str, source: str) -> tuple[object, list[tuple[str, str]]]:
    """Parse YAML safely; return the data and the problems found in reading it.

    The problems are the values no configuration can hold (read as nothing) and the keys
    given twice, which YAML would otherwise merge silently.
    """
    try:
        # The reader refuses control characters (a NUL byte) as soon as it is built.
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            [
                (
                    "",
                    f"{source}: invalid YAML at line {line}: character #x{exc.character:04x} "
                    "is not allowed (a control character)",
                )
            ]
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        problems = loader.unreadable + duplicate_keys(node)
        data: object = loader.construct_document(node)
    except _TooDeep as exc:
        raise ConfigError(
            [(exc.key, f"nested more than {MAX_DEPTH} levels deep ({source})")]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        if exc.context and exc.problem and exc.problem.startswith("but "):
            what = f"{exc.context}, {exc.problem}"  # "expected a single document, but found …"
        if "'?'" in what:
            # PyYAML stops at "?" inside [...]: the usual culprit is an unquoted feed URL.
            what += " (quote URLs that contain '?')"
        raise ConfigError([("", f"{source}: invalid YAML{where}: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"{source}: invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return data, problems


def duplicate_keys(root: yaml.Node) -> list[tuple[str, str]]:
    """Find mapping keys given twice, which YAML would otherwise resolve silently (last wins)."""
    found: list[tuple[int, str, str]] = []
    visited: set[int] = set()  # aliases share nodes; walk each once so anchors cannot explode
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                child = path
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    name = str(key_node.value)
                    child = join_key(path, name)
                    line = key_node.start_mark.line + 1
                    if name in first_lines:
                        first = first_lines[name]
                        message = f"duplicate key (first at line {first}, again at line {line})"
                        found.append((line, child, message))
                    else:
                        first_lines[name] = line
                stack.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(node.value))
    found.sort()
    return [(key, message) for _, key, message in found]

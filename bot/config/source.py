"""Finding and reading the configuration file: safe YAML, duplicated keys, readable errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from ..errors import ConfigError
from .validate import join_key

CONFIG_ENV = "CRIEUR_CONFIG"
DEFAULT_CONFIG_NAME = "config.yaml"

_MERGE_TAG = "tag:yaml.org,2002:merge"


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


def load_yaml(text: str, source: str) -> tuple[object, list[tuple[str, str]]]:
    """Parse YAML safely; return the data and the duplicated keys it silently merged."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        duplicates = duplicate_keys(node)
        data: object = loader.construct_document(node)
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
    return data, duplicates


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

"""YAML with line numbers: parse once, keep the node tree to point errors at lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from bot.errors import DefinitionError


class YamlSource:
    """A parsed YAML file that can say on which line a value (by path) starts."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        try:
            self.root: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: object = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            raise DefinitionError(path, line, f"not valid YAML: {exc.problem}") from exc
        except yaml.YAMLError as exc:
            raise DefinitionError(path, None, f"not valid YAML: {exc}") from exc

    @classmethod
    def read(cls, path: Path) -> YamlSource:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DefinitionError(path, None, f"cannot read the file: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise DefinitionError(
                path, None, f"not UTF-8 text ({exc.reason}); save it as UTF-8"
            ) from exc
        return cls(path, text)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """1-based line of the deepest node along ``loc`` that exists in the file."""
        node = self.root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in loc:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if str(key_node.value) == str(part):
                        child = value_node
                        line = key_node.start_mark.line + 1
                        break
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                child = node.value[part]
            if child is None:
                break
            node = child
            line = node.start_mark.line + 1
        return line

    def error(self, loc: Sequence[str | int], message: str) -> DefinitionError:
        return DefinitionError(self.path, self.line_of(loc), message)

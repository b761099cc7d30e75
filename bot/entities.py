"""Entity extraction by the regular expressions declared in ``bot.yml``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def extract_entities(patterns: Mapping[str, str], text: str) -> Mapping[str, str]:
    """Entity name -> value of the first match; the first non-empty group wins."""
    found: dict[str, str] = {}
    for name, pattern in patterns.items():
        match = _compiled(pattern).search(text)
        if match is None:
            continue
        groups = [g for g in match.groups() if g]
        found[name] = groups[0] if groups else match.group(0)
    return MappingProxyType(found)

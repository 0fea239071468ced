"""Screen texts in English and Chinese, from `kiosk_ui/translations/*.json`.

A text that counts something has a `KEY_one` variant where the language needs
one (English: "1 attempt left", not "1 attempts left"); Chinese has no plural.
"""

from __future__ import annotations

import json
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "translations"
LANGUAGES = ("zh", "en")
ONE = "_one"


def load(lang: str) -> dict[str, str]:
    texts: dict[str, str] = json.loads((FOLDER / f"{lang}.json").read_text(encoding="utf-8"))
    return texts


class Texts:
    """The current language's texts; `t(key, **values)` formats one, `n(key, count, ...)`
    one that counts."""

    def __init__(self, lang: str = "zh") -> None:
        self.all = {lang: load(lang) for lang in LANGUAGES}
        self.lang = lang if lang in LANGUAGES else "zh"

    def toggle(self) -> None:
        self.lang = "en" if self.lang == "zh" else "zh"

    def t(self, key: str, **values: object) -> str:
        return self.all[self.lang][key].format(**values)

    def n(self, key: str, count: int, **values: object) -> str:
        """The text of `key` for `count` things: its singular form when there is one thing
        and the language has one."""
        if count == 1 and key + ONE in self.all[self.lang]:
            key += ONE
        return self.t(key, **values)

    def has(self, key: str) -> bool:
        return key in self.all[self.lang]

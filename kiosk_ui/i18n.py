"""Screen texts in English and Chinese, from `kiosk_ui/translations/*.json`."""

from __future__ import annotations

import json
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "translations"
LANGUAGES = ("zh", "en")


def load(lang: str) -> dict[str, str]:
    texts: dict[str, str] = json.loads((FOLDER / f"{lang}.json").read_text(encoding="utf-8"))
    return texts


class Texts:
    """The current language's texts; `t(key, **values)` formats one."""

    def __init__(self, lang: str = "zh") -> None:
        self.all = {lang: load(lang) for lang in LANGUAGES}
        self.lang = lang if lang in LANGUAGES else "zh"

    def toggle(self) -> None:
        self.lang = "en" if self.lang == "zh" else "zh"

    def t(self, key: str, **values: object) -> str:
        return self.all[self.lang][key].format(**values)

"""Make the kiosk's spoken prompts: kiosk_ui/sounds/{zh,en}/KEY.wav, with espeak-ng and sox.

Run once when a prompt's words change, and commit the WAV files: the kiosk ships
them and never synthesises or fetches speech while it runs. Needs Debian's
`espeak-ng` and `sox` (`apt-get install espeak-ng sox`); the kiosk and its tests
need neither.

    .venv/bin/python tools/make_voice.py [OUTPUT_FOLDER]

Every clip is 16 kHz mono 16-bit, its leading and trailing silence trimmed to 50 ms
(a wait's number is said between two clips without a gap that sounds like a stop)
and its peak normalised to -1 dBFS, so that the kiosk's volume alone sets loudness.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiosk_ui.voice import RATE, SOUNDS, clip_names

VOICES = {"en": ("en-us", "165"), "zh": ("cmn", "230")}  # espeak-ng voice, words a minute
EN_NUMBERS = (
    *("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen"),
)
EN_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
SERVICE_DESK = "Please go to the service desk."
DESK_ZH = "请到服务台咨询。"

# The words of each clip. A prompt says what the screen's text for the same key says,
# without the numbers of compartments or attempts (the screen shows those).
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "opened": "Your door is open. Take your items, then close the door.",
        "opened_many": "Your doors are open. Take your items, then close the doors.",
        "opened_deposit": "Door open. Load the order, then close the door.",
        "opened_deposit_many": "Doors open. Load the order, then close the doors.",
        "opened_retrieval": "Door open. Take the order out, then close the door.",
        "opened_retrieval_many": "Doors open. Take the order out, then close the doors.",
        "close_reminder": "Please close the door.",
        "thanks": "Thank you!",
        "wrong": "Wrong code. Please check your code.",
        "other_locker": "This code is for another locker.",
        "throttled": "Too many wrong codes. Please wait",
        "throttled_desk": f"Too many wrong codes. {SERVICE_DESK}",
        "door_failed": f"The door did not open. {SERVICE_DESK}",
        "refused": f"Code not accepted. {SERVICE_DESK}",
        "not_a_code": "That is not a pickup code.",
        "already_loaded": "This order is already in the locker.",
        "not_now": f"This code cannot be used now. {SERVICE_DESK}",
        "pin_refused": "PIN not accepted.",
        "storage": f"The locker cannot save now. {SERVICE_DESK}",
        "offline": "Out of service. Please wait.",
        "second": "second",
        "seconds": "seconds",
        "minute": "minute",
        "minutes": "minutes",
        **{f"n{i}": word for i, word in enumerate(EN_NUMBERS, start=1)},
        **{f"n{i}": word for i, word in zip(range(20, 100, 10), EN_TENS, strict=True)},
    },
    "zh": {
        "opened": "柜门已打开，请取出商品并关好柜门。",  # noqa: RUF001 (Chinese punctuation)
        "opened_many": "柜门已打开，请取出商品并关好柜门。",  # noqa: RUF001
        "opened_deposit": "柜门已打开，请放入订单并关好柜门。",  # noqa: RUF001
        "opened_deposit_many": "柜门已打开，请放入订单并关好柜门。",  # noqa: RUF001
        "opened_retrieval": "柜门已打开，请取出订单并关好柜门。",  # noqa: RUF001
        "opened_retrieval_many": "柜门已打开，请取出订单并关好柜门。",  # noqa: RUF001
        "close_reminder": "请关好柜门。",
        "thanks": "谢谢！",  # noqa: RUF001
        "wrong": "取件码错误，请核对后重试。",  # noqa: RUF001
        "other_locker": "此二维码属于其他取货柜。",
        "throttled": "错误次数过多，请等待",  # noqa: RUF001
        "throttled_desk": f"错误次数过多，{DESK_ZH}",  # noqa: RUF001
        "door_failed": f"柜门未能打开，{DESK_ZH}",  # noqa: RUF001
        "refused": f"此码未被接受，{DESK_ZH}",  # noqa: RUF001
        "not_a_code": "这不是取件码。",
        "already_loaded": "此订单已在柜中。",
        "not_now": f"此码现在无法使用，{DESK_ZH}",  # noqa: RUF001
        "pin_refused": "技术员密码未被接受。",
        "storage": f"取货柜暂时无法保存，{DESK_ZH}",  # noqa: RUF001
        "offline": "暂停服务，请稍候。",  # noqa: RUF001
        "second": "秒",
        "seconds": "秒",
        "minute": "分钟",
        "minutes": "分钟",
        "liang": "两",
        **{f"n{i}": c for i, c in enumerate("一二三四五六七八九十", start=1)},
    },
}


def make(text: str, voice: str, speed: str, out: Path, work: Path) -> None:
    raw = work / "raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", speed, "-w", str(raw), text], check=True)
    # Trim the start, reverse, trim the (former) end, reverse back; then the margins.
    trim = ("silence", "1", "0.02", "0.5%", "reverse")
    effects = (*trim, *trim, "pad", "0.05", "0.05", "norm", "-1")
    out_format = ("-r", str(RATE), "-c", "1", "-b", "16")
    subprocess.run(["sox", str(raw), *out_format, str(out), *effects], check=True)


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else SOUNDS
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        sys.stderr.write(f"needs {' and '.join(missing)}: apt-get install espeak-ng sox\n")
        return 1
    for lang, texts in TEXTS.items():
        wanted = set(clip_names(lang))
        if texts.keys() != wanted:
            sys.stderr.write(
                f"{lang}: no words for {sorted(wanted - texts.keys())},"
                f" words for no clip {sorted(texts.keys() - wanted)}\n"
            )
            return 1
        (folder / lang).mkdir(parents=True, exist_ok=True)
        voice, speed = VOICES[lang]
        with tempfile.TemporaryDirectory() as work:
            for key, text in sorted(texts.items()):
                make(text, voice, speed, folder / lang / f"{key}.wav", Path(work))
        total = sum(p.stat().st_size for p in (folder / lang).glob("*.wav"))
        sys.stdout.write(f"{lang}: {len(texts)} clips, {total // 1024} KiB in {folder / lang}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

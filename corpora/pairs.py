"""Built-in sequence-to-sequence tasks, generated on your machine (nothing downloaded, nothing large committed).

Each task returns a list of (source, target) string pairs, deterministic given its parameters
(``random.Random(seed)``). Use them wherever PAIRS goes, with parameters after a colon, like the
named corpora: ``charlm seq2seq train dates:n=5000,seed=1``.

    reverse    a random lower-case word of min_len..max_len letters -> the word reversed ("abc" -> "cba")
    dates      "3 March 2021" -> "2021-03-03" (reverse=1 for the other direction; weekday=1 for
               "Wednesday 3 March 2021", sources of 17-28 characters); years 1900..2099
    numbers    "417" -> "four hundred seventeen", integers 0..max (max <= 999 999 999; American style, no "and")
    autoencode a sentence from the packaged texts (verse, fables) -> the same sentence (reconstruction)
    copy       a random word of min_len..max_len letters -> the same word (the simplest pair task)
"""

from __future__ import annotations

import datetime
import random
import re
from dataclasses import dataclass
from importlib import resources

from charlm.errors import UsageError

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def _words(rng: random.Random, n: int, min_len: int, max_len: int) -> list[str]:
    if n < 1 or not 1 <= min_len <= max_len:
        raise UsageError("need n >= 1 and 1 <= min_len <= max_len")
    return ["".join(rng.choices(LETTERS, k=rng.randint(min_len, max_len))) for _ in range(n)]


def reverse(n: int = 5000, seed: int = 0, min_len: int = 1, max_len: int = 8) -> list[tuple[str, str]]:
    """Word -> the word reversed."""
    return [(w, w[::-1]) for w in _words(random.Random(seed), n, min_len, max_len)]


def copy(n: int = 5000, seed: int = 0, min_len: int = 1, max_len: int = 8) -> list[tuple[str, str]]:
    """Word -> the same word."""
    return [(w, w) for w in _words(random.Random(seed), n, min_len, max_len)]


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def dates(n: int = 5000, seed: int = 0, reverse: int = 0, weekday: int = 0) -> list[tuple[str, str]]:
    """"3 March 2021" -> "2021-03-03" (a uniformly drawn valid date, 1900-01-01 .. 2099-12-31).

    weekday=1 prefixes the long form with its weekday, "Wednesday 3 March 2021" (17 to 28 characters):
    longer sources whose first word the target does not need.
    """
    if n < 1:
        raise UsageError("dates: n must be >= 1")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y, m = rng.randint(1900, 2099), rng.randint(1, 12)
        d = rng.randint(1, 29 if m == 2 and _leap(y) else _DAYS[m - 1])
        long = f"{d} {MONTHS[m - 1]} {y}"
        if weekday:
            long = f"{WEEKDAYS[datetime.date(y, m, d).weekday()]} {long}"
        pair = (long, f"{y:04d}-{m:02d}-{d:02d}")
        out.append(pair[::-1] if reverse else pair)
    return out


def _below_thousand(k: int) -> list[str]:
    words = []
    if k >= 100:
        words += [ONES[k // 100], "hundred"]
        k %= 100
    if k >= 20:
        words.append(TENS[k // 10] + (f"-{ONES[k % 10]}" if k % 10 else ""))
    elif k > 0:
        words.append(ONES[k])
    return words


def number_words(k: int) -> str:
    """English words of 0 <= k < 10**9: 417 -> "four hundred seventeen", 21 -> "twenty-one"."""
    if not 0 <= k < 10**9:
        raise UsageError(f"numbers: {k} is outside 0..999999999")
    if k == 0:
        return "zero"
    words = []
    for size, name in ((10**6, "million"), (10**3, "thousand"), (1, "")):
        part = (k // size) % 1000
        if part:
            words += _below_thousand(part) + ([name] if name else [])
    return " ".join(words)


def numbers(n: int = 5000, seed: int = 0, max: int = 999) -> list[tuple[str, str]]:
    """Integer in digits -> English words, drawn uniformly from 0..max."""
    if n < 1 or not 0 <= max < 10**9:
        raise UsageError("numbers: need n >= 1 and 0 <= max <= 999999999")
    rng = random.Random(seed)
    return [(str(k), number_words(k)) for k in (rng.randint(0, max) for _ in range(n))]


def sentences(max_len: int = 60) -> list[str]:
    """The sentences of the packaged verse and fables (whitespace collapsed), at most ``max_len`` characters."""
    text = " ".join(resources.files("charlm.corpora").joinpath(name).read_text(encoding="utf-8")
                    for name in ("verse.txt", "fables.txt"))
    parts = re.split(r"(?<=[.!?;])\s+|\n\s*\n", text)
    out = []
    for p in parts:
        s = " ".join(p.split())
        if 2 <= len(s) <= max_len and s not in out:
            out.append(s)
    return out


def autoencode(n: int = 5000, seed: int = 0, max_len: int = 60) -> list[tuple[str, str]]:
    """Sentence -> the same sentence, drawn with replacement from ``sentences(max_len)``."""
    if n < 1 or max_len < 2:
        raise UsageError("autoencode: need n >= 1 and max_len >= 2")
    pool = sentences(max_len)
    rng = random.Random(seed)
    return [(s, s) for s in (rng.choice(pool) for _ in range(n))]


@dataclass(frozen=True)
class Task:
    description: str
    make: object             # make(**params) -> list[(source, target)]
    params: dict             # name -> default (integers)


TASKS: dict[str, Task] = {
    "reverse": Task("a random word -> the word reversed", reverse, {"n": 5000, "seed": 0, "min_len": 1, "max_len": 8}),
    "copy": Task("a random word -> the same word", copy, {"n": 5000, "seed": 0, "min_len": 1, "max_len": 8}),
    "dates": Task('"3 March 2021" -> "2021-03-03" (reverse=1: the other way)', dates,
                  {"n": 5000, "seed": 0, "reverse": 0, "weekday": 0}),
    "numbers": Task('"417" -> "four hundred seventeen"', numbers, {"n": 5000, "seed": 0, "max": 999}),
    "autoencode": Task("a sentence of the packaged texts -> the same sentence", autoencode,
                       {"n": 5000, "seed": 0, "max_len": 60}),
}


def is_task(spec: str) -> bool:
    return spec.partition(":")[0] in TASKS


def parse(spec: str) -> tuple[str, dict]:
    """``"dates:n=100,seed=2"`` -> ``("dates", {"n": 100, "seed": 2})`` (UsageError if bad)."""
    name, _, rest = spec.partition(":")
    if name not in TASKS:
        raise UsageError(f"unknown pair task {name!r}: choose one of {', '.join(TASKS)}, or pass a PAIRS file")
    allowed = TASKS[name].params
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            ok = ", ".join(f"{k}={v}" for k, v in allowed.items())
            raise UsageError(f"bad parameter {item!r} for pair task {name!r}: parameters are {ok}")
        try:
            params[key] = int(value.strip())
        except ValueError:
            raise UsageError(f"pair task {name!r}: {key} must be an integer, got {value!r}") from None
        if params[key] < 0:
            raise UsageError(f"pair task {name!r}: {key} must be >= 0")
    return name, params


def get(spec: str) -> list[tuple[str, str]]:
    """The pairs of a built-in task spec."""
    name, params = parse(spec)
    return TASKS[name].make(**params)

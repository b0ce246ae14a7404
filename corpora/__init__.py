"""Named corpora: ``charlm train NAME`` works without any file of your own.

    hello     a one-line text to memorise (smoke tests, the first thing to try)
    verse     a few KB of original verse written for this project
    fables    a few KB of original prose fables written for this project
    brackets  generated: balanced brackets of 4 kinds with deep, long-range nesting
    copy      generated: "random letters|the same letters" lines, a memory task
    stdlib    assembled on your machine from your Python's own standard library (*.py)
    docstrings  English prose from that library's docstrings (built locally, ~320 KB)
    korean    generated Korean sentences with word spacing (the `charlm tag --task spaces` demo)

Generated corpora take parameters after a colon: ``copy:size=20000,seed=3``,
``brackets:size=50000,depth=24``, ``stdlib:max_bytes=1000000``. Everything is
deterministic given the parameters. See README.md beside this file for details.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from charlm.errors import UsageError

from . import docstrings, korean, stdlib, synthetic


def _packaged(filename: str) -> Callable[..., str]:
    def load(notice=None) -> str:
        return resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")
    return load


@dataclass(frozen=True)
class Named:
    description: str
    load: Callable[..., str]         # load(**params, notice=...) -> str
    params: dict                     # parameter name -> default (its type is the default's type)


NAMED: dict[str, Named] = {
    "hello": Named("one line to memorise: the smallest possible training job", _packaged("hello.txt"), {}),
    "verse": Named("original verse written for charlm (a few KB)", _packaged("verse.txt"), {}),
    "fables": Named("original prose fables written for charlm (a few KB)", _packaged("fables.txt"), {}),
    "brackets": Named("generated balanced brackets ()[]{}<> with long-range nesting and filler letters",
                      synthetic.brackets, {"size": 300_000, "seed": 0, "depth": 16}),
    "copy": Named("generated copy task: 'letters|the same letters' per line",
                  synthetic.copy, {"size": 300_000, "seed": 0, "min_len": 8, "max_len": 48}),
    "stdlib": Named("this Python's standard library *.py files (built locally, cached)",
                    stdlib.get, {"max_bytes": stdlib.MAX_BYTES}),
    "docstrings": Named("English prose paragraphs from this Python's standard library docstrings (built locally)",
                        docstrings.get, {"max_bytes": docstrings.MAX_BYTES}),
    "korean": Named("generated Korean sentences with word spacing (templates over a small vocabulary)",
                    korean.generate, {"size": 200_000, "seed": 0}),
}


def names() -> list[str]:
    """Names of the registered corpora, in registry order."""
    return list(NAMED)


def parse(spec: str) -> tuple[str, dict]:
    """``"copy:size=100,seed=2"`` -> ``("copy", {"size": 100, "seed": 2})`` (UsageError if bad)."""
    name, _, rest = spec.partition(":")
    if name not in NAMED:
        raise UsageError(f"unknown corpus {name!r}: choose one of {', '.join(NAMED)}")
    allowed = NAMED[name].params
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            ok = ", ".join(f"{k}={v}" for k, v in allowed.items()) or "none"
            raise UsageError(f"bad parameter {item!r} for corpus {name!r}: parameters are {ok}")
        try:
            params[key] = type(allowed[key])(value.strip())
        except ValueError:
            raise UsageError(f"corpus {name!r}: {key} must be an integer, got {value!r}") from None
        if params[key] < 0:
            raise UsageError(f"corpus {name!r}: {key} must be >= 0")
    return name, params


def is_named(spec: str) -> bool:
    return spec.partition(":")[0] in NAMED


def get(spec: str, *, notice=None) -> str:
    """The text of a named corpus (``spec`` is a name, optionally with ``:key=value,...``)."""
    name, params = parse(spec)
    return NAMED[name].load(notice=notice, **params)

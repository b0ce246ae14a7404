"""Generated corpora for long-memory tasks, where gated cells (LSTM, GRU) beat a vanilla RNN.

Both generators are deterministic given their parameters (``random.Random(seed)``, whose
``random()``/``choices()`` sequences are stable across Python versions), and return
whole lines, stopping at the first line that reaches ``size`` characters.
"""

from __future__ import annotations

import random

from charlm.errors import UsageError

OPEN, CLOSE = "([{<", ")]}>"
FILLER = "abcdefgh"
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _bracket_line(rng: random.Random, depth: int) -> str:
    """One balanced line: opens, closes and filler letters, nested up to ``depth``."""
    length = rng.randint(16, 240)
    stack: list[int] = []
    out: list[str] = []
    while len(out) < length or stack:
        r = rng.random()
        if stack and (len(out) >= length or len(stack) >= depth or r < 0.3):
            out.append(CLOSE[stack.pop()])
        elif r < 0.62 and len(out) < length:
            k = rng.randrange(4)
            stack.append(k)
            out.append(OPEN[k])
        elif len(out) < length:
            out.append(FILLER[rng.randrange(len(FILLER))])
    return "".join(out) + "\n"


def brackets(size: int = 300_000, seed: int = 0, depth: int = 16, notice=None) -> str:
    """Lines of balanced ``()[]{}<>`` with filler letters: closing the right bracket needs
    a memory of every bracket still open, often opened 100+ characters earlier."""
    if size < 1 or depth < 1:
        raise UsageError("brackets: size and depth must be >= 1")
    rng = random.Random(seed)
    lines, n = [], 0
    while n < size:
        line = _bracket_line(rng, depth)
        lines.append(line)
        n += len(line)
    return "".join(lines)


def copy(size: int = 300_000, seed: int = 0, min_len: int = 8, max_len: int = 48, notice=None) -> str:
    """Lines ``<random letters>|<the same letters>``: the second half is predictable only
    by remembering the first, ``min_len``..``max_len`` characters back."""
    if size < 1 or not 1 <= min_len <= max_len:
        raise UsageError("copy: size must be >= 1 and 1 <= min_len <= max_len")
    rng = random.Random(seed)
    lines, n = [], 0
    while n < size:
        word = "".join(rng.choices(LETTERS, k=rng.randint(min_len, max_len)))
        line = f"{word}|{word}\n"
        lines.append(line)
        n += len(line)
    return "".join(lines)


def is_balanced(line: str) -> bool:
    """True when every bracket in ``line`` closes the most recent open one (for tests/evals)."""
    stack = []
    for ch in line:
        if ch in OPEN:
            stack.append(OPEN.index(ch))
        elif ch in CLOSE:
            if not stack or stack.pop() != CLOSE.index(ch):
                return False
    return not stack

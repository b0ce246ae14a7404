"""Learning proofs for seq2seq (small models, fixed seeds, one thread: seconds, not minutes)."""

from __future__ import annotations

from charlm.corpora.pairs import autoencode, dates, numbers, reverse

from charlm.seq2seq_run import Seq2SeqTrainConfig, train

MODEL = dict(cell="lstm", layers=1, hidden=64, embed=16)


def fit(pairs, steps, lr=1e-2, **model):
    cfg = Seq2SeqTrainConfig(batch_size=32, lr=lr, max_steps=steps, val_frac=0.0, log_every=10**6, threads=1)
    return train("pairs", None, {**MODEL, **model}, cfg, pairs=pairs)


def test_reversal_of_words_up_to_8_characters():
    tr = fit(reverse(10000, seed=0, max_len=8), 800)
    res = tr.evaluate(reverse(1000, seed=123, max_len=8))       # other random words (mostly never seen)
    assert res["exact"] >= 0.99, res


def test_dates_need_attention_at_long_sources():
    pairs = dates(3000, seed=0, weekday=1)                       # "Wednesday 3 March 2021" -> "2021-03-03"
    held_out = dates(400, seed=99, weekday=1)
    long = [p for p in held_out if len(p[0]) > 20]
    assert len(long) > 250
    with_attention = fit(pairs, 600, lr=5e-3, attention="general")   # lr 1e-2 stalls for some seeds
    assert with_attention.evaluate(held_out)["exact"] >= 0.98
    a = with_attention.evaluate(long)["exact"]
    b = fit(pairs, 600, lr=5e-3, attention="none").evaluate(long)["exact"]
    assert a >= 0.98 and a - b >= 0.3, (a, b)


def test_numbers_to_words():
    tr = fit(numbers(5000, seed=0), 600, lr=5e-3)               # "417" -> "four hundred seventeen"
    res = tr.evaluate(numbers(400, seed=99))                     # 0..999: the same numbers, drawn again
    assert res["exact"] >= 0.98, res


def test_autoencoding_sentences():
    pairs = autoencode(3000, seed=0, max_len=30)                 # the packaged texts' 26 sentences of <= 30 chars
    tr = fit(pairs, 300)
    res = tr.evaluate(autoencode(200, seed=9, max_len=30))       # drawn again from the same sentences
    assert res["exact"] >= 0.98, res

"""Beam search (charlm.beam): greedy at K = 1, better than greedy where greedy is wrong, exhaustive scores."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from clihelp import assert_clean_error, run
from test_generate import save

from charlm.beam import beam_search, lm_beam, log_softmax
from charlm.config import ModelConfig
from charlm.generate import Model, load
from charlm.model import CharLM
from charlm.tokenizer import CharTokenizer


def bigram_model(chars: str, probs: dict[str, dict[str, float]], floor: float = 1e-6) -> Model:
    """An exact bigram model: rnn relu, one-hot input, h = onehot(x), head = log P(next | x)."""
    tok = CharTokenizer(list(chars))
    V = len(tok)
    config = ModelConfig(vocab_size=V, cell="rnn", layers=1, hidden=V, embed=0, dropout=0.0, nonlinearity="relu")
    logp = np.full((V, V), math.log(floor))
    for a, row in probs.items():
        for b, p in row.items():
            logp[chars.index(a), chars.index(b)] = math.log(p)
    sd = {"rnn.weight_ih_l0": np.eye(V), "rnn.weight_hh_l0": np.zeros((V, V)),
          "rnn.bias_ih_l0": np.zeros(V), "rnn.bias_hh_l0": np.zeros(V),
          "head.weight": logp.T.copy(), "head.bias": np.zeros(V)}
    return Model(CharLM.from_state_dict(config, sd, dtype=np.float64), tok)


def random_model(cell="lstm", V=7, seed=0, dtype=np.float64) -> Model:
    tok = CharTokenizer(list("abcdefghij"[:V]))
    config = ModelConfig(vocab_size=V, cell=cell, layers=2, hidden=6, embed=3, dropout=0.0)
    net = CharLM(config, seed=seed, dtype=dtype)
    for v in net.params.values():       # sharper distributions than the default init: more varied argmaxes
        v *= 3.0
    return Model(net, tok)


def sequence_logp(m: Model, prime: str, ids) -> float:
    """log P(ids | prime) by running the whole sequence through the model (independent of the search)."""
    full = np.concatenate([m.tokenizer.encode(prime), np.asarray(ids, np.int32)]).astype(np.int32)
    logits, _ = m.model.logits(full[:-1].reshape(-1, 1), m.model.init_state(1))
    lp = log_softmax(logits[:, 0])
    P = len(prime)
    return float(sum(lp[P - 1 + t, v] for t, v in enumerate(ids)))


# P(b|a) = .6 > P(c|a) = .4 but after b everything is 1/3, after c 'c' is .9: greedy "bX" = .2, best "cc" = .36
CRAFTED = {"a": {"b": 0.6, "c": 0.4}, "b": {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, "c": {"a": 0.05, "b": 0.05, "c": 0.9}}


def test_crafted_model_greedy_is_suboptimal_and_beam_4_finds_the_better_sequence():
    m = bigram_model("abc", CRAFTED)
    greedy = m.sample(length=2, temperature=0, prime="a", echo_prime=False, seed=0)
    assert greedy[0] == "b"
    assert math.exp(sequence_logp(m, "a", m.tokenizer.encode(greedy))) == pytest.approx(0.2, rel=1e-4)
    one = lm_beam(m, "a", beam=1, length=2)[0]
    assert m.tokenizer.decode(one.ids) == greedy
    best = lm_beam(m, "a", beam=4, length=2)[0]
    assert m.tokenizer.decode(best.ids) == "cc"
    assert math.exp(best.logp) == pytest.approx(0.36, rel=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("prime", ["", "a", "bca"])
def test_beam_1_equals_greedy_sampling(cell, prime):
    m = random_model(cell, seed=3)
    greedy = m.sample(length=25, temperature=0, prime=prime, echo_prime=False, seed=0)
    hyp = lm_beam(m, prime, beam=1, length=25)
    assert len(hyp) == 1 and m.tokenizer.decode(hyp[0].ids) == greedy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_brute_force_enumeration(seed):
    m = random_model("lstm", V=3, seed=seed)
    n, prime = 4, "ab"
    brute = sorted(((sequence_logp(m, prime, ids), ids) for ids in itertools.product(range(3), repeat=n)),
                   key=lambda t: -t[0])
    exhaustive = lm_beam(m, prime, beam=3 ** (n - 1), length=n)          # K = V^(n-1): nothing is pruned
    got = [(h.logp, tuple(h.ids)) for h in exhaustive]
    assert [ids for _, ids in got] == [ids for _, ids in brute[:len(got)]]
    np.testing.assert_allclose([s for s, _ in got], [s for s, _ in brute[:len(got)]], rtol=0, atol=1e-9)
    for K in (2, 4):
        hyps = lm_beam(m, prime, beam=K, length=n)
        for h in hyps:                                                    # every score is the true log P
            assert h.logp == pytest.approx(sequence_logp(m, prime, h.ids), abs=1e-9)
        assert hyps[0].logp <= brute[0][0] + 1e-12
        assert [h.logp for h in hyps] == sorted((h.logp for h in hyps), reverse=True)


def fake_step(table):
    """A decoder whose next-symbol log-probs depend on the last symbol only: logp = table[x]."""
    return (lambda x, state: (table[x], state)), (lambda state, rows: state)


def test_length_penalty_and_ending_symbols():
    # symbol 0 = EOS. After start (2): EOS .5, 1 .5; after 1: EOS .3, 1 .7. Raw score prefers stopping at once,
    # a mean-per-symbol score (penalty 1) prefers the longer "1 1 1 ... EOS" paths.
    lp = np.log(np.array([[0.5, 0.5, 1e-9], [0.3, 0.7, 1e-9], [0.5, 0.5, 1e-9]]))
    step, reorder = fake_step(lp)
    ends = lambda ids: ids[-1] == 0
    raw = beam_search(step, reorder, None, 2, beam=3, max_len=6, length_penalty=0.0, ends=ends)
    assert raw[0].ids == [0] and raw[0].ended and raw[0].logp == pytest.approx(math.log(0.5))
    mean = beam_search(step, reorder, None, 2, beam=3, max_len=6, length_penalty=1.0, ends=ends)
    assert len(mean[0].ids) > 1
    for h in mean:
        assert h.score == pytest.approx(h.logp / len(h.ids))
    assert [h.score for h in mean] == sorted((h.score for h in mean), reverse=True)


def test_stop_string_ends_a_beam():
    m = bigram_model("abc", CRAFTED)
    hyps = lm_beam(m, "a", beam=3, length=10, stop=["cb"])
    for h in hyps:
        text = m.tokenizer.decode(h.ids)
        assert ("cb" in text) == h.ended and (not h.ended or text.endswith("cb"))


@pytest.fixture
def crafted_file(tmp_path):
    m = bigram_model("abc", CRAFTED)
    return save(tmp_path / "m.safetensors", m.config, m.model.state_dict(), m.tokenizer)


def test_cli_sample_beam(crafted_file):
    r = run("sample", crafted_file, "--beam", 4, "--length", 2, "--prime", "a")
    assert r.exit_code == 0, r.output
    assert r.stdout == "acc"
    r = run("sample", crafted_file, "--beam", 4, "-n", 2, "--prime", "a", "--num-samples", 2, "--no-echo-prime",
            "--temperature", "0.5")
    assert r.exit_code == 0, r.output
    assert r.stdout.split("\n\n---\n") == ["cc", "ba"]        # .36, then the first of three .2 ties
    assert "--temperature ignored" in r.stderr
    m = load(crafted_file)
    assert r.stdout.split("\n\n---\n") == [m.tokenizer.decode(h.ids) for h in lm_beam(m, "a", beam=4, length=2)[:2]]


def test_cli_sample_beam_bad_options(crafted_file):
    assert_clean_error(run("sample", crafted_file, "--beam", 2, "--num-samples", 3), 2, "--beam")
    assert_clean_error(run("sample", crafted_file, "--beam", 2, "--length-penalty", -1), 2, "--length-penalty")
    assert_clean_error(run("sample", crafted_file, "--beam", -2), 2, "--beam")

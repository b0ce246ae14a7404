"""charlm.generate: load, sample (stop, streaming, unknown prime symbols, byte level), eval, score."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import model as refmodel
from reference import sample as refsample

from charlm import checkpoint, generate
from charlm.config import ModelConfig, SampleConfig
from charlm.errors import UsageError
from charlm.generate import load
from charlm.model import CharLM
from charlm.tokenizer import CharTokenizer


def save(path, config, state_dict, tok):
    checkpoint.save_model(path, state_dict, model_config=config.to_dict(), tokenizer=tok.to_dict())
    return path


def cycle_model(path, tok, cycle, extra=None):
    """A model that deterministically predicts the symbol after each one in ``cycle`` (ids), any state.

    rnn relu, one-hot input, H = V: h = onehot(x), head = 10 * successor matrix.
    """
    V = len(tok)
    config = ModelConfig(vocab_size=V, cell="rnn", layers=1, hidden=V, embed=0, nonlinearity="relu")
    succ = {a: b for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True)}
    succ.update(extra or {})
    P = np.zeros((V, V), np.float32)
    for a, b in succ.items():
        P[b, a] = 10.0
    sd = {"rnn.weight_ih_l0": np.eye(V, dtype=np.float32), "rnn.weight_hh_l0": np.zeros((V, V), np.float32),
          "rnn.bias_ih_l0": np.zeros(V, np.float32), "rnn.bias_hh_l0": np.zeros(V, np.float32),
          "head.weight": P, "head.bias": np.zeros(V, np.float32)}
    return save(path, config, sd, tok)


@pytest.fixture
def abc(tmp_path):
    tok = CharTokenizer.from_text("abc\n")
    return load(cycle_model(tmp_path / "abc.safetensors", tok, list(tok.encode("abc\n"))))


TEXT = "the cat sat on the mat.\nthe dog ate the hat!\n"


@pytest.fixture(scope="module")
def lstm(tmp_path_factory):
    tok = CharTokenizer.from_text(TEXT)
    config = ModelConfig(vocab_size=len(tok), cell="lstm", layers=2, hidden=6, embed=4)
    path = tmp_path_factory.mktemp("m") / "model.safetensors"
    return load(save(path, config, CharLM(config, seed=3).state_dict(), tok))


# ---------------------------------------------------------------- sampling


def test_argmax_cycle_prime_and_echo(abc):
    assert abc.sample(length=10, temperature=0) == "abc\nabc\nab"      # empty prime: starts after "\n"
    assert abc.sample(length=5, temperature=0, prime="cab") == "cab" + "c\nabc"
    assert abc.sample(length=5, temperature=0, prime="cab", echo_prime=False) == "c\nabc"
    assert abc.sample(length=3, temperature=0.5, top_k=1, num_samples=3, seed=1) == ["abc"] * 3


def test_sampling_options_as_a_config_or_keywords(lstm):
    cfg = SampleConfig(length=40, temperature=0.7, top_k=5, seed=3, stop=("e",))
    assert lstm.sample(cfg, prime="th") == lstm.sample(length=40, temperature=0.7, top_k=5, seed=3, stop="e",
                                                        prime="th")
    assert lstm.sample(cfg, seed=4) == lstm.sample(length=40, temperature=0.7, top_k=5, seed=4, stop=["e"])
    with pytest.raises(TypeError, match="lenght"):
        lstm.sample(lenght=5)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_stop_strings(abc, monkeypatch, chunk):
    monkeypatch.setattr(generate, "CHUNK", chunk)
    assert abc.sample(length=50, temperature=0, stop=["c\na"]) == "abc\na"
    assert abc.sample(length=50, temperature=0, stop=["zzz", "\nab", "b"]) == "ab"   # the earliest end wins
    assert abc.sample(length=50, temperature=0, prime="ab", stop=["b"]) == "ab" + "c\nab"   # prime not searched
    assert abc.sample(length=3, temperature=0, stop=["c\na"]) == "abc"   # length ends it first
    assert abc.sample(length=50, temperature=0, stop="c") == "abc"   # one string is one stop string
    with pytest.raises(UsageError):
        abc.sample(stop=[""])
    with pytest.raises(UsageError, match="seed"):
        abc.sample(seed=-1)


def test_stop_matches_truncated_unconstrained_sample(lstm):
    full = lstm.sample(length=300, seed=5, temperature=1.0)
    stop = full[40:42]
    cut = lstm.sample(length=300, seed=5, temperature=1.0, stop=[stop])
    end = full.index(stop) + len(stop)
    assert cut == full[:end]


def test_streaming_yields_chunks_before_the_end(abc, monkeypatch):
    from charlm.backends.cpu import sample as kernels

    calls = []
    real = kernels.generate
    monkeypatch.setattr(kernels, "generate", lambda *a: (calls.append(1), real(*a)))
    monkeypatch.setattr(generate, "CHUNK", 3)
    it = abc.iter_sample(length=10, temperature=0, prime="c")
    assert next(it) == ["c"]                     # the echoed prime comes first, before any generation
    assert next(it) == ["\nab"] and len(calls) == 1
    got = []
    assert abc.sample(length=10, temperature=0, stream=lambda i, s: got.append((i, s))) == "abc\nabc\nab"
    assert got == [(0, "abc"), (0, "\nab"), (0, "c\na"), (0, "b")]


def test_seed_determinism(lstm):
    a = lstm.sample(length=80, seed=42, prime="the ", top_p=0.9)
    assert a == lstm.sample(length=80, seed=42, prime="the ", top_p=0.9)
    assert a != lstm.sample(length=80, seed=43, prime="the ", top_p=0.9)
    assert a.startswith("the ") and len(a) == 84
    two = lstm.sample(length=30, seed=42, num_samples=2)
    assert isinstance(two, list) and len(two) == 2 and two[0] != two[1]


def test_temperature_zero_matches_reference(lstm):
    params = {k: v.astype(np.float64) for k, v in lstm.model.state_dict().items()}
    tok = lstm.tokenizer
    prime = tok.encode("the d")
    want = refsample.sample(lstm.config, params, prime, None, 40, 0.0, 0, 1.0, None)[0]
    assert lstm.sample(length=40, temperature=0, prime="the d", echo_prime=False) == tok.decode(want)


def test_unknown_prime_policies(abc):
    with pytest.raises(UsageError, match="'X'"):
        abc.sample(length=3, temperature=0, prime="abX")
    notes = []
    # skip: the model sees "ab" -> continues with "c"; replace: X -> the most frequent symbol (ties: lowest id,
    # "\n"), so the model sees "ab\n" -> continues with "a"
    assert abc.sample(length=2, temperature=0, prime="abX", unknown="skip", notice=notes.append) == "abX" + "c\n"
    assert abc.sample(length=2, temperature=0, prime="abX", unknown="replace", notice=notes.append) == "abX" + "ab"
    assert "skipped" in notes[0] and "'X'" in notes[0]
    assert "replaced" in notes[1] and "most frequent" in notes[1]
    with pytest.raises(UsageError):
        abc.sample(prime="a", unknown="ignore")


def test_replace_uses_the_tokenizer_unknown_id(tmp_path):
    tok = CharTokenizer.from_text("aab", max_vocab=1, unknown="replace")   # vocab: a, <unk>
    assert tok.unk_id == 1
    m = load(cycle_model(tmp_path / "u.safetensors", tok, [0], extra={1: 1}))   # a -> a, unk -> unk
    notes = []
    out = m.sample(length=2, temperature=0, prime="aZ", unknown="replace", notice=notes.append)
    assert out == "aZ" + "\ufffd\ufffd" and "unknown id" in notes[0]


@pytest.mark.parametrize("chunk", [1, 2, 64])
def test_byte_level_never_splits_characters(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(generate, "CHUNK", chunk)
    tok = CharTokenizer([0x61, 0xA9, 0xC3], level="byte", counts=[2, 1, 1])   # ids: a=0, 0xa9=1, 0xc3=2
    m = load(cycle_model(tmp_path / "b.safetensors", tok, [2, 1, 0]))
    pieces = []
    out = m.sample(length=6, temperature=0, stream=lambda i, s: pieces.append(s))   # start: most frequent, "a"
    assert out == "éaéa" and "".join(pieces) == out
    assert all("\ufffd" not in p for p in pieces)
    assert m.sample(length=7, temperature=0) == "éaéa\ufffd"          # a dangling lead byte at the very end
    assert m.sample(length=3, temperature=0, prime="é", echo_prime=False) == "aé"


# ---------------------------------------------------------------- eval and score


def reference_nats(model, ids):
    params = {k: v.astype(np.float64) for k, v in model.model.state_dict().items()}
    L, H = model.config.layers, model.config.hidden
    x = np.asarray(ids[:-1]).reshape(-1, 1)
    y = np.asarray(ids[1:]).reshape(-1, 1)
    logits, _, _ = refmodel.forward(model.config, params, x, np.zeros((L, 1, H)), np.zeros((L, 1, H)))
    return float(refmodel.xent(logits, y).sum()), x.size


@pytest.mark.parametrize("window", [5, 256])
def test_eval_matches_definition(lstm, monkeypatch, window):
    monkeypatch.setattr(generate, "WINDOW", window)
    text = TEXT[:23]
    total, n = reference_nats(lstm, lstm.tokenizer.encode(text))
    res = lstm.eval(text)
    assert res["chars"] == n == 22 and res["skipped"] == 0
    assert res["loss_nats"] == pytest.approx(total / n, rel=1e-5)
    assert res["bpc"] == pytest.approx(total / n / math.log(2), rel=1e-5)
    assert res["perplexity"] == pytest.approx(math.exp(total / n), rel=1e-5)


def test_eval_unknown_characters(lstm):
    with pytest.raises(UsageError, match="'Z'"):
        lstm.eval("the Zcat")
    notes = []
    res = lstm.eval("the ZcatZ", unknown="skip", notice=notes.append)
    assert res["skipped"] == 2 and res["chars"] == 6 and "2" in notes[0]
    assert res["loss_nats"] == pytest.approx(lstm.eval("the cat")["loss_nats"], rel=1e-6)
    with pytest.raises(UsageError, match="too short"):
        lstm.eval("t")


def test_score_lines(lstm):
    rows = lstm.score("the cat\n\nt\n")
    assert [r["line"] for r in rows] == [1, 2, 3]
    nl = lstm.tokenizer.encode("\nthe cat")
    total, n = reference_nats(lstm, nl)
    assert rows[0]["chars"] == 7 == n
    assert rows[0]["bpc"] == pytest.approx(total / n / math.log(2), rel=1e-5)
    assert rows[1] == {"line": 2, "chars": 0, "loss_nats": None, "bpc": None}
    assert rows[2]["chars"] == 1 and rows[2]["bpc"] > 0


def test_load_errors(tmp_path):
    from charlm.errors import CharlmError

    with pytest.raises(CharlmError):
        load(tmp_path / "missing.safetensors")
    tok = CharTokenizer.from_text("abc")
    config = ModelConfig(vocab_size=4, cell="rnn", layers=1, hidden=2, embed=0)
    path = save(tmp_path / "bad.safetensors", config, CharLM(config).state_dict(), tok)
    with pytest.raises(CharlmError, match="tokenizer has 3 symbols"):
        load(path)


def test_sample_model_uses_current_weights(lstm):
    model = CharLM(lstm.config, seed=9)
    a = generate.sample_model(model, lstm.tokenizer, length=40, seed=1)
    assert a == generate.sample_model(model, lstm.tokenizer, length=40, seed=1)
    model.params["head.bias"][...] = -50.0
    model.params["head.bias"][3] = 50.0
    b = generate.sample_model(model, lstm.tokenizer, length=40, seed=1)
    assert b != a and len(set(b)) == 1          # the weights changed after the first call: no stale cache

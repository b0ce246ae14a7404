"""`charlm inspect`: the report's numbers (surprisal = score/eval, states = the model's forward,
a bracket-depth unit found on bracket text), bad inputs, the JSON, and the page in a real browser.

The browser test drives Debian's Chromium (/usr/bin/chromium, or $CHARLM_CHROMIUM) through the
`playwright` package and skips with a reason when either is missing. Its screenshot is kept in
$CHARLM_TEST_ARTIFACTS (default: test-artifacts/ at the repository root, not committed).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from clihelp import assert_clean_error, run
from reference import gru as ref_gru
from reference import lstm as ref_lstm

from charlm.config import ModelConfig
from charlm.generate import Model, load
from charlm.model import CharLM
from charlm.report import FEATURES, build, forward_states, text_features
from charlm.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parent.parent
BRACKETS_TRAIN = "brackets:size=60000,depth=8"
BRACKETS_TEXT = "brackets:size=6000,depth=8,seed=5"


@pytest.fixture(scope="module")
def bracket_run(tmp_path_factory):
    """A small LSTM trained briefly on bracket text (a few seconds on a quiet machine)."""
    from charlm.train import train

    out = tmp_path_factory.mktemp("report") / "br"
    train([BRACKETS_TRAIN], {"cell": "lstm", "layers": 1, "hidden": 32, "embed": 16, "seq_len": 64,
                             "batch_size": 32, "lr": 1e-2, "lr_schedule": "constant", "dropout": 0.0,
                             "max_steps": 300, "eval_every": 150, "log_every": 30, "seed": 1, "out": str(out)})
    return out


@pytest.fixture(scope="module")
def bracket_text():
    from charlm import corpora

    return corpora.get(BRACKETS_TEXT)


def _model(cell, layers=2, hidden=12, embed=5, text="ab(c)d\n\"e\" [f{g}]  h\n", seed=3, relu=False):
    tok = CharTokenizer.from_text(text)
    cfg = ModelConfig(cell=cell, vocab_size=len(tok), embed=embed, hidden=hidden, layers=layers,
                      nonlinearity="relu" if relu else "tanh")
    return Model(CharLM(cfg, seed=seed), tok)


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize("cell,embed,relu", [("lstm", 5, False), ("gru", 0, False), ("rnn", 4, True)])
def test_states_equal_the_models_forward(cell, embed, relu):
    """Windows of 64 with carried state give, row by row, the state and logits of the model's own forward
    (CharLM.logits one character at a time), and the gates of the plain-numpy reference cells."""
    m = _model(cell, embed=embed, relu=relu)
    rng = np.random.default_rng(0)
    seq = rng.integers(0, m.config.vocab_size, 150).astype(np.int32)
    chunks = list(forward_states(m.model, seq, window=64))
    assert [s for s, _, _ in chunks] == [0, 64, 128]
    logits = np.concatenate([lg for _, lg, _ in chunks])                         # (T, V)
    layers = [{k: np.concatenate([ly[i][k] for _, _, ly in chunks]) for k in chunks[0][2][i]}
              for i in range(m.config.layers)]
    state = m.model.init_state(1)
    for t in range(seq.size):
        want, state = m.model.logits(seq[t:t + 1].reshape(1, 1), state)
        np.testing.assert_allclose(logits[t], want[0, 0], atol=2e-5)
        for k, ly in enumerate(layers):
            np.testing.assert_allclose(ly["h"][t], state[0][k, 0], atol=2e-6)
            if cell == "lstm":
                np.testing.assert_allclose(ly["c"][t], state[1][k, 0], atol=2e-6)
    p, H = m.model.params, m.config.hidden
    x = p["embed.weight"][seq] if embed else np.eye(m.config.vocab_size, dtype=np.float32)[seq]
    for k, ly in enumerate(layers):
        w = [p[f"rnn.{n}_l{k}"].astype(np.float64) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        x3, h0 = x.astype(np.float64)[:, None], np.zeros((1, H))
        if cell == "lstm":
            _, _, acts = ref_lstm.forward(x3, h0, h0, *w)                         # i, f, g, o
            want = acts[:, 0].reshape(-1, 4, H)[:, [0, 1, 3]]
        elif cell == "gru":
            _, acts = ref_gru.forward(x3, h0, *w)                                 # r, z, n, hn
            want = acts[:, 0].reshape(-1, 4, H)[:, :2]
        else:
            assert "gates" not in ly
            break
        np.testing.assert_allclose(ly["gates"], want, atol=1e-5)
        x = ly["h"]


def test_states_equal_torch():
    """The kept activations are torch.nn.LSTM's outputs on the same weights (oracle, when installed)."""
    torch = pytest.importorskip("torch")
    m = _model("lstm", layers=2, hidden=10, embed=0)
    ids = m.tokenizer.encode("ab(c)d\n\"e\" [f{g}]  h\n" * 3)
    data = build(m, ids)
    sd = m.model.state_dict()
    lstm = torch.nn.LSTM(m.config.vocab_size, 10, 2)
    lstm.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in sd.items() if k.startswith("rnn.")})
    seq = np.concatenate([[m.tokenizer.encode("\n")[0]], ids])
    x = torch.nn.functional.one_hot(torch.from_numpy(seq).long(), m.config.vocab_size).float()[:, None]
    with torch.no_grad():
        out, _ = lstm(x)
    np.testing.assert_allclose(data["activations"]["layers"][1]["h"], out[1:, 0].numpy(), atol=1e-5)


def test_surprisal_equals_score_and_eval(bracket_run, bracket_text):
    m = load(bracket_run)
    lines = bracket_text.splitlines()[:4]
    scores = list(m.score_lines(lines))
    for line, row in zip(lines, scores, strict=True):
        d = build(m, m.tokenizer.encode(line))
        assert d["predicted"] == row["chars"] == len(line)
        assert abs(d["bpc"] - row["bpc"]) < 1e-5
    text = "\n".join(lines)
    d = build(m, m.tokenizer.encode(text))
    assert abs(d["bpc"] - m.eval("\n" + text)["bpc"]) < 1e-5
    # per character: -log2 softmax of the model's own logits, position by position
    seq = np.concatenate([m.tokenizer.encode("\n"), m.tokenizer.encode(text)])
    logits, _ = m.model.logits(seq[:-1].reshape(-1, 1), m.model.init_state(1))
    z = logits[:, 0].astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    want = -logp[np.arange(seq.size - 1), seq[1:]] / math.log(2)
    np.testing.assert_allclose(d["surprisal_bits"], want, atol=1e-5)
    # top-k: the most probable symbols in order, their probabilities from the same softmax
    np.testing.assert_array_equal(d["topk"]["ids"][:, 0], logp.argmax(1))
    np.testing.assert_allclose(d["topk"]["probs"], np.exp(np.sort(logp, 1)[:, ::-1][:, :5]), atol=1e-6)


def test_a_bracket_depth_unit_is_ranked_in_the_top_ten(bracket_run, bracket_text):
    m = load(bracket_run)
    d = build(m, m.tokenizer.encode(bracket_text))
    top = [r for r in d["ranked"][:10] if r["feature"] == "bracket_depth" and abs(r["r"]) >= 0.5]
    assert top, d["ranked"][:10]
    # the r shown is the correlation of that unit's kept states with the feature
    r0 = top[0]
    x = d["activations"]["layers"][r0["layer"]][r0["state"]][:, r0["unit"]]
    f = d["features"]["values"][: x.size, FEATURES.index("bracket_depth")]
    assert abs(np.corrcoef(x, f)[0, 1] - r0["r"]) < 1e-4


def test_text_features():
    toks = list('a("b)"\n  x[y]\n')
    f = {name: text_features(toks)[:, j].tolist() for j, name in enumerate(FEATURES)}
    assert f["in_quotes"] == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert f["bracket_depth"] == [0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    assert f["in_brackets"] == [float(v > 0) for v in f["bracket_depth"]]
    assert f["line_position"] == [1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0]
    assert f["indentation"] == [0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 0]
    assert f["after_newline"] == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]


def test_byte_level_tokens_show_whole_characters():
    text = "h\u00e9 (\u00fc) \U0001f44b\n"
    tok = CharTokenizer.from_text(text, level="byte")
    cfg = ModelConfig(cell="gru", vocab_size=len(tok), embed=4, hidden=6, layers=1)
    d = build(Model(CharLM(cfg, seed=1), tok), tok.encode(text))
    assert len(d["tokens"]) == len(text.encode()) and "".join(d["tokens"]) == text
    assert d["tokens"][1:3] == ["", "\u00e9"]                     # the character on its last byte
    assert np.isfinite(d["surprisal_bits"]).all() and d["predicted"] == len(text.encode())


def test_gate_saturation_fractions():
    m = _model("gru", layers=1)
    d = build(m, m.tokenizer.encode("ab(c)d\n" * 10))
    (g,) = d["gates"]
    assert g["names"] == ["r", "z"] and g["low"].shape == (2, m.config.hidden)
    assert ((g["low"] >= 0) & (g["low"] + g["high"] <= 1 + 1e-12)).all()
    assert build(_model("rnn"), m.tokenizer.encode("abc"))["gates"] == []


def test_activation_span_is_bounded():
    m = _model("lstm", layers=2, hidden=12)
    ids = m.tokenizer.encode("ab(c)d\n" * 50)
    d = build(m, ids, act_values=2 * 2 * 12 * 40)
    assert d["activations"]["span"] == 40
    assert d["activations"]["layers"][0]["c"].shape == (40, 12)
    full = build(m, ids)
    np.testing.assert_array_equal(d["activations"]["layers"][1]["h"], full["activations"]["layers"][1]["h"][:40])
    np.testing.assert_allclose(d["correlations"]["layers"][0]["h"], full["correlations"]["layers"][0]["h"])


# ---------------------------------------------------------------- the command


def test_json_schema(bracket_run, tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("(ab[c]d)\n{e}\n", encoding="utf-8")
    r = run("inspect", bracket_run, src, "--json", "-")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    N = len("(ab[c]d)\n{e}\n")
    assert d["schema"] == "charlm-inspect/1"
    assert len(d["tokens"]) == len(d["ids"]) == len(d["surprisal_bits"]) == N
    assert "".join(d["tokens"]) == src.read_text()
    assert d["topk"]["k"] == 5 and all(len(row) == 5 for row in d["topk"]["ids"])
    assert set(d["features"]["values"]) == set(FEATURES)
    layer = d["activations"]["layers"][0]
    assert len(layer["h"]) == len(layer["c"]) == N and len(layer["h"][0]) == 32
    assert d["summary"]["model"]["total_params"] > 0 and d["metrics"]
    assert d["ranked"] and {"layer", "state", "unit", "feature", "r"} <= set(d["ranked"][0])


def test_bad_inputs(bracket_run, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_clean_error(run("inspect", bracket_run, empty, "-o", tmp_path / "r.html"), 2, "empty")
    odd = tmp_path / "odd.txt"
    odd.write_text("(a)ZZ[b]\n")
    assert_clean_error(run("inspect", bracket_run, odd, "-o", tmp_path / "r.html"), 2, "'Z'", "--unknown skip")
    r = run("inspect", bracket_run, odd, "--unknown", "skip", "--json", "-")
    assert r.exit_code == 0 and "skipped" in r.stderr and "'Z'" in r.stderr
    assert "".join(json.loads(r.stdout)["tokens"]) == "(a)[b]\n"
    assert_clean_error(run("inspect", bracket_run, odd), 2, "-o REPORT.html")
    assert_clean_error(run("inspect", bracket_run, odd, "--json", "-", "--max-chars", "0"), 2, "--max-chars")
    for opt in ("-o", "--json"):  # a directory is refused before any work, as a usage error
        assert_clean_error(run("inspect", bracket_run, odd, opt, tmp_path), 2, "is a directory")
    assert not (tmp_path / "r.html").exists()


def test_a_huge_text_is_cut_to_a_bound(bracket_run, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("(ab[cd]e)\n" * 1_000_000)                      # 10 MB
    out = tmp_path / "r.html"
    r = run("inspect", bracket_run, big, "-o", out)
    assert r.exit_code == 0, r.output
    assert "first 10,000 of 10,000,000 characters" in r.stderr
    assert out.stat().st_size < 3_000_000                            # "a few MB" for 10,000 characters


def test_stdin_and_validation_split(bracket_run):
    r = run("inspect", bracket_run, "-", "--json", "-", input="(a)\n")
    assert r.exit_code == 0 and json.loads(r.stdout)["tokens"] == list("(a)\n")
    r = run("inspect", bracket_run, "--json", "-", "--max-chars", "300")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["tokens"]) == 300


# ---------------------------------------------------------------- the page in a browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    exe = os.environ.get("CHARLM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(exe):
        pytest.skip("no Chromium: apt-get install chromium (or set CHARLM_CHROMIUM)")
    return exe


@contextlib.contextmanager
def _browser_page():
    """(page, errors, requests) in a fresh headless Chromium profile; skips when there is no browser."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
    exe = _chromium()
    errors, requests = [], []
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        try:
            ctx = p.chromium.launch_persistent_context(profile, executable_path=exe, args=CHROMIUM_ARGS,
                                                       headless=True, viewport={"width": 1200, "height": 900})
        except Exception as e:                                   # noqa: BLE001 - a browser that cannot start
            pytest.skip(f"Chromium does not start here: {str(e).splitlines()[0]}")
        page = ctx.new_page()
        page.on("console", lambda msg: errors.append(msg.text) if msg.type in ("error", "warning") else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda req: requests.append(req.url))
        try:
            yield page, errors, requests
        finally:
            ctx.close()


def _colours(spans):
    return spans.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")


def test_page_in_a_headless_browser(bracket_run, bracket_text, tmp_path):
    text = bracket_text[:3000]
    src = tmp_path / "t.txt"
    src.write_text(text, encoding="utf-8")
    page_path = tmp_path / "report.html"
    r = run("inspect", bracket_run, src, "-o", page_path)
    assert r.exit_code == 0, r.output
    artifacts = Path(os.environ.get("CHARLM_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with _browser_page() as (page, errors, requests):
        page.goto(page_path.as_uri())
        spans = page.locator("#text span.ch")
        assert spans.count() == len(text)
        assert page.locator("#text").text_content() == text
        colours = _colours(spans)
        assert len(colours) == len(text) and all(c.startswith("rgb") for c in colours)
        assert len(set(colours)) > 5                              # surprisal varies
        assert "bits/char" in page.locator("#head").inner_text()
        # click the top-ranked unit: the colouring becomes that unit's activations
        rows = page.locator("#ranked tbody tr")
        assert rows.count() >= 10
        rows.nth(0).click()
        after = _colours(spans)
        assert page.locator("#mode").input_value() == "neuron"
        assert sum(a != b for a, b in zip(colours, after, strict=True)) > len(text) // 2
        assert "unit" in page.locator("#note").inner_text()
        rows.nth(1).click()
        third = _colours(spans)
        assert third != after
        # hover a character: its top-5 predictions with probabilities
        spans.nth(40).hover()
        tip = page.locator("#tip")
        assert tip.is_visible()
        assert tip.locator("tr.top").count() == 5
        probs = [float(x) for x in tip.locator("tr.top td:last-child").all_inner_texts()]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        assert "surprisal" in tip.inner_text()
        assert page.locator("#gates svg circle").count() == 3 * 32
        assert page.locator("#curves svg polyline").count() == 2
        assert "Total params" in page.locator("#summary").inner_text()
        page.screenshot(path=str(artifacts / "report.png"), full_page=True)
    assert errors == []
    assert requests == [page_path.as_uri()]


def test_page_of_a_plain_rnn_without_a_run(tmp_path):
    """No cell state, no gates, no metrics: the page still works; the unit box picks any unit."""
    from charlm.report_html import write

    m = _model("rnn", layers=2, hidden=8)
    text = 'ab(c)d\n"e" [f{g}]  h\n' * 5
    data = build(m, m.tokenizer.encode(text), path="untrained rnn")
    page_path = tmp_path / "rnn.html"
    write(data, page_path)
    with _browser_page() as (page, errors, requests):
        page.goto(page_path.as_uri())
        spans = page.locator("#text span.ch")
        assert spans.count() == len(text)
        before = _colours(spans)
        page.select_option("#mode", "neuron")
        page.select_option("#layer", "1")
        page.fill("#unit", "7")
        after = _colours(spans)
        assert after != before and "layer 1 hidden state unit 7" in page.locator("#note").inner_text()
        assert page.locator("#state option").count() == 1
        assert "no gates" in page.locator("#gates").inner_text()
        assert "no metrics" in page.locator("#curves").inner_text()
    assert errors == []
    assert requests == [page_path.as_uri()]

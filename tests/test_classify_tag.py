"""charlm classify / charlm tag: learning proofs (seconds, fixed seeds, one thread), the CLI,
and bad input as one-line errors naming the line."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from clihelp import assert_clean_error, run

from charlm import labeled, seqtrain

CORPORA = Path(__file__).resolve().parents[1] / "corpora"
FAST = {"lr": 0.01, "batch_size": 16, "eval_every": 100, "seed": 1, "threads": 1}
BI48, UNI72 = {"cell": "lstm", "hidden": 48, "embed": 24}, {"cell": "lstm", "hidden": 72, "embed": 24}  # ~30k params


def first_char_task(n, seed=0):
    """Label = the FIRST character of a random a/b/c string of 6..15: read at the last step,
    a unidirectional model must carry it across the whole sequence."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = "".join(rng.choice(list("abc"), rng.integers(6, 16)))
        out.append((s, s[0]))
    return out


def test_classifier_learns_a_memory_task(tmp_path):
    res = seqtrain.train(first_char_task(1000), {"task": "classify", "vocab_size": 0, "num_labels": 0,
                                                 "cell": "lstm", "hidden": 24, "embed": 8},
                         out=tmp_path, train=dict(FAST, batch_size=32, max_steps=300, val_frac=0.2))
    assert res["split"] == "val" and res["accuracy"] >= 0.98, res
    assert np.array(res["confusion"]).sum() == 200
    assert (tmp_path / "model.safetensors").exists()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


def held_out_f1(run, examples, max_len=200) -> float:
    model, vocab, _, _ = seqtrain.load(run)
    seqs = seqtrain.encode(vocab, [t for t, _ in examples], max_len)
    return seqtrain.evaluate(model, seqs, [np.array([int(x) for x in tags]) for _, tags in examples])["f1"]


def spaces_bi_vs_uni(tmp_path, text, held, bi, uni, train, max_len=200):
    """Train a bidirectional and a unidirectional --task spaces tagger on ``text``; the F1 of each
    on every held-out text of ``held`` (name -> text, never seen in training), parameter counts."""
    ex = labeled.tag_task(text, "spaces", max_len)
    held = {k: labeled.tag_task(t, "spaces", max_len) for k, t in held.items()}
    f1, size = {}, {}
    for name, shape in (("bi", dict(bi, bidirectional=True)), ("uni", dict(uni, bidirectional=False))):
        cfg = {"task": "tag", "vocab_size": 0, "num_labels": 0, **shape}
        tc = dict(FAST, val_frac=0.0, eval_every=train["max_steps"], **train)  # one evaluation, at the end
        seqtrain.train(ex, cfg, out=tmp_path / name, train=tc, max_len=max_len, task_name="spaces")
        f1[name] = {k: held_out_f1(tmp_path / name, h, max_len) for k, h in held.items()}
        size[name] = seqtrain.load(tmp_path / name)[0].P.size
    print(f"held-out F1: {f1}, parameters {size}")
    return f1, size


def test_spaces_on_held_out_english_bidirectional_beats_unidirectional(tmp_path):
    """--task spaces on English prose (the docstrings corpus, ~320 KB built from the local
    standard library): after 400 steps of 64 lines a bidirectional LSTM(48) restores the spaces of the held-out
    last 10% of the lines (other modules' docstrings) with F1 >= 0.95, and a unidirectional
    LSTM(72) with about as many parameters stays far behind: it must decide whether a word ends
    before seeing the next character."""
    from charlm.corpora import docstrings

    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        pytest.skip(f"this Python has no standard library sources at {root}")
    text, _ = docstrings.build(root)
    assert len(text) > 200_000, len(text)
    lines = text.splitlines()
    k = int(0.9 * len(lines))
    held = "\n".join(lines[k:])
    f1, size = spaces_bi_vs_uni(tmp_path, "\n".join(lines[:k]), {"en": held},
                                BI48, UNI72,
                                {"lr": 0.01, "batch_size": 64, "max_steps": 400})
    assert len(held.replace(" ", "")) > 20_000 and abs(size["uni"] / size["bi"] - 1) < 0.1, size
    assert f1["bi"]["en"] >= 0.95, f1
    assert f1["bi"]["en"] >= f1["uni"]["en"] + 0.1, f1


def test_spaces_on_korean_bidirectional_beats_unidirectional(tmp_path):
    """The Korean demo: trained on the generated korean corpus, tested on other generated
    sentences (seed 1, ~3,900 characters) and on the hand-written corpora/korean.txt (other
    words, other grammar). Korean spaces follow particles and endings (는, 가, 고) that also
    sit inside words (읽는다, 가방, 고양이): the next character decides, which only a
    bidirectional tagger sees."""
    from charlm.corpora import korean

    held = {"generated": korean.generate(5000, seed=1), "written": (CORPORA / "korean.txt").read_text()}
    f1, _ = spaces_bi_vs_uni(tmp_path, korean.generate(100_000, seed=0), held,
                             BI48, UNI72,
                             {"lr": 0.01, "batch_size": 32, "max_steps": 300})
    assert f1["bi"]["generated"] >= 0.98 and f1["bi"]["generated"] >= f1["uni"]["generated"] + 0.02, f1
    assert f1["bi"]["written"] >= f1["uni"]["written"] + 0.1, f1


def test_tag_task_examples_and_restore():
    ex = labeled.tag_task("The cat sat.\nOn a Mat", "spaces")
    assert ex[0] == ("Thecatsat.", list("0010010000"))
    assert labeled.apply_tags(*ex[1], "spaces") == "On a Mat"
    case = labeled.tag_task("On a Mat", "case")
    assert case[0][0] == "on a mat" and labeled.apply_tags(*case[0], "case") == "On a Mat"


def test_stratified_split_keeps_every_label_in_training():
    labels = ["a"] * 10 + ["b"] * 5 + ["c"]
    tr, va = labeled.stratified_split(labels, 0.2, 0)
    assert sorted(np.concatenate([tr, va])) == list(range(16))
    assert [labels[i] for i in va].count("a") == 2 and [labels[i] for i in va].count("b") == 1
    assert "c" in [labels[i] for i in tr] and "c" not in [labels[i] for i in va]


def test_classify_cli_train_predict_eval(tmp_path):
    data = tmp_path / "d.tsv"
    data.write_bytes(b"\xef\xbb\xbf" + "".join(f"{t}\t{lab}\r\n" for t, lab in first_char_task(120)).encode())
    out = tmp_path / "run"
    r = run("classify", "train", data, "--out", out, "--hidden", 8, "--embed", 4, "--max-steps", 20,
            "--eval-every", 10, "--bidirectional", "--pool", "mean", "--threads", 1)
    assert r.exit_code == 0, r.output
    assert "macro-F1" in r.stdout and "true\\pred" in r.stdout
    r = run("classify", "predict", out, "abc", "--top-k", 2)
    assert r.exit_code == 0 and len(r.stdout.split("\t")) == 4
    r = run("classify", "predict", out, "--json", input="abc\ncab\n")
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["text"] for x in rows] == ["abc", "cab"]
    assert all(len(x["labels"]) == 1 and 1 / 3 <= x["labels"][0][1] <= 1 for x in rows)  # the top label
    r = run("classify", "eval", out, data, "--json")
    assert r.exit_code == 0 and len(json.loads(r.stdout)["confusion"]) == 3
    r = run("plot", out, "--confusion")
    assert r.exit_code == 0 and r.stdout.splitlines()[0].split() == ["true\\pred", "a", "b", "c"]


def test_sigmoid_head_and_jsonl_and_directory(tmp_path):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t, "label": t[0] == "a"}) + "\n"
                                              for t, _ in first_char_task(60)))
    r = run("classify", "train", tmp_path / "d.jsonl", "--out", tmp_path / "r", "--head", "sigmoid",
            "--hidden", 6, "--embed", 4, "--max-steps", 5, "--threads", 1)
    assert r.exit_code == 0, r.output
    for lab in ("pos", "neg"):
        (tmp_path / "dir" / lab).mkdir(parents=True)
        for k in range(3):
            (tmp_path / "dir" / lab / f"{k}.txt").write_text(f"{lab} text {k}")
    assert sorted({lab for _, lab in labeled.read_labeled(tmp_path / "dir")}) == ["neg", "pos"]
    three = tmp_path / "three.tsv"
    three.write_text("".join(f"{t}\t{lab}\n" for t, lab in first_char_task(30)))
    assert_clean_error(run("classify", "train", three, "--out", tmp_path / "r3", "--head", "sigmoid"), 2,
                       "--head sigmoid needs exactly two labels")


def test_tag_cli_spaces_and_user_tags(tmp_path):
    out = tmp_path / "sp"
    r = run("tag", "train", CORPORA / "verse.txt", "--task", "spaces", "--out", out, "--hidden", 8,
            "--embed", 4, "--max-steps", 10, "--threads", 1)
    assert r.exit_code == 0, r.output
    assert seqtrain.load(out)[0].config.bidirectional  # taggers read both ways unless --unidirectional
    r = run("tag", out, "thelamplighter")
    assert r.exit_code == 0 and r.stdout.replace(" ", "").strip() == "thelamplighter"
    r = run("tag", out, "--json", input="ab cd\n")
    assert json.loads(r.stdout)["input"] == "abcd"
    r = run("tag", "eval", out, "fables")  # a named corpus where a path would go
    assert r.exit_code == 0 and r.stdout.startswith("fables: loss"), r.output
    assert_clean_error(run("tag", "eval", out, "nosuchcorpus"), 2, "no such file, directory or named corpus")
    user = tmp_path / "t.jsonl"
    user.write_text(json.dumps({"text": "abc", "tags": ["X", "Y", "X"]}) + "\n" +
                    json.dumps({"text": "ba", "tags": ["Y", "X"]}) + "\n")
    r = run("tag", "train", user, "--out", tmp_path / "u", "--hidden", 4, "--embed", 2, "--max-steps", 3,
            "--val-frac", 0, "--threads", 1)
    assert r.exit_code == 0, r.output
    r = run("tag", tmp_path / "u", "abc")
    assert r.exit_code == 0 and len(r.stdout.split()) == 3 and set(r.stdout.split()) <= {"X", "Y"}
    r = run("tag", "eval", tmp_path / "u", user, "--json")
    assert r.exit_code == 0 and "macro_f1" in json.loads(r.stdout)


@pytest.mark.parametrize("name,content,phrase", [
    ("nolabel.tsv", "abc\tx\njust text\n", "nolabel.tsv:2: no label"),
    ("empty.tsv", "abc\tx\n\ty\n", "empty.tsv:2: empty text"),
    ("one.tsv", "abc\tx\ncab\tx\n", "only one label"),
    ("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"\n', "bad.jsonl:2: not valid JSON"),
    ("nolab.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', "nolab.jsonl:2: no label"),
    ("latin.tsv", b"abc\tx\n\xe9t\xe9\ty\n", "latin.tsv:2: not UTF-8"),
    ("nolabel.csv", "text,label\nabc,x\nabc\n", "nolabel.csv:3: no label"),
])
def test_classify_bad_input_names_the_line(tmp_path, name, content, phrase):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert_clean_error(run("classify", "train", p, "--out", tmp_path / "r"), 2, phrase)


def test_tag_bad_input_and_unknown_label_at_eval(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps({"text": "abc", "tags": ["1", "0"]}) + "\n")
    assert_clean_error(run("tag", "train", p, "--out", tmp_path / "r"), 2, "t.jsonl:1: 2 tags for 3 characters")
    d = tmp_path / "d.tsv"
    d.write_text("".join(f"{t}\t{lab}\n" for t, lab in first_char_task(40)))
    assert run("classify", "train", d, "--out", tmp_path / "c", "--hidden", 4, "--embed", 2,
               "--max-steps", 2, "--threads", 1).exit_code == 0
    e = tmp_path / "e.tsv"
    e.write_text("abc\ta\nxyz\tq\n")
    assert_clean_error(run("classify", "eval", tmp_path / "c", e), 2, "example 2 has label 'q'")
    assert_clean_error(run("tag", tmp_path / "c", "abc"), 2, "is a classifier")


@pytest.mark.parametrize("cell,total,extra", [("rnn", 506_715, []), ("lstm", 521_865, []),
                                              ("gru", 516_815, ["--no-reset-after"])])
def test_info_prints_the_course_totals(tmp_path, cell, total, extra):
    """Embedding(10000, 50) -> SimpleRNN/LSTM/GRU(50) -> Dense(32) -> Dense(1, sigmoid), Keras counts."""
    from charlm import checkpoint
    from charlm.models.sequence import SeqConfig, SeqModel

    cfg = SeqConfig(task="classify", vocab_size=10_000, num_labels=2, cell=cell, hidden=50, embed=50,
                    dense=32, head="sigmoid")
    m = SeqModel(cfg)
    checkpoint.save_model(tmp_path, m.state_dict(), model_config=cfg.to_dict(), tokenizer={"chars": []},
                          extra={"labels": ["neg", "pos"]})
    r = run("info", tmp_path, "--keras", *extra, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)["model"]
    assert s["total_params"] == total
    assert [x["params"] for x in s["layers"]][0] == 500_000 and s["layers"][-1]["params"] == 33
    r = run("info", tmp_path, "--keras", *extra)
    assert f"Total params: {total:,}" in r.stdout
    pt = json.loads(run("info", tmp_path, "--json").stdout)["model"]["total_params"]
    assert pt == m.P.size  # PyTorch counting = the parameters charlm stores


def test_info_bidirectional_keras_count(tmp_path):
    from charlm import checkpoint
    from charlm.models.sequence import SeqConfig, SeqModel

    cfg = SeqConfig(task="tag", vocab_size=20, num_labels=2, cell="lstm", hidden=50, embed=50, bidirectional=True)
    m = SeqModel(cfg)
    checkpoint.save_model(tmp_path, m.state_dict(), model_config=cfg.to_dict(), tokenizer={"chars": []},
                          extra={"labels": ["0", "1"]})
    s = json.loads(run("info", tmp_path, "--keras", "--json").stdout)["model"]
    assert s["layers"][1]["params"] == 40_400 and s["layers"][1]["shape"] == ["seq", "batch", 100]
    s = json.loads(run("info", tmp_path, "--json").stdout)["model"]
    assert s["total_params"] == m.P.size

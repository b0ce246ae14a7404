"""PAIRS reading (TSV, JSONL, built-in tasks), reserved-id vocabularies, length buckets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from charlm.corpora import pairs as tasks

from charlm.errors import UsageError
from charlm.pairs import BOS, EOS, PAD, UNK, PairVocab, buckets, build_vocabs, encode_pairs, make_batch, read_pairs


def write(tmp_path, name, data: bytes | str):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(p)


def test_tsv_with_bom_crlf_and_blank_lines(tmp_path):
    p = write(tmp_path, "p.tsv", "\ufeffabc\tcba\r\n\r\nhé\tééh\n")
    assert read_pairs(p) == [("abc", "cba"), ("hé", "ééh")]


def test_jsonl_by_extension_and_by_content(tmp_path):
    lines = [json.dumps({"source": "a\tb", "target": "x"}), "", json.dumps({"source": "é", "target": "yy"})]
    for name in ("p.jsonl", "p.txt"):
        assert read_pairs(write(tmp_path, name, "\n".join(lines) + "\n")) == [("a\tb", "x"), ("é", "yy")]


@pytest.mark.parametrize("content, phrase", [
    ("ab\tba\nnotab\n", "line 2: no tab"),
    ("ab\tba\na\tb\tc\n", "line 2: 2 tabs"),
    ("ab\tba\n\tx\n", "line 2: empty source"),
    ("ab\tba\nx\t\n", "line 2: empty target"),
    (b"ab\tba\nx\t\xff\xfe\n", "line 2: not UTF-8"),
    ("ab\tba\nabc\ttoolongtarget\n", "line 2: the target has 13 characters, more than --max-target-len 8"),
    ('{"source": "a", "target": "b"}\n{"source": "a"}\n', 'line 2: needs string fields "source" and "target"'),
    ('{"source": "a", "target": "b"}\n{"source": \n', "line 2: bad JSON"),
    ("\n\n", "holds no pairs"),
])
def test_bad_input_is_one_line_naming_the_line(tmp_path, content, phrase):
    p = write(tmp_path, "bad.tsv", content)
    with pytest.raises(UsageError) as e:
        read_pairs(p, max_target_len=8)
    assert phrase in str(e.value) and "\n" not in str(e.value)


def test_missing_file_and_unknown_task():
    with pytest.raises(UsageError, match="no such PAIRS file"):
        read_pairs("/nonexistent/pairs.tsv")
    with pytest.raises(UsageError, match="bad parameter 'm=3'"):
        read_pairs("dates:m=3")


def test_builtin_tasks_are_deterministic_and_correct():
    assert read_pairs("reverse:n=50,seed=3") == read_pairs("reverse:n=50,seed=3")
    assert read_pairs("reverse:n=50,seed=3") != read_pairs("reverse:n=50,seed=4")
    for s, t in read_pairs("reverse:n=200,max_len=8"):
        assert t == s[::-1] and 1 <= len(s) <= 8
    for s, t in tasks.dates(300, seed=1):
        d, month, y = s.split()
        assert t == f"{y}-{tasks.MONTHS.index(month) + 1:02d}-{int(d):02d}"
    assert tasks.dates(5, reverse=1)[0] == tasks.dates(5)[0][::-1]
    assert [tasks.number_words(k) for k in (0, 7, 13, 20, 21, 100, 417, 1000, 2019, 1_000_000, 999_999_999)] == [
        "zero", "seven", "thirteen", "twenty", "twenty-one", "one hundred", "four hundred seventeen",
        "one thousand", "two thousand nineteen", "one million",
        "nine hundred ninety-nine million nine hundred ninety-nine thousand nine hundred ninety-nine"]
    assert all(s == t and len(s) <= 40 for s, t in tasks.autoencode(100, max_len=40))
    assert len(tasks.sentences(60)) > 20


def test_vocab_reserves_pad_bos_eos_unk():
    v = PairVocab("cab")
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3) and len(v) == 7
    ids = v.encode("abc")
    assert list(ids) == [4, 5, 6] and v.decode(list(ids) + [EOS, 4]) == "abc"
    with pytest.raises(UsageError, match="'z'"):
        v.encode("az")
    assert list(v.encode("az", "skip")) == [4] and list(v.encode("az", "replace")) == [4, UNK]
    assert PairVocab.from_dict(v.to_dict()) == v
    pairs = [("ab", "xy"), ("b", "z")]
    s, t = build_vocabs(pairs)
    assert s.chars == ["a", "b"] and t.chars == ["x", "y", "z"]
    s, t = build_vocabs(pairs, shared=True)
    assert s is t and s.chars == ["a", "b", "x", "y", "z"]


def test_batches_pad_targets_and_bucket_sources_by_length():
    pairs = tasks.reverse(300, seed=2, max_len=6)
    sv, tv = build_vocabs(pairs)
    srcs, tgts = encode_pairs(pairs, sv, tv)
    bs = buckets(srcs, tgts, batch_size=16, seed=0)
    assert sum(b.size for b in bs) == 300 and max(b.size for b in bs) <= 16
    seen = set()
    for b in bs:
        S, B = b.src.shape
        assert (b.src_len == S).all()
        for j in range(B):
            src = sv.decode(b.src[:, j])
            n = b.tgt_len[j]
            assert b.tgt_in[0, j] == BOS and b.tgt_out[n - 1, j] == EOS
            assert (b.tgt_out[n:, j] == PAD).all() and (b.tgt_in[n:, j] == PAD).all()
            assert (b.tgt_in[1:n, j] == b.tgt_out[:n - 1, j]).all()
            assert tv.decode(b.tgt_out[:, j]) == src[::-1]
            seen.add(src)
    assert seen == {s for s, _ in pairs}
    with pytest.raises(ValueError):
        make_batch([np.array([4, 5]), np.array([], np.int32)], [np.array([4]), np.array([4])])


def test_wider_buckets_pad_sources_to_the_longest():
    pairs = tasks.reverse(300, seed=2, max_len=8)
    sv, tv = build_vocabs(pairs)
    srcs, tgts = encode_pairs(pairs, sv, tv)
    bs = buckets(srcs, tgts, batch_size=16, seed=0, width=3)
    assert sum(b.size for b in bs) == 300
    assert any(len(set(b.src_len.tolist())) > 1 for b in bs)
    seen = []
    for b in bs:
        S = b.src.shape[0]
        assert S == b.src_len.max() and len({(n - 1) // 3 for n in b.src_len.tolist()}) == 1
        for j, n in enumerate(b.src_len):
            assert (b.src[n:, j] == PAD).all() and (b.src[:n, j] != PAD).all()
            src = sv.decode(b.src[:n, j])
            assert tv.decode(b.tgt_out[:, j]) == src[::-1]
            seen.append(src)
    assert sorted(seen) == sorted(s for s, _ in pairs)

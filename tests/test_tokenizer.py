"""CharTokenizer: ids, round trips, unknown policies, NFC, byte level, JSON and from_dict validation."""

import json
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm.errors import CheckpointError, UsageError
from charlm.tokenizer import MAX_VOCAB_ENTRIES, CharTokenizer, count_symbols, symbol_repr

MIXED = "hello 안녕하세요 世界 😀🎉\r\n\x00tab\there e\u0301 é \U0001F600 \ufffd end"
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=60)  # surrogates included


def test_ids_are_sorted_code_points_and_round_trip_mixed_unicode():
    tok = CharTokenizer.from_text(MIXED)
    assert tok.vocab == sorted(set(MIXED))
    assert len(tok) == len(set(MIXED)) and tok.unk_id is None
    ids = tok.encode(MIXED)
    assert ids.dtype == np.int32 and ids.shape == (len(MIXED),)
    assert [tok.vocab[i] for i in ids] == list(MIXED)
    assert tok.decode(ids) == MIXED
    assert tok.decode(ids.tolist()) == MIXED


@settings(max_examples=150, deadline=None)
@given(ANY_TEXT.filter(bool), st.data())
def test_char_round_trip_within_vocab(text, data):
    tok = CharTokenizer.from_text(text)
    sub = data.draw(st.text(st.sampled_from(sorted(set(text))), max_size=40))
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(sub)) == sub


@settings(max_examples=150, deadline=None)
@given(ANY_TEXT.filter(bool), ANY_TEXT)
def test_byte_round_trip_every_string(text, other):
    tok = CharTokenizer.from_text(text + other, level="byte")
    assert all(isinstance(s, int) for s in tok.vocab)
    for s in (text, other, other + text):
        ids = tok.encode(s)
        assert ids.size == len(s.encode("utf-8", "surrogatepass"))
        assert tok.decode(ids) == s


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT.filter(bool), ANY_TEXT)
def test_skip_and_replace_policies(train, text):
    known = set(train)
    skip = CharTokenizer.from_text(train, unknown="skip")
    assert skip.decode(skip.encode(text)) == "".join(c for c in text if c in known)
    rep = CharTokenizer.from_text(train, unknown="replace")
    assert rep.unk_id == len(rep) - 1 and rep.vocab[-1] is None and rep.vocab[:-1] == skip.vocab
    ids = rep.encode(text)
    assert ids.size == len(text)
    assert [rep.vocab[i] if i != rep.unk_id else None for i in ids] == [c if c in known else None for c in text]


def test_error_policy_names_characters_counts_and_fix():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UsageError) as e:
        tok.encode("abxxy\x00")
    msg = str(e.value)
    assert "4 characters not in the vocabulary (3 distinct)" in msg
    assert "'x' x2" in msg and "'\\x00' x1" in msg and "'y' x1" in msg
    assert 'unknown="skip"' in msg and 'unknown="replace"' in msg and "--unknown" not in msg
    cli = e.value.cli_message   # the CLI shows the same message in its own words
    assert cli.startswith("4 characters not in") and "--unknown skip" in cli and "--unknown replace" in cli
    many = "".join(chr(0x4E00 + i) for i in range(30))
    with pytest.raises(UsageError, match="and 20 more"):
        tok.encode(many)


def test_per_call_override_and_replace_without_unknown_id():
    tok = CharTokenizer.from_text("abc")
    assert tok.decode(tok.encode("axbyc", unknown="skip")) == "abc"
    with pytest.raises(UsageError, match="no unknown id"):
        tok.encode("axb", unknown="replace")
    with pytest.raises(UsageError, match="unknown policy"):
        tok.encode("a", unknown="drop")
    rep = CharTokenizer.from_text("abc", unknown="replace")
    with pytest.raises(UsageError):
        rep.encode("ax", unknown="error")
    assert rep.decode(rep.encode("axb")) == "a\ufffdb"


def test_min_count_and_max_vocab_filtering():
    text = "aaaabbbccd"
    tok = CharTokenizer.from_text(text, min_count=2)
    assert tok.vocab == ["a", "b", "c"]
    with pytest.raises(UsageError):
        tok.encode(text)  # "error": the filtered symbol is simply absent
    tok = CharTokenizer.from_text(text, max_vocab=2, unknown="replace")
    assert tok.vocab == ["a", "b", None] and tok.counts == [4, 3, 3]
    assert tok.decode(tok.encode(text)) == "aaaabbb\ufffd\ufffd\ufffd"
    tied = CharTokenizer.from_text("ba", max_vocab=1)  # ties: lower code point kept
    assert tied.vocab == ["a"]
    with pytest.raises(UsageError, match="min_count"):
        CharTokenizer.from_text("abc", min_count=5)
    for bad in ({"min_count": 0}, {"max_vocab": 0}, {"level": "word"}, {"unknown": "x"}, {"normalize": "NFD"}):
        with pytest.raises(UsageError):
            CharTokenizer.from_text("abc", **bad)
    with pytest.raises(UsageError, match="empty"):
        CharTokenizer.from_text("")


def test_counts_match_text():
    tok = CharTokenizer.from_text("abracadabra")
    assert dict(zip(tok.vocab, tok.counts, strict=True)) == {"a": 5, "b": 2, "r": 2, "c": 1, "d": 1}
    assert count_symbols("aé", "byte").sum() == 3


def test_nfc_normalization():
    decomposed = "cafe\u0301 e\u0301"
    tok = CharTokenizer.from_text(decomposed, normalize="NFC")
    assert "\u0301" not in tok.vocab and "é" in tok.vocab
    assert tok.decode(tok.encode(decomposed)) == unicodedata.normalize("NFC", decomposed)
    raw = CharTokenizer.from_text(decomposed)
    assert "\u0301" in raw.vocab and raw.decode(raw.encode(decomposed)) == decomposed
    assert CharTokenizer.from_text("x", normalize="nfc").normalize == "NFC"


def test_byte_level_unknown_and_garbage_ids():
    tok = CharTokenizer.from_text("안녕 hi", level="byte", unknown="replace")
    assert tok.vocab[:-1] == list(range(256)) and tok.unk_id == 256   # all bytes, then the unknown id
    assert tok.decode(tok.encode("hi 안녕")) == "hi 안녕"
    assert tok.decode(tok.encode("hé")) == "hé"                      # bytes the text never had
    lead = "안".encode()[0]
    assert tok.decode([lead, ord("h")]) == "\ufffdh"  # invalid UTF-8 never raises


def test_byte_vocabulary_is_all_256_bytes():
    tok = CharTokenizer.from_text("ab", level="byte")
    assert tok.vocab == list(range(256)) and tok.counts[ord("a")] == 1 and sum(tok.counts) == 2
    assert tok.decode(tok.encode("never seen ∑ 👋\x00")) == "never seen ∑ 👋\x00"
    empty = CharTokenizer.from_text("", level="byte")
    assert empty.vocab == tok.vocab and empty.decode(empty.encode("∑")) == "∑"
    with pytest.raises(UsageError, match="byte level"):
        CharTokenizer.from_text("ab", level="byte", max_vocab=10)


def test_older_byte_tokenizer_files_keep_their_vocabulary(tmp_path):
    """A byte tokenizer saved before the 256-byte rule held only the bytes of its text: it loads as it was."""
    old = {"format": "charlm-tokenizer", "version": 1, "level": "byte", "normalize": None, "unknown": "error",
           "vocab": [104, 105], "counts": [3, 2]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    tok = CharTokenizer.load(path)
    assert tok.vocab == [104, 105] and len(tok) == 2 and tok.to_dict() == old
    assert tok.decode(tok.encode("hih")) == "hih" and list(tok.encode("hi")) == [0, 1]
    with pytest.raises(UsageError, match="not in the vocabulary"):
        tok.encode("x")


def test_stream_decoder_handles_split_characters():
    text = "a안😀b"
    for level in ("char", "byte"):
        tok = CharTokenizer.from_text(text, level=level)
        dec = tok.stream_decoder()
        pieces = [dec.decode([i]) for i in tok.encode(text)]
        assert "".join(pieces) + dec.decode([], final=True) == text
        if level == "byte":
            assert pieces[1] == "" and pieces[3] == "안"


def test_decode_rejects_bad_ids():
    tok = CharTokenizer.from_text("abc")
    assert tok.decode([]) == "" and tok.decode(np.zeros(0, np.int64)) == ""
    for bad in ([3], [-1], [0, 99]):
        with pytest.raises(UsageError, match="out of range"):
            tok.decode(bad)
    with pytest.raises(UsageError, match="integer"):
        tok.decode([0.5])
    with pytest.raises(UsageError):
        tok.encode(b"abc")


def test_save_load_json(tmp_path):
    tok = CharTokenizer.from_text(MIXED + "\ud800", unknown="replace", normalize="NFC")
    path = tmp_path / "tok.json"
    tok.save(path)
    raw = path.read_text(encoding="utf-8")  # valid UTF-8 even with a lone surrogate in the vocab
    assert "안" in raw and "\n " in raw  # ensure_ascii=False, indented
    d = json.loads(raw)
    assert d["format"] == "charlm-tokenizer" and d["version"] == 1 and d["vocab"][-1] is None
    back = CharTokenizer.load(path)
    assert back == tok and back.unk_id == tok.unk_id and back.normalize == "NFC"
    assert back.decode(back.encode(MIXED)) == unicodedata.normalize("NFC", MIXED)
    btok = CharTokenizer.from_text("bytes 바이트", level="byte")
    btok.save(path)
    assert CharTokenizer.load(path) == btok


def test_load_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        CharTokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    for content in (b"\xff\xfe garbage", b"{not json", b"[" * 100000, b"[1, 2]", b'{"format": "x"}'):
        bad.write_bytes(content)
        with pytest.raises(CheckpointError):
            CharTokenizer.load(bad)
    bad.write_text('{"model": {"cell": "lstm"}}')                 # a run's config.json given by mistake
    with pytest.raises(UsageError, match="not a charlm tokenizer file.*pass the tokenizer.json"):
        CharTokenizer.load(bad)


def _valid():
    return CharTokenizer.from_text("abc", unknown="replace").to_dict()


@pytest.mark.parametrize("change, match", [
    ({"format": "other"}, "format"),
    ({"version": 2}, "version"),
    ({"version": True}, "version"),
    ({"level": "word"}, "invalid"),
    ({"normalize": "NFKC"}, "invalid"),
    ({"unknown": "error"}, "unknown"),            # a null entry without the replace policy
    ({"vocab": ["a", "a", None]}, "duplicate"),
    ({"vocab": ["ab", None]}, "entry 0"),
    ({"vocab": [1, None]}, "entry 0"),
    ({"vocab": "abc"}, "list"),
    ({"vocab": []}, "entries"),
    ({"vocab": ["a", None, None], "counts": None}, "unknown"),
    ({"counts": [1, 2]}, "counts"),
    ({"counts": [1, -1, 1, 0]}, "counts"),
    ({"counts": [1, True, 1, 0]}, "counts"),
    ({"level": "byte"}, "entry 0"),
])
def test_from_dict_rejects(change, match):
    d = {**_valid(), **change}
    with pytest.raises(CheckpointError, match=match):
        CharTokenizer.from_dict(d)


def test_from_dict_caps_vocab_size():
    d = {**_valid(), "vocab": [None] * (MAX_VOCAB_ENTRIES + 1), "counts": None}
    with pytest.raises(CheckpointError, match="entries"):
        CharTokenizer.from_dict(d)


def test_from_dict_accepts_unknown_id_anywhere_and_byte_vocab():
    tok = CharTokenizer.from_dict({**_valid(), "vocab": [None, "z", "a"], "counts": None})
    assert tok.unk_id == 0 and tok.decode(tok.encode("az?")) == "az\ufffd"
    btok = CharTokenizer.from_dict({**_valid(), "level": "byte", "vocab": [104, 105, None], "counts": None})
    assert btok.decode(btok.encode("hi")) == "hi"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.sampled_from(["format", "version", "level", "normalize", "unknown", "vocab", "counts"]),
       st.booleans())
def test_from_dict_fuzz_never_crashes(value, key, whole):
    d = value if whole else {**_valid(), key: value}
    try:
        tok = CharTokenizer.from_dict(d)
    except (CheckpointError, UsageError):
        return
    known = "".join(c for c in "abc" if (ord(c) if tok.level == "byte" else c) in tok.vocab)
    assert tok.decode(tok.encode("abc", unknown="skip")) == known  # whatever loads must work


def test_symbol_repr():
    assert symbol_repr("a") == "'a'" and symbol_repr(" ") == "' '"
    assert symbol_repr("\n") == "'\\n'" and symbol_repr("\x00") == "'\\x00'"
    assert symbol_repr("\u0301") == "'\\u0301'" and symbol_repr("안") == "'안'"
    assert symbol_repr(None) == "<unk>" and symbol_repr(104) == "0x68 'h'" and symbol_repr(0xEB) == "0xeb"

"""Corpus pipeline: reading sources and their edge cases, encoding, splitting, batching."""

import io
import unicodedata

import numpy as np
import pytest

from charlm import sources, textstream
from charlm.corpus import (
    ReadSpec,
    Streams,
    VocabSpec,
    count_sources,
    encode_corpus,
    encode_to_file,
    fit_shape,
    ids_dtype,
    load_ids,
    read_sources,
    split_ids,
    vocab_stats,
)
from charlm.errors import UsageError
from charlm.tokenizer import CharTokenizer


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else lambda d: path.write_text(d, encoding="utf-8"))(data)
    return path


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(textstream, "CHUNK_BYTES", 5)


# ---- reading ------------------------------------------------------------------------------

def test_files_concatenate_in_order(tmp_path):
    a, b = write(tmp_path / "a.txt", "첫째\n"), write(tmp_path / "b.txt", "second")
    c = read_sources([str(b), str(a)])
    assert c.text == "second첫째\n" and c.names == [str(b), str(a)] and len(c) == 9


def test_missing_path_lists_named_corpora(tmp_path):
    with pytest.raises(UsageError, match="no such file, directory or named corpus.*hello"):
        read_sources([str(tmp_path / "nope.txt")])
    with pytest.raises(UsageError, match="no corpus given"):
        read_sources([])


def test_empty_file_and_whitespace_only(tmp_path):
    with pytest.raises(UsageError, match="empty.txt is empty"):
        read_sources([str(write(tmp_path / "empty.txt", ""))])
    with pytest.raises(UsageError, match="only whitespace"):
        read_sources([str(write(tmp_path / "ws.txt", " \n\t\r\n  "))])


def test_directory_recursive_sorted_hidden_binary_and_glob(tmp_path):
    d = tmp_path / "d"
    write(d / "b.txt", "B")
    write(d / "a" / "z.py", "Z")
    write(d / "a" / "y.txt", "Y")
    write(d / ".hidden.txt", "H")
    write(d / ".git" / "x.txt", "G")
    write(d / "img.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(d / "empty.txt", "")
    notes = []
    c = read_sources([str(d)], notice=notes.append)
    assert c.text == "YZB"  # sorted walk: a/y.txt, a/z.py, b.txt
    assert len(notes) == 1 and "2 hidden" in notes[0] and "1 binary" in notes[0] and "img.png" in notes[0]
    assert read_sources([str(d)], glob="*.txt").text == "YB"
    assert read_sources([str(d)], glob="a/*").text == "YZ"
    assert read_sources([str(d)], glob="**/*.py").text == "Z"
    with pytest.raises(UsageError, match="no text files matching --glob '\\*.md'"):
        read_sources([str(d)], glob="*.md")


def test_directory_with_no_text_files(tmp_path):
    write(tmp_path / "d" / "blob.bin", b"\x00\x01\x02")
    write(tmp_path / "d" / ".env", "SECRET=1")
    with pytest.raises(UsageError, match="has no text files"):
        read_sources([str(tmp_path / "d")])


@pytest.mark.parametrize("pattern, path, ok", [
    ("*.py", "x.py", True), ("*.py", "a/b/x.py", True), ("*.py", "x.pyc", False),
    ("a/*.txt", "a/x.txt", True), ("a/*.txt", "a/b/x.txt", False), ("**/*", "a/b/c", True),
    ("src/**/*.c", "src/x.c", True), ("src/**/*.c", "src/a/b/x.c", True), ("x?.[!c]", "x1.d", True),
    ("x?.[!c]", "x1.c", False),
])
def test_glob_regex(pattern, path, ok):
    assert bool(sources.glob_regex(pattern).match(path)) is ok


def test_invalid_utf8_names_file_and_byte_offset(tmp_path, small_chunks):
    raw = "héllo wörld ".encode() + b"\xff" + b" tail"
    p = write(tmp_path / "bad.txt", raw)
    with pytest.raises(UsageError) as e:
        read_sources([str(p)])
    msg = str(e.value)
    assert raw.index(b"\xff") == 14
    assert str(p) in msg and "byte offset 14" in msg
    assert "--encoding" in msg and "--errors replace" in msg
    assert read_sources([str(p)], errors="replace").text == "héllo wörld \ufffd tail"
    assert read_sources([str(p)], encoding="latin-1").text == raw.decode("latin-1")


def test_truncated_multibyte_at_end_and_split_across_chunks(tmp_path, small_chunks):
    good = "가나다라마바사 😀 end"
    assert read_sources([str(write(tmp_path / "ok.txt", good))]).text == good  # sequences cut by 5-byte reads
    raw = "abc가".encode()[:-1]
    with pytest.raises(UsageError, match="byte offset 3"):
        read_sources([str(write(tmp_path / "cut.txt", raw))])


def test_nul_bytes_look_binary(tmp_path):
    p = write(tmp_path / "nul.txt", b"text\x00more")
    with pytest.raises(UsageError, match="looks binary \\(NUL byte at byte offset 4\\)"):
        read_sources([str(p)])
    u16 = write(tmp_path / "u16.txt", "utf-16 text".encode("utf-16"))
    assert read_sources([str(u16)], encoding="utf-16").text == "utf-16 text"


def test_bad_encoding_options(tmp_path):
    p = write(tmp_path / "a.txt", "a")
    with pytest.raises(UsageError, match="unknown --encoding"):
        read_sources([str(p)], encoding="no-such-codec")
    with pytest.raises(UsageError, match="unknown --errors"):
        read_sources([str(p)], errors="no-such-handler")


def test_stdin(tmp_path):
    c = read_sources(["-", str(write(tmp_path / "f.txt", "!"))], stdin=io.BytesIO("from 표준입력".encode()))
    assert c.text == "from 표준입력!" and c.names[0] == "<stdin>"
    with pytest.raises(UsageError, match="stdin is empty"):
        read_sources(["-"], stdin=io.BytesIO(b""))
    with pytest.raises(UsageError, match="<stdin>: invalid utf-8 at byte offset 1"):
        read_sources(["-"], stdin=io.BytesIO(b"a\xc3("))


def test_named_corpus_and_path_shadowing(tmp_path, monkeypatch):
    assert read_sources(["hello"]).text == "hello! world\n"
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "hello", "a local file wins")
    assert read_sources(["hello"]).text == "a local file wins"


# ---- encoding -----------------------------------------------------------------------------

def test_ids_dtype_and_encode_corpus():
    assert ids_dtype(256) == np.uint8 and ids_dtype(257) == np.uint16
    assert ids_dtype(65536) == np.uint16 and ids_dtype(65537) == np.uint32
    text = "".join(chr(0x4E00 + i) for i in range(300)) * 2
    tok = CharTokenizer.from_text(text)
    ids = encode_corpus(text, tok)
    assert ids.dtype == np.uint16 and np.array_equal(ids, tok.encode(text))
    assert encode_corpus(read_sources(["hello"]), CharTokenizer.from_text("hello! world\n")).dtype == np.uint8
    with pytest.raises(UsageError, match="no ids"):
        encode_corpus("zzz", CharTokenizer.from_text("a", unknown="skip"))


def test_encode_corpus_in_slices_matches_whole(monkeypatch):
    import charlm.corpus as corpus

    monkeypatch.setattr(corpus, "ENCODE_CHARS", 7)
    text = "e\u0301" * 20 + " mixed 한국어 text\n" * 5
    tok = CharTokenizer.from_text(text, normalize="NFC")
    assert tok.decode(encode_corpus(text, tok)) == unicodedata.normalize("NFC", text)


@pytest.mark.parametrize("normalize", [None, "NFC"])
def test_encode_to_file_streams_like_memory(tmp_path, small_chunks, normalize):
    text = ("cafe\u0301 안녕 😀 " * 7 + "\n") * 5 + "e" + "\u0301" * 3
    write(tmp_path / "d" / "a.txt", text[:40])
    write(tmp_path / "d" / "b.txt", text[40:])
    ids, tok = encode_to_file([str(tmp_path / "d")], tmp_path / "ids.npy", vocab=VocabSpec(normalize=normalize))
    assert isinstance(ids, np.memmap) and not ids.flags.writeable
    assert tok == CharTokenizer.from_text(text, normalize=normalize)
    assert np.array_equal(ids, encode_corpus(text, tok)) and ids.dtype == np.uint8
    again = np.load(tmp_path / "ids.npy", allow_pickle=False)
    assert np.array_equal(again, ids)


def test_encode_to_file_reads_stdin_twice_and_reuses_a_tokenizer(tmp_path):
    names = []
    ids, tok = encode_to_file(["-", "hello"], tmp_path / "x.npy", read=ReadSpec(stdin=io.BytesIO(b"abc ")), names=names)
    assert tok.decode(ids) == "abc hello! world\n" and names == ["<stdin>", "corpus:hello"]
    ids2, tok2 = encode_to_file(["hello"], tmp_path / "y.npy", tokenizer=tok)
    assert tok2 is tok and tok.decode(ids2) == "hello! world\n"
    with pytest.raises(UsageError, match="not in the vocabulary"):
        encode_to_file(["verse"], tmp_path / "z.npy", tokenizer=tok)


def test_load_ids_in_memory_and_mapped(tmp_path):
    a, tok_a, names_a = load_ids(["fables"])
    b, tok_b, names_b = load_ids(["fables"], out=tmp_path / "f.npy")
    assert np.array_equal(a, b) and tok_a == tok_b and names_a == names_b == ["corpus:fables"]


# ---- splitting and batching ---------------------------------------------------------------

def test_split_ids_views_at_the_end():
    ids = np.arange(100, dtype=np.uint16)
    train, val, test = split_ids(ids, 0.1, 0.05)
    assert (len(train), len(val), len(test)) == (85, 10, 5)
    assert np.array_equal(np.concatenate([train, val, test]), ids)
    assert all(np.shares_memory(part, ids) for part in (train, val, test))
    assert len(split_ids(ids, 0.0)[1]) == 0
    for bad in ((1.0, 0.0), (-0.1, 0.0), (0.5, 0.5)):
        with pytest.raises(UsageError):
            split_ids(ids, *bad)
    with pytest.raises(UsageError, match="too few"):
        split_ids(np.arange(3), 0.9)


@pytest.mark.parametrize("n, B, T, shuffle", [(101, 4, 5, False), (1000, 3, 7, True), (41, 8, 5, False),
                                              (500, 5, 9, True)])
def test_streams_windows_shift_and_continue(n, B, T, shuffle):
    data = np.arange(n, dtype=np.uint16)  # value == position: windows reveal their indices
    s = Streams(data, B, T, seed=3, shuffle_offsets=shuffle)
    W = s.windows_per_epoch
    assert W >= 1 and len(s) == W and s.tokens_per_epoch == W * T * B
    for epoch in (0, 1):
        xs = []
        for x, y in (s.window(epoch, k) for k in range(s.windows_per_epoch)):
            assert x.shape == y.shape == (T, B) and x.dtype == y.dtype == np.int32
            assert x.flags.c_contiguous and y.flags.c_contiguous
            assert np.array_equal(y, x + 1)  # targets: the next character of the same stream
            xs.append(x)
        full = np.concatenate(xs)  # (W*T, B): each column is one stream, read in order
        starts = s.offsets(epoch)
        for b in range(B):
            assert np.array_equal(full[:, b], np.arange(starts[b], starts[b] + W * T))  # no gap, no overlap
            assert b * s.stream_len <= starts[b] and starts[b] + W * T <= (b + 1) * s.stream_len
        assert full.max() + 1 < n and len(np.unique(full)) == full.size  # streams never overlap


def test_shuffled_offsets_are_deterministic_and_vary():
    data = np.arange(10_000)
    a, b = Streams(data, 4, 10, seed=1, shuffle_offsets=True), Streams(data, 4, 10, seed=1, shuffle_offsets=True)
    assert a.slack >= 9
    assert np.array_equal(a.offsets(5), b.offsets(5))
    assert np.array_equal(a.window(5, 3)[0], b.window(5, 3)[0])  # (epoch, k) alone decides a window
    assert not np.array_equal(a.offsets(0), a.offsets(1))
    assert not np.array_equal(a.offsets(0), Streams(data, 4, 10, seed=2, shuffle_offsets=True).offsets(0))
    plain = Streams(data, 4, 10)
    assert np.array_equal(plain.offsets(0), plain.offsets(7)) and plain.offsets(0)[0] == 0


def test_streams_minimum_length_and_errors():
    Streams(np.arange(4 * 5 + 1), 4, 5)  # exactly B*T+1 works
    with pytest.raises(UsageError, match="at least 21.*smaller --batch-size or --seq-len"):
        Streams(np.arange(20), 4, 5)
    s = Streams(np.arange(50), 2, 5)
    with pytest.raises(IndexError):
        s.window(0, s.windows_per_epoch)
    x, y = np.zeros((5, 2), np.int32), np.zeros((5, 2), np.int32)
    assert s.window(0, 1, out=(x, y))[0] is x and x[0, 0] == 5
    with pytest.raises(UsageError):
        Streams(np.zeros((4, 4)), 1, 1)


def test_streams_over_memmap(tmp_path):
    ids, tok = encode_to_file(["verse"], tmp_path / "v.npy")
    s = Streams(ids, 4, 16)
    x, y = s.window(0, 2)
    assert tok.decode(x[:, 1]) == tok.decode(ids[s.stream_len + 32: s.stream_len + 48])


def test_fit_shape():
    assert fit_shape(10_000, 64, 100) == (64, 100)
    assert fit_shape(5000, 64, 100) == (32, 100)
    assert fit_shape(150, 64, 100) == (1, 100)
    assert fit_shape(13, 64, 100) == (1, 12)
    for n, B, T in ((13, 64, 100), (5000, 64, 100), (2, 8, 8)):
        b, t = fit_shape(n, B, T)
        Streams(np.arange(n), b, t)  # the result always fits
    with pytest.raises(UsageError):
        fit_shape(1, 4, 4)


def test_count_sources_and_vocab_stats(tmp_path):
    p = write(tmp_path / "t.txt", "aaab\n\x00"[:-1] + "bc")
    counts, names = count_sources([str(p)])
    stats = vocab_stats(counts, top=2, vocab_cap=2)
    assert names == [str(p)] and stats["symbols"] == 7 and stats["vocab_size"] == 4
    assert [r["symbol"] for r in stats["most_common"]] == ["a", "b"]
    assert [r["symbol"] for r in stats["least_common"]] == ["\n", "c"]
    assert stats["least_common"][0]["repr"] == "'\\n'"
    assert stats["vocab_cap"] == {"cap": 2, "kept_symbols": 2, "dropped_symbols": 2,
                                  "unknown_symbols": 2, "unknown_fraction": 2 / 7}
    bcounts, _ = count_sources([str(p)], level="byte")
    assert vocab_stats(bcounts, level="byte")["vocab_size"] == 4


def test_val_split_each_takes_the_tail_of_every_source(tmp_path):
    a, b = write(tmp_path / "a.txt", "a" * 100), write(tmp_path / "b.txt", "b" * 50)
    starts = []
    ids, tok, names = load_ids([str(a), str(b)], out=tmp_path / "ids.npy", starts=starts)
    assert starts == [0, 100] and len(ids) == 150
    train, val, test = split_ids(ids, 0.1, 0.1, starts=starts)
    A, B = tok.encode("a")[0], tok.encode("b")[0]
    assert list(val) == [A] * 10 + [B] * 5 and list(test) == [A] * 10 + [B] * 5 and len(train) == 120
    tail = split_ids(ids, 0.1, 0.1)                          # the default: the end of the concatenation
    assert set(tail[1].tolist()) == {B} and len(tail[1]) == 15
    assert [len(p) for p in split_ids(ids, 0.1, 0.1, starts=[0])] == [len(p) for p in tail]

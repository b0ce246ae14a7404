"""Named corpora: packaged texts, deterministic generators, the locally built stdlib corpus."""

from importlib import resources
from pathlib import Path

import pytest
from charlm.corpora import stdlib, synthetic

from charlm import corpora
from charlm.errors import UsageError


def test_registry_and_packaged_texts():
    assert corpora.names() == ["hello", "verse", "fables", "brackets", "copy", "stdlib", "docstrings", "korean"]
    assert corpora.get("hello") == "hello! world\n"
    for name in ("verse", "fables"):
        text = corpora.get(name)
        assert 2000 < len(text) < 20000 and text.endswith("\n") and text.isascii()
        assert resources.files("charlm.corpora").joinpath(f"{name}.txt").is_file()
    readme = resources.files("charlm.corpora").joinpath("README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in corpora.names())


def test_parse_parameters():
    assert corpora.parse("copy:size=100, seed=2") == ("copy", {"size": 100, "seed": 2})
    assert corpora.parse("brackets") == ("brackets", {})
    assert corpora.is_named("copy:size=1") and not corpora.is_named("nope")
    for spec, match in (("nope", "unknown corpus"), ("copy:sise=3", "parameters are size="),
                        ("copy:size", "bad parameter"), ("copy:size=ten", "integer"),
                        ("copy:seed=-1", ">= 0"), ("hello:size=3", "parameters are none")):
        with pytest.raises(UsageError, match=match):
            corpora.get(spec)


def _depth(line):
    depth = best = 0
    for ch in line:
        depth += (ch in synthetic.OPEN) - (ch in synthetic.CLOSE)
        best = max(best, depth)
    return best


def test_brackets_deterministic_balanced_and_deep():
    a = corpora.get("brackets:size=20000,seed=1")
    assert a == corpora.get("brackets:size=20000,seed=1")
    assert a != corpora.get("brackets:size=20000,seed=2")
    assert 20000 <= len(a) < 20000 + 1000 and a.endswith("\n")
    lines = a.splitlines()
    assert all(synthetic.is_balanced(line) for line in lines)
    assert max(_depth(line) for line in lines) == 16
    assert max(_depth(line) for line in corpora.get("brackets:size=5000,depth=3").splitlines()) == 3
    assert set(a) <= set("()[]{}<>abcdefgh\n")
    assert not synthetic.is_balanced("([)]") and not synthetic.is_balanced("((")


def test_copy_task_lines():
    text = corpora.get("copy:size=5000,seed=4,min_len=3,max_len=9")
    assert text == corpora.get("copy:size=5000,seed=4,min_len=3,max_len=9")
    assert text != corpora.get("copy:size=5000,seed=5,min_len=3,max_len=9")
    for line in text.splitlines():
        left, right = line.split("|")
        assert left == right and 3 <= len(left) <= 9 and left.isalpha() and left.islower()
    with pytest.raises(UsageError):
        corpora.get("copy:min_len=9,max_len=3")


def test_default_generated_sizes():
    assert 300_000 <= len(corpora.get("copy")) < 301_000


@pytest.fixture
def fake_stdlib(tmp_path):
    root = tmp_path / "lib" / "python3.x"
    files = {"os.py": "import sys\n", "abc.py": "class ABC: pass\n", "json/__init__.py": "x = 1\n",
             "json/decoder.py": "y = 2\n", "test/test_os.py": "TEST\n", "site-packages/pkg.py": "SITE\n",
             "encodings/cp1.py": "TABLE\n", "_sysconfigdata_x.py": "GEN\n", "latin.py": b"# \xe9\n",
             "README.txt": "not python\n", ".hidden.py": "HID\n"}
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def test_stdlib_build_order_and_exclusions(fake_stdlib):
    text, n = stdlib.build(fake_stdlib)
    assert text == "class ABC: pass\nimport sys\nx = 1\ny = 2\n" and n == 4  # top level first, sorted
    capped, n = stdlib.build(fake_stdlib, max_bytes=30)
    assert capped == "class ABC: pass\nimport sys\n" and n == 2


def test_stdlib_cached_in_cache_dir(fake_stdlib, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLM_CACHE_DIR", str(tmp_path / "cache"))
    notes = []
    text = stdlib.get(root=fake_stdlib, notice=notes.append)
    cached = list((tmp_path / "cache" / "corpora").glob("stdlib-*.txt"))
    assert len(cached) == 1 and cached[0].read_text(encoding="utf-8") == text
    assert "4 files" in notes[0] and "cached at" in notes[0]

    def boom(*a, **k):
        raise AssertionError("rebuilt instead of reading the cache")

    monkeypatch.setattr(stdlib, "build", boom)
    assert stdlib.get(root=fake_stdlib) == text
    with pytest.raises(AssertionError):
        stdlib.get(root=fake_stdlib, max_bytes=20)  # another size is another cache entry


def test_stdlib_of_this_python(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLM_CACHE_DIR", str(tmp_path))
    text = corpora.get("stdlib:max_bytes=60000")
    assert 10_000 < len(text.encode()) <= 60_000 and "def " in text
    assert Path(tmp_path, "corpora").is_dir()
    with pytest.raises(UsageError, match="does not exist"):
        stdlib.get(root=tmp_path / "missing")
    with pytest.raises(UsageError, match="no usable"):
        corpora.get("stdlib:max_bytes=1")


def test_stdlib_unwritable_cache_still_works(fake_stdlib, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("CHARLM_CACHE_DIR", str(blocker))  # a file: the cache dir cannot be made
    notes = []
    assert stdlib.get(root=fake_stdlib, notice=notes.append).startswith("class ABC")
    assert "not cached" in notes[0]


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("CHARLM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert stdlib.cache_dir() == tmp_path / "charlm" / "corpora"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert stdlib.cache_dir() == Path.home() / ".cache" / "charlm" / "corpora"


def test_docstrings_keeps_plain_prose_paragraphs(tmp_path, monkeypatch):
    from charlm.corpora import docstrings

    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    (root / "a.py").write_text('"""Tools for reading the kettle in the morning.\n\nShort one.\n\n'
                               '>>> print("doctest is left out, even if it is long enough.")\n"""\n'
                               'def f():\n    """Return the TestSuite object for this module, please."""\n'
                               'class K:\n    """The kettle\n    sings when the water is hot, doesn\'t it?\n    """\n')
    (root / "pkg" / "b.py").write_text('"""Tools for reading the kettle in the morning."""\n'  # a repeat
                                       'def g(:\n')  # not Python: skipped
    text, n = docstrings.build(root)
    assert text == ("Tools for reading the kettle in the morning.\n"
                    "The kettle sings when the water is hot, doesn't it?\n") and n == 2
    assert docstrings.build(root, max_bytes=50) == ("Tools for reading the kettle in the morning.\n", 1)
    monkeypatch.setenv("CHARLM_CACHE_DIR", str(tmp_path / "cache"))
    notes = []
    assert docstrings.get(root=root, notice=notes.append) == text and "2 paragraphs" in notes[0]
    assert list((tmp_path / "cache" / "corpora").glob("docstrings-*.txt"))
    with pytest.raises(UsageError, match="no prose"):
        docstrings.get(root=tmp_path / "cache")


def test_korean_generated_spacing_corpus():
    from charlm.corpora import korean

    assert [korean.particle(w, "topic") for w in ("책", "할머니")] == ["책은", "할머니는"]
    assert [korean.particle(w, "object") for w in ("빵", "사과")] == ["빵을", "사과를"]
    to = [korean.particle(w, "to") for w in ("학교", "집", "다리", "마을")]
    assert to == ["학교로", "집으로", "다리로", "마을로"]  # 으로 after a final consonant but ㄹ
    text = corpora.get("korean:size=3000,seed=2")
    assert text == korean.generate(3000, 2) != korean.generate(3000, 3) and 3000 <= len(text) < 3400
    lines = text.splitlines()
    assert all(2 <= line.count(".") <= 5 and line.endswith(".") and "  " not in line for line in lines)
    assert {c for c in text if not ("가" <= c <= "힣")} == {" ", ".", "\n"}

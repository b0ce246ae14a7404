"""The README's tutorial, run as written: every `charlm ...` line of its command blocks, split the way
bash splits it (quotes, `# comments`), and its tokenizer example.

Two changes keep it fast, and only these: training commands get tiny-model flags and `--threads 1`
appended (later flags win in Click) and a `--max-steps 20` budget when they have no step budget of their
own; the `stdlib` corpus is capped at 30 kB. Every flag, quote and path of the README is used unchanged, so a wrong
flag, a quoting mistake (``--stop "\\n\\n"``) or a step that cannot work in the order shown fails here.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from charlm.cli import cli
from charlm.cli.sample import SEPARATOR
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--layers", "1", "--hidden", "8", "--embed", "4", "--seq-len", "16", "--batch-size", "4"]


def tutorial() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Tutorial")
    return text[start:text.index("\n## ", start + 1)]


def commands() -> list[list[str]]:
    cmds = []
    for block in re.findall(r"```text\n(.*?)```", tutorial(), flags=re.S):
        for line in block.splitlines():
            if line.startswith("charlm "):
                cmds.append(shlex.split(line, comments=True)[1:])
    return cmds


def fast(args: list[str]) -> list[str]:
    args = [("stdlib:max_bytes=30000" if a == "stdlib" else a) for a in args]
    if args[0] != "train":
        return args
    extra = [] if "--init-from" in args else TINY
    budget = [] if "--max-steps" in args else ["--max-steps", "20"]
    return args + extra + budget + ["--threads", "1"]   # tiny steps on a shared machine: no thread hand-offs


def redirected(args: list[str]) -> tuple[list[str], bytes | None]:
    """The shell's `< FILE`: the arguments without it, and the file's bytes as stdin."""
    if "<" not in args:
        return args, None
    i = args.index("<")
    return args[:i] + args[i + 2:], Path(args[i + 1]).read_bytes()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    from charlm.sources import read_sources

    py = read_sources(["stdlib:max_bytes=30000"]).text
    monkeypatch.chdir(tmp_path)
    Path("mybook.txt").write_text("It was a bright cold day in April, and the clocks were striking.\n" * 30)
    Path("notes").mkdir()
    Path("notes/a.md").write_text("# notes\n\nsome *markdown* text, twice.\n" * 20)
    Path("notes/b.md").write_text("- a list\n- of things\n" * 20)
    Path("start.txt").write_text(py[:40])
    Path("held_out.py").write_text(py[-400:])
    Path("suspicious.txt").write_text(py[1000:1300])
    Path("some.txt").write_text(py[2000:2300])
    Path("mynotes.txt").write_text(py[:2000] + " ∑ new symbols ∑ " * 20)
    return tmp_path


def test_tutorial_commands_run_as_written(workdir):
    cmds = commands()
    assert len(cmds) >= 15 and ["sample", "runs/py/model.safetensors", "--top-k", "5", "--stop", "\\n\\n",
                                "--num-samples", "4"] in cmds
    runner = CliRunner()
    for args in cmds:
        if args[0] == "import":   # the state dict and vocabulary of a PyTorch model: here, those of runs/py
            shutil.copy("runs/py/model.safetensors", "torch_state.safetensors")
            shutil.copy("runs/py/tokenizer.json", "tokenizer.json")
        args, stdin = redirected(args)
        r = runner.invoke(cli, fast(args), input=stdin)
        assert r.exit_code == 0, (args, r.output, r.exception)
        if "--stop" in args:      # "\n\n" is a blank line: every sample ends at its first one, or runs to the end
            samples = r.stdout.split(SEPARATOR)
            assert len(samples) == 4
            for s in samples:
                assert "\n\n" not in s[:-2], s
    assert Path("out.txt").exists() and Path("runs/imported/model.safetensors").exists()
    assert Path("runs/notes/model.safetensors").exists()


def test_tutorial_tokenizer_example(workdir):
    block = re.search(r"### 6\. The tokenizer as a library\n\n```python\n(.*?)```", tutorial(), flags=re.S).group(1)
    exec(compile(block, "README.md", "exec"), {"text": "any text at all: 안녕 👋"})   # noqa: S102
    from charlm import CharTokenizer

    tok = CharTokenizer.from_text("ascii only", level="byte")   # the claim next to it: any string round-trips
    assert tok.decode(tok.encode("never seen ∑")) == "never seen ∑"

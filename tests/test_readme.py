"""The README's promises: its test command is what CI runs, and its CLI reference matches --help."""

from __future__ import annotations

import re
from pathlib import Path

from charlm.cli.reference import BEGIN, END, render

ROOT = Path(__file__).resolve().parent.parent


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_two_commands_open_the_readme_and_ci_runs_the_second():
    blocks = bash_blocks(readme())
    assert len(blocks) >= 2
    install_and_run, install_and_test = blocks[0], blocks[1]
    assert "pip install ." in install_and_run and "charlm train" in install_and_run
    assert "charlm sample" in install_and_run
    assert "pytest" in install_and_test and '".[dev]"' in install_and_test
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert install_and_test in ci.splitlines(), "the README's test command must appear verbatim in .ci/run"


def test_cli_reference_is_current():
    text = readme()
    assert BEGIN in text and END in text, "README lacks the generated CLI reference section"
    current = text[text.index(BEGIN): text.index(END) + len(END)]
    assert current == render(), "CLI reference is stale: run python -m charlm.cli.reference --write README.md"

"""The README's two commands, run in order in one scratch clone, both work; the kernel cache
never lands inside the installed package.

``test_readme_commands_in_order`` is the slow one (marked ``slow``; CI runs it, as it runs every
test). What it takes: a copy of this checkout (``git clone`` plus the working tree's uncommitted
files), a scratch venv made ``--without-pip`` that sees this test run's own site-packages through
a ``.pth`` line (so nothing is downloaded: ``pip install --no-deps --no-build-isolation``, no
index), ``pip install .`` of charlm into it, a 2-step training of a tiny model and a 20-character
sample (a cold kernel cache: every kernel those need compiles once), then ``pip install -e
".[dev]"`` over it and the two version checks. Command 2's ``ruff check . && pytest -q`` is
this suite itself and is not repeated here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from charlm import __version__, kernelcache

ROOT = Path(__file__).resolve().parent.parent


# ----- where the cache goes (fast) -------------------------------------------------------------
def test_default_cache_dir_is_per_user_and_keyed_by_version(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert kernelcache.default_dir(env) == str(tmp_path / "xdg" / "charlm" / __version__ / "numba")
    root, why = kernelcache.resolve(env)
    assert (root, why) == (str(tmp_path / "xdg" / "charlm" / __version__ / "numba"), "")
    assert os.path.isdir(root)
    home = os.path.join(os.path.expanduser("~"), ".cache", "charlm", __version__, "numba")
    assert kernelcache.default_dir({}) == home


def test_numba_cache_dir_wins(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "nb"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert kernelcache.resolve(env) == (str(tmp_path / "nb"), "")
    assert not (tmp_path / "xdg").exists()


def test_unwritable_cache_dir_falls_back_to_no_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")  # a path below a file cannot be created, even by root
    root, why = kernelcache.resolve({"XDG_CACHE_HOME": str(blocker)})
    assert root is None and "not writable" in why and str(blocker) in why
    assert kernelcache.resolve({"CHARLM_NUMBA_CACHE": "0"}) == (None, "CHARLM_NUMBA_CACHE=0")


def test_cache_dir_inside_the_package_is_refused():
    root, why = kernelcache.resolve({"NUMBA_CACHE_DIR": os.path.join(kernelcache.PACKAGE_DIR, "cache")})
    assert root is None and "inside the installed package" in why


def test_kernels_cache_outside_the_package(tmp_path):
    """A kernel compiled in a fresh process writes its cache files under XDG_CACHE_HOME only."""
    env = _clean_env(tmp_path)
    code = ("import numpy as np; from charlm.backends.cpu import optim; from charlm import kernelcache; "
            "optim.grad_sumsq(np.ones(3, np.float32)); print(kernelcache.DIR)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    cache = Path(out.stdout.strip())
    assert cache == tmp_path / "xdg" / "charlm" / __version__ / "numba"
    assert any(p.name.startswith("optim.") for p in cache.rglob("*.nbi"))
    assert not list(Path(kernelcache.PACKAGE_DIR).rglob("*.nb[ic]"))


def test_cache_folder_follows_every_source_beside_the_kernel(tmp_path):
    """A cached kernel is not reused after a change to another file of its folder (a cell's cache must
    not keep an old tile GEMM compiled in): the cache folder names the state of the whole folder."""
    (tmp_path / "cell.py").write_text("x = 1\n")
    (tmp_path / "tile.py").write_text("y = 1\n")
    first = kernelcache.folder_cache(str(tmp_path / "cell.py"), "sub")
    assert kernelcache.folder_cache(str(tmp_path / "tile.py"), "sub") == first  # one folder for all its kernels
    kernelcache._folder_digest.cache_clear()
    (tmp_path / "tile.py").write_text("y = 22\n")
    try:
        assert kernelcache.folder_cache(str(tmp_path / "cell.py"), "sub") != first
    finally:
        kernelcache._folder_digest.cache_clear()


# ----- the README's two commands in one clone (slow) -------------------------------------------
def _clean_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH", "CHARLM_NUMBA_CACHE", "VIRTUAL_ENV")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_CACHE_DIR="1", CHARLM_WARMUP="1")  # as a new user's first run: helpers, NumPy first
    return env


def _scratch_clone(dst: Path) -> None:
    """A clone of this checkout, with its uncommitted and untracked (not ignored) files on top."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dst)], check=True)
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "-c", "-o", "--exclude-standard"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / "python"


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_readme_commands_in_order(tmp_path):
    clone, venv = tmp_path / "clone", tmp_path / "venv"
    _scratch_clone(clone)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = _venv_python(venv)
    site = _site_packages(python)
    # this test run's packages (numba, numpy, pip, setuptools, ...) without their .pth hooks,
    # so the checkout under test is never importable except through the scratch installs
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_charlm_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    env = _clean_env(tmp_path)
    env["PATH"] = str(python.parent) + os.pathsep + env.get("PATH", "")

    def run(*cmd):
        out = subprocess.run(list(cmd), cwd=clone, env=env, capture_output=True, text=True, timeout=1200)
        assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
        return out

    pip = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    # command 1: pip install . && charlm train ... && charlm sample ...
    run(*pip, ".")
    installed = site / "charlm"
    assert (installed / "__init__.py").is_file(), "pip install . did not install the package"
    run("charlm", "train", "verse", "--max-steps", "2", "--out", "runs/demo", "--cell", "gru", "--layers", "1",
        "--hidden", "8", "--embed", "4", "--batch-size", "2", "--seq-len", "8", "--threads", "1")
    sample = run("charlm", "sample", "runs/demo", "--length", "20", "--seed", "1")
    assert sample.stdout.strip()
    assert not [p for p in installed.rglob("*") if p.suffix in (".nbi", ".nbc")], "kernel cache inside the package"
    assert list((tmp_path / "xdg" / "charlm" / __version__ / "numba").rglob("*.nbi")), "no kernel cache written"

    # command 2: pip install -e ".[dev]" over it (ruff and pytest: this suite itself)
    run(*pip, "-e", ".[dev]")
    assert not installed.exists(), f"{installed} left behind: {sorted(os.listdir(installed))}"
    code = "import charlm; print(charlm.__version__); print(charlm.__file__)"
    version, where = run(str(python), "-c", code).stdout.split()
    assert version == __version__
    assert Path(where).resolve().is_relative_to(clone.resolve())
    assert run("charlm", "--version").stdout.strip().endswith(__version__)


def test_every_package_folder_is_installed():
    """pyproject.toml lists the packages one by one: a new folder left out installs nothing and the
    installed charlm fails at its first import of it (seen: charlm.backends.numpy)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    folders = {"charlm": root / "charlm", "charlm.cli": root / "cli", "charlm.corpora": root / "corpora"}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((name,) + rel))
    assert found - listed == set(), f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"


def test_cache_subpath_is_numbas():
    from numba.core.caching import _CacheLocator

    for f in (kernelcache.__file__, os.path.join(os.path.dirname(kernelcache.__file__), "backends", "cpu", "jit.py")):
        assert kernelcache.cache_subpath(f) == _CacheLocator.get_suitable_cache_subpath(f)

"""Shared pytest setup.

Under CI (CI=true) Hypothesis runs derandomized: the same examples every run, so a landing
never depends on a lucky draw; locally it explores new examples each run.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")

# No compile helpers, so no run starts on the NumPy backend (a first-ever start does, until the helpers
# are done: charlm.trainer): tests that compare two runs number for number must not depend on whether
# the kernel cache was cold when they ran. tests/test_cold_start.py and test_warmup.py turn them on.
os.environ["CHARLM_WARMUP"] = "0"

# The kernels' thread settings, as the CLI and the library's entry points make them (importing
# charlm.backends.cpu changes nothing; tests/test_configure.py checks both in fresh processes).
from charlm.backends import cpu  # noqa: E402

cpu.configure()

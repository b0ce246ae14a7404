"""The PyTorch oracle: ``torch = oracle()`` skips a test module when torch is missing locally,
but FAILS under CI (CI=true), where the oracle must run."""

from __future__ import annotations

import os

import pytest


def oracle():
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        import torch  # an ImportError here fails the run: CI must have the oracle

        return torch
    return pytest.importorskip("torch")

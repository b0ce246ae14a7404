"""Compositions of ``charlm.layers`` with a head from ``charlm.heads``: the char LM (``lm``), the
sequence classifier (``classifier``) and the per-character tagger (``tagger``)."""

"""Compile every CUDA-backend kernel to PTX for float32 and float64, without a GPU.

    python tests/cuda/ptx_check.py [--cc 8.0]

Needs numba-cuda with the CUDA toolkit wheels (``pip install 'numba-cuda[cu13]'``) but no
driver: ``cuda.compile_ptx`` runs Numba's typing and NVVM, so it catches what the simulator
cannot (type errors, unsupported calls, accidental float64 in float32 kernels: it checks that
the float32 PTX holds no double-precision arithmetic). Prints one line per kernel; exit status 1
on any failure, 3 when the toolkit is missing (a trivial kernel does not compile).
``tests/test_cuda_backend.py`` runs it, and skips on status 3.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from numba import cuda, types

from charlm.backends.cuda import elementwise, embed, gemm, gru, loss, lstm, optim, reduce, rnn, seq

I32 = types.Array(types.int32, 1, "C")
I64 = types.Array(types.int64, 1, "C")
INT = types.int64
F64V = types.Array(types.float64, 1, "C")
B = types.boolean
F64_OPS = re.compile(r"\b(?:add|sub|mul|fma|div|sqrt|rcp|neg|abs|min|max|ex2|lg2)(?:\.[a-z]+)*\.f64\b")
UNAVAILABLE = 3


def _probe(x):
    x[0] = 1.0


def kernels(f):
    """(name, python function, signature) of every kernel for float type f."""
    v, m, t3 = types.Array(f, 1, "C"), types.Array(f, 2, "C"), types.Array(f, 3, "C")
    out = [
        ("fill", elementwise._fill, (v, f)), ("copy", elementwise._copy, (v, v)), ("mul", elementwise._mul, (v, v, v)),
        ("colsum", gemm._colsum, (v, v, m, B)),
        ("embed_forward", embed._embed_forward, (m, I32, m)), ("embed_backward", embed._embed_backward, (m, I32, m)),
        ("onehot", embed._onehot, (m, I32)),
        ("xent_rows", loss._xent_rows, (m, I32, m, B, f, F64V)),
        ("scale", optim._scale, (v, f)), ("clip_value", optim._clip_value, (v, f)),
        ("adam", optim._adam, (v, v, v, v, types.UniTuple(f, 7), B, B)),
        ("sgd", optim._sgd, (v, v, v, f, f, f, B)),
        ("rmsprop", optim._rmsprop, (v, v, v, v) + (f,) * 5 + (B,)),
        ("lstm_gates", lstm._gates_step, (m, m, m, m, v, v)), ("lstm_dgates", lstm._dgates_step, (m,) * 7),
        ("gru_gates", gru._gates_step, (m,) * 5 + (v, v)), ("gru_dgates", gru._dgates_step, (m,) * 7),
        ("rnn_act", rnn._act_step, (m, v, v, B)), ("rnn_dz", rnn._dz_step, (m, m, m, m, B)),
        ("reverse_seq", seq._reverse_seq, (t3, t3, I64)),
        ("concat_last", seq._concat_last, (m, m, m)), ("split_last", seq._split_last, (m, m, m)),
        ("pool_last", seq._pool_last, (m, t3, I64, INT)),
        ("pool_last_backward", seq._pool_last_backward, (t3, m, I64, INT)),
        ("pool_mean", seq._pool_mean, (m, t3, I64)), ("pool_mean_backward", seq._pool_mean_backward, (t3, m, I64)),
        ("take_rows", seq._take_rows, (m, m, I64)), ("put_rows", seq._put_rows, (m, m, I64)),
        ("activation", seq._activation, (v, v, INT)),
        ("activation_backward", seq._activation_backward, (v, v, v, INT)), ("add", seq._add, (v, v, v)),
    ]
    if f == types.float32:  # the integer kernels, once
        out += [("fill int64", elementwise._fill, (I64, INT)), ("row_sources", seq._row_sources, (I64, I64))]
    for mode in (reduce.SUM, reduce.SUMSQ, reduce.NONFINITE):
        out.append((f"reduce{mode}", reduce._kernel(256, mode), (v, F64V)))
    for ta, tb, acc, bias in [(0, 0, 0, 0), (0, 1, 0, 0), (0, 1, 1, 0), (0, 1, 0, 1), (1, 0, 0, 0), (0, 0, 1, 0)]:
        k = gemm._kernel(16, bool(ta), bool(tb), bool(acc), bool(bias), str(f))
        out.append((f"gemm ta={ta} tb={tb} acc={acc} bias={bias}", k, (m, m, m, v)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cc", default="8.0")
    cc = tuple(int(p) for p in ap.parse_args(argv).cc.split("."))
    try:
        cuda.compile_ptx(_probe, (types.Array(types.float32, 1, "C"),), cc=cc)
    except Exception as e:
        print(f"the CUDA toolkit (NVVM, NVRTC, libdevice) is not usable: {type(e).__name__}: {e}"[:300])
        return UNAVAILABLE
    failed = 0
    t0 = time.perf_counter()
    for f in (types.float32, types.float64):
        for name, k, sig in kernels(f):
            t = time.perf_counter()
            try:
                ptx, _ = cuda.compile_ptx(k.py_func, sig, cc=cc)
            except Exception as e:  # report every kernel, then fail
                failed += 1
                print(f"FAIL {f} {name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                continue
            doubles = len(F64_OPS.findall(ptx))
            extra = ""
            if f == types.float32 and doubles and not name.startswith(("reduce", "xent")):
                failed += 1
                extra = f"  <- {doubles} float64 ops in a float32 kernel"
            print(f"ok   {f} {name:<34} {len(ptx):>7} chars {time.perf_counter() - t:5.2f}s{extra}")
    print(f"{'FAILED' if failed else 'all compiled'} in {time.perf_counter() - t0:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

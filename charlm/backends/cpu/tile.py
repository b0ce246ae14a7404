"""Register-blocked GEMM for the kernels' own products: the recurrent step, the window GEMMs.

Why not BLAS: OpenBLAS packs op(B) into panels on every call, which for the recurrent step's
(B x H) @ (H x 4H/threads) product, repeated T times with the same weights, costs about as much
as the product; and it runs whatever kernel its core detection (or ``OPENBLAS_CORETYPE``) picks,
which on some machines is narrower than the CPU (seen: AVX2 kernels on an AVX-512 Zen 5).
This module's micro-kernel is LLVM IR built for the CPU Numba compiles for: an MR x NR tile of C
held in vector registers (MR = 4 rows, NR = NV vectors of the machine's width: 4 x 16 = 64
floats with AVX-512's 32 registers, 3 x 8 = 24 with AVX2's 16) while it streams K: per k, NV
vector loads of B's row k, MR scalar broadcasts of A, MR*NV fused multiply-adds. B is read where
it lies (row-major, row stride ldb), or from panels that ``pack`` wrote once per window; each
thread's weight columns stay in its own L2 across the T steps.

Measured (Zen 5, 1 thread, median GFLOP/s, this micro-kernel / OpenBLAS 0.3.30 as the
environment configured it, Haswell kernels): 32x128 @ 128x256 (S step) 238 / 85;
64x256 @ 256x512 (M step) 171 / 74; 64x512 @ 512x1024 144 / 100. Alternatives dropped: the
same tile written as scalar Numba code (LLVM's SLP vectorizer left it scalar: 3 GFLOP/s), and
the tile accumulated in memory (a load and a store per FMA); for the weight gradients (K = T*B),
packing each K block of both operands first (GotoBLAS style, KC 64-256): 92-127 GFLOP/s against
115-123 reading them in place (64x256 per thread, K 6400), so they are read in place.

    gemm(ta, (M, N, K), (A, ia, lda), (B, ib, ldb), beta, (C, ic, ldc))
    gemm_packed(ta, (M, N, K), (A, ia, lda), (P, ip), beta, (C, ic, ldc))     B as ``pack`` wrote it
    gemm_kpacked(ta, (M, N, K), (A, ia, lda), (B, ib, ldb), (C, ic, ldc), (P, ip))   beta 0; B packed
        KW rows at a time into P (the weight gradients)
        C[M x N] = op(A)[M x K] @ B[K x N] + beta * C,   beta 0 or 1
        row-major throughout; op(A) = A (A[ia + i*lda + k]) or, with ta, A^T (A[ia + k*lda + i]);
        B[k, j] = B[ib + k*ldb + j]; C[i, j] = C[ic + i*ldc + j].

Edges: rows beyond the last multiple of MR run a one-row tile, columns beyond the last multiple
of NR a masked tile (masked loads and stores: nothing outside C or B is touched). K is blocked
by KC so that a block of B stays in cache across the row tiles. Nothing is bounds-checked.
"""

from __future__ import annotations

import numba
from llvmlite import binding as llb
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import kernel


def _vector_width() -> tuple[int, int]:
    """(float32 lanes of the widest vectors, vector registers) of the CPU Numba compiles for:
    (16, 32) with AVX-512, (8, 16) with AVX2 + FMA, (4, 16) otherwise."""
    feats = numba.config.CPU_FEATURES
    if feats is None:
        if numba.config.CPU_NAME:  # a named target without features (e.g. 'generic' for portable caches)
            return 4, 16
        feats = llb.get_host_cpu_features().flatten()
    on = {f[1:] for f in str(feats).split(",") if f.startswith("+")}
    if "avx512f" in on:
        return 16, 32
    if "avx2" in on and "fma" in on:
        return 8, 16
    return 4, 16


VW, REGISTERS = _vector_width()
MR = 4  # rows of a tile
# Vectors per tile row: MR*NV accumulators + NV vectors of B + 1 broadcast of A must fit in the
# registers, or LLVM spills accumulators to the stack inside the K loop. With 16 registers (AVX2),
# 4x4 spilled: 31-34 GFLOP/s against 67-84 for 4x3 (Zen 3, 1 thread, the shapes of the module
# docstring; 4x2 63-75, 6x2 54-74, 3x4 30-34, OpenBLAS 60-73).
NV = 4 if REGISTERS >= 32 else 3
# Dropped: the window GEMMs (input projection, dx, weight gradients) through OpenBLAS on AVX2
# machines. Alone, OpenBLAS ran them 1.7-2.3x faster than this tile on Zen 3 (1024x6400^T @
# 6400x256: 58 vs 29 GFLOP/s, 1 thread), but inside a training step the two were level
# (bench_train, PyTorch ratio BLAS / tile: S 1.27 / 1.24, M lstm 1.20 / 1.26, L 1.23 / 1.20).
NR = NV * VW  # columns of a tile
# K block: a panel's block of B (KC x NR floats) stays in L1 across the row tiles. With AVX-512
# (NR 64) KC 256 made it 64 KB, more than a 48 KB L1; KC 128 (32 KB) ran the recurrent step's
# product 1.08-1.13x faster (quiet 2-core Xeon, 1 thread, median of 31 interleaved reps in one
# process: 64x256 @ 256x1024 (M lstm step) 1.11 and 1.12, 64x256 @ 256x512 1.08, 64x512 @
# 512x1024 1.08 and 1.13; KC 64 1.09, 192 1.00-1.07). With AVX2 (NR 24) a 256-row block is 24 KB.
# The block changes no result: each element's products are summed in the same order either way.
KC = 128 if NR * 4 * 256 > 32 * 1024 else 256
# K block of ``gemm_kpacked`` (the weight gradients): 64 rows of B, packed, stay in L1 across all
# the row tiles. Measured (quiet 2-core Xeon, AVX-512, 1 thread, median of 15 interleaved pairs
# against ``gemm`` reading B in place, bitwise the same results): dz^T (512 x 6400) @ h (6400 x 256)
# 1.46-1.50x, (1024 x 6400) @ (6400 x 512) 1.18-1.33x, (256 x 6400) @ (6400 x 128) 1.09-1.11x;
# K blocks of 32 / 96 / 128 / 256: 1.32 / 1.29 / 1.33 / 1.13x at the first shape. Those figures
# predate the vectorized copy in ``pack``: its row copy indexed P and B from runtime offsets, which
# LLVM left scalar, so packing h (6400 x 256) took about 3.8 ms on one thread; through 1-D slices it
# is a vector copy, and dz^T (128 x 6400) @ h (6400 x 256) went from 8.3-8.9 to 4.6-5.0 ms (47-50 ->
# 84-90 GFLOP/s; OpenBLAS np.dot 81-89), (512 x 6400) @ (6400 x 256) from 22.7-23.1 to 17.8-18.6 ms
# (2-core AMD EPYC Zen 4, 1 thread, 3 runs of 20 calls; same results bit for bit).
KW = 64


def _tile(mr, masked):
    """Intrinsic: C[mr x NR] (+)= op(A)[mr x K] @ B[K x NR] for one tile (``masked``: the first
    ``nvalid`` columns only)."""

    @intrinsic
    def tile(typingctx, c, a, b, run):
        """c = (C, ic, ldc), a = (A, ia, sai, sak), b = (B, ib, ldb), run = (K, acc, nvalid)."""
        operands = (c, a, b, run)
        if not all(isinstance(t, types.BaseTuple) for t in operands) or [len(t) for t in operands] != [3, 4, 3, 3]:
            return None
        C, A, B = c.types[0], a.types[0], b.types[0]
        sig = types.void(c, a, b, run)
        if not all(isinstance(t, types.Array) for t in (A, B, C)) or not (A.dtype == B.dtype == C.dtype):
            return None
        if C.dtype not in (types.float32, types.float64):
            return None
        wide = C.dtype == types.float64  # float64 (the gradient checks): twice the vectors of half the lanes
        lanes, nvec = (VW // 2, 2 * NV) if wide else (VW, NV)
        suffix = f"v{lanes}f64" if wide else f"v{lanes}f32"

        def codegen(context, builder, signature, args):
            vals = {}
            for names, val, ty in zip((("C", "ic", "ldc"), ("A", "ia", "sai", "sak"), ("B", "ib", "ldb"),
                                       ("K", "acc", "nvalid")), args, signature.args, strict=True):
                vals.update(zip(names, zip(cgutils.unpack_tuple(builder, val, len(names)), ty.types, strict=True),
                                strict=True))
            intp = context.get_value_type(types.intp)
            i32 = ir.IntType(32)
            vt = ir.VectorType(ir.DoubleType() if wide else ir.FloatType(), lanes)
            mt = ir.VectorType(ir.IntType(1), lanes)
            esize = 8 if wide else 4

            def n(name):
                return context.cast(builder, *vals[name], types.intp)

            def const(v):
                return ir.Constant(intp, v)

            def base(arr, off):
                data = context.make_array(vals[arr][1])(context, builder, vals[arr][0]).data
                return builder.gep(data, [n(off)])

            cp, ap, bp = base("C", "ic"), base("A", "ia"), base("B", "ib")
            ldc, sai, sak, ldb, K = n("ldc"), n("sai"), n("sak"), n("ldb"), n("K")
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                                 f"llvm.fmuladd.{suffix}")
            masks = [None] * nvec
            if masked:  # lane l of vector v is valid when v*VW + l < nvalid
                nv = builder.trunc(n("nvalid"), i32)
                splat = builder.shuffle_vector(builder.insert_element(ir.Constant(ir.VectorType(i32, lanes), None),
                                                                      nv, ir.Constant(i32, 0)),
                                               ir.Constant(ir.VectorType(i32, lanes), None),
                                               ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))
                for v in range(nvec):
                    idx = ir.Constant(ir.VectorType(i32, lanes), [v * lanes + l for l in range(lanes)])
                    masks[v] = builder.icmp_signed("<", idx, splat)
                mload = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(vt, [vt.as_pointer(), i32, mt, vt]),
                    f"llvm.masked.load.{suffix}.p0")
                mstore = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), [vt, vt.as_pointer(), i32, mt]),
                    f"llvm.masked.store.{suffix}.p0")
            zero_v = ir.Constant(vt, [0.0] * lanes)

            def vptr(p, off):
                return builder.bitcast(builder.gep(p, [off]), vt.as_pointer())

            def vload(p, off, v):
                if masks[v] is None:
                    return builder.load(vptr(p, off), align=esize)
                return builder.call(mload, [vptr(p, off), ir.Constant(i32, esize), masks[v], zero_v])

            def vstore(x, p, off, v):
                if masks[v] is None:
                    builder.store(x, vptr(p, off), align=esize)
                else:
                    builder.call(mstore, [x, vptr(p, off), ir.Constant(i32, esize), masks[v]])

            def coff(i, v):
                return builder.add(builder.mul(const(i), ldc), const(v * lanes))

            accumulate = builder.icmp_signed("!=", n("acc"), const(0))
            start = [[builder.select(accumulate, vload(cp, coff(i, v), v), zero_v) for v in range(nvec)]
                     for i in range(mr)]
            pre = builder.block
            loop = builder.append_basic_block("tile.loop")
            done = builder.append_basic_block("tile.done")
            builder.cbranch(builder.icmp_signed(">", K, const(0)), loop, done)
            builder.position_at_end(loop)
            k = builder.phi(intp)
            k.add_incoming(const(0), pre)
            accs = [[builder.phi(vt) for _ in range(nvec)] for _ in range(mr)]
            for i in range(mr):
                for v in range(nvec):
                    accs[i][v].add_incoming(start[i][v], pre)
            brow = builder.mul(k, ldb)
            bv = [vload(bp, builder.add(brow, const(v * lanes)), v) for v in range(nvec)]
            acol = builder.mul(k, sak)
            new = []
            for i in range(mr):
                a = builder.load(builder.gep(ap, [builder.add(builder.mul(const(i), sai), acol)]))
                s = builder.insert_element(ir.Constant(vt, None), a, ir.Constant(i32, 0))
                s = builder.shuffle_vector(s, ir.Constant(vt, None),
                                           ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))
                new.append([builder.call(fma, [s, bv[v], accs[i][v]]) for v in range(nvec)])
            k1 = builder.add(k, const(1))
            end = builder.block
            k.add_incoming(k1, end)
            for i in range(mr):
                for v in range(nvec):
                    accs[i][v].add_incoming(new[i][v], end)
            builder.cbranch(builder.icmp_signed("<", k1, K), loop, done)
            builder.position_at_end(done)
            outs = [[builder.phi(vt) for _ in range(nvec)] for _ in range(mr)]  # phis first in the block
            for i in range(mr):
                for v in range(nvec):
                    outs[i][v].add_incoming(start[i][v], pre)
                    outs[i][v].add_incoming(new[i][v], end)
            for i in range(mr):
                for v in range(nvec):
                    vstore(outs[i][v], cp, coff(i, v), v)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_full = _tile(MR, False)
_full_edge = _tile(MR, True)
_row = _tile(1, False)
_row_edge = _tile(1, True)


@kernel
def _product(ta, mnk, a, B, bpos, beta, c):
    """The tile loops of ``gemm`` and ``gemm_packed``: B's tile for panel p and K block k0 starts at
    b0 + k0*krow + p*pstep with rows ldb apart; bpos = (b0, ldb, krow, pstep)."""
    M, N, K = mnk
    A, ia, lda = a
    C, ic, ldc = c
    b0, ldb, krow, pstep = bpos
    sai, sak = (1, lda) if ta else (lda, 1)
    M4 = M - M % MR
    for k0 in range(0, max(K, 1), KC):
        kc = min(KC, K - k0)
        acc = 1 if (k0 > 0 or beta != 0) else 0
        a0 = ia + k0 * sak
        for p in range(-(-N // NR)):
            j0 = p * NR
            nv = min(NR, N - j0)
            bt = b0 + k0 * krow + p * pstep
            b, run = (B, bt, ldb), (kc, acc, nv)
            for i0 in range(0, M4, MR):
                if nv == NR:
                    _full((C, ic + i0 * ldc + j0, ldc), (A, a0 + i0 * sai, sai, sak), b, run)
                else:
                    _full_edge((C, ic + i0 * ldc + j0, ldc), (A, a0 + i0 * sai, sai, sak), b, run)
            for i in range(M4, M):
                if nv == NR:
                    _row((C, ic + i * ldc + j0, ldc), (A, a0 + i * sai, sai, sak), b, run)
                else:
                    _row_edge((C, ic + i * ldc + j0, ldc), (A, a0 + i * sai, sai, sak), b, run)


@kernel(inline="always")
def gemm(ta, mnk, a, b, beta, c):
    """C[M x N] = op(A) @ B + beta * C (beta 0 or 1), B read in place; see the module docstring.
    mnk = (M, N, K); a = (A, ia, lda), b = (B, ib, ldb), c = (C, ic, ldc). Inlined into its caller,
    which passes the arrays flat: ``_product`` compiles once per dtype, whatever the callers' ranks."""
    A, ia, lda = a
    B, ib, ldb = b
    C, ic, ldc = c
    _product(ta, mnk, (A.reshape(-1), ia, lda), B.reshape(-1), (ib, ldb, ldb, NR), beta, (C.reshape(-1), ic, ldc))


def panels(K, N):
    """Floats that ``pack`` writes for a K x N right-hand side: ceil(N / NR) panels of K x NR."""
    return -(-N // NR) * K * NR


@kernel
def pack(P, ip, B, ib, ldb, K, N, tb):
    """P[ip:] = op(B)[K x N] as panels of NR columns: panel p, row k, column j at ip + (p*K + k)*NR + j
    (the last panel's missing columns are zeros). op(B)[k, j] = B[ib + k*ldb + j], or with ``tb``
    B[ib + j*ldb + k]. P and B are 1-D (flat views)."""
    for p in range(-(-N // NR)):
        j0 = p * NR
        nv = min(NR, N - j0)
        for k in range(K):
            d = ip + (p * K + k) * NR
            if tb:
                for j in range(nv):
                    P[d + j] = B[ib + (j0 + j) * ldb + k]
            else:
                # one row of the panel through 1-D slices indexed from 0: LLVM vectorizes this copy
                # (indexing P and B from runtime offsets it did not: see ``KW``)
                s = ib + k * ldb + j0
                dst, src = P[d:d + nv], B[s:s + nv]
                for j in range(nv):
                    dst[j] = src[j]
            for j in range(nv, NR):
                P[d + j] = 0


@kernel(inline="always")
def gemm_packed(ta, mnk, a, p, beta, c):
    """C[M x N] = op(A) @ B + beta * C with B given as ``pack`` wrote it: p = (P, ip) (beta 0 or 1).

    Each panel (K x NR, contiguous) is read once per row tile from cache, never from a strided
    layout (a row stride of a multiple of 4 KB put every row of a panel in the same L1 sets)."""
    A, ia, lda = a
    P, ip = p
    C, ic, ldc = c
    _product(ta, mnk, (A.reshape(-1), ia, lda), P.reshape(-1), (ip, NR, NR, mnk[2] * NR), beta,
             (C.reshape(-1), ic, ldc))


@kernel
def gemm_kpacked(ta, mnk, a, b, c, p):
    """C[M x N] = op(A) @ B (beta 0) with B read KW rows at a time: each block is packed into
    p = (P, ip) (room for ``panels(KW, N)`` floats) and multiplied from there, so it stays in L1
    across the row tiles. For the weight gradients (K = T*B rows, B = the layer's input or h):
    see ``KW``. a, b, c as in ``gemm``. Same results as ``gemm``, bit for bit (each element's
    products are summed in the same order). Not inlined: inlined into ``recurrent.weight_grads``
    (twice), a cold compile of a cell's kernels took 25.7-27.1 s of CPU (gru 2x12, quiet), called
    24.2-26.2 s, and ``gemm`` in place before it 24.1-24.9 s (about 1 s of noise)."""
    M, N, K = mnk
    A, ia, lda = a
    B, ib, ldb = b
    C, ic, ldc = c
    P, ip = p
    Af, Bf, Cf, Pf = A.reshape(-1), B.reshape(-1), C.reshape(-1), P.reshape(-1)
    sak = lda if ta else 1
    for k0 in range(0, max(K, 1), KW):
        kk = min(KW, K - k0)
        pack(Pf, ip, Bf, ib + k0 * ldb, ldb, kk, N, False)
        _product(ta, (M, N, kk), (Af, ia + k0 * sak, lda), Pf, (ip, NR, NR, kk * NR), 1 if k0 > 0 else 0,
                 (Cf, ic, ldc))

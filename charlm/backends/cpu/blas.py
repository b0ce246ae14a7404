"""GEMM with offsets, leading dimensions and beta, callable inside kernels (also inside prange).

``np.dot(a, b, out)`` in Numba always overwrites ``out`` and wants whole contiguous arrays. The
kernels need more: accumulate into an output (beta = 1: the recurrent product added straight
into the input projection), and operate on sub-blocks (a batch chunk of a (T, B, 4H) buffer, a
column block of dz for a slice of dW's rows). So ``gemm`` calls the same BLAS that ``np.dot``
uses (SciPy's OpenBLAS, through Numba's helper ``numba_xxgemm``, resolved by name so the
callers stay cacheable), in row-major terms:

    gemm((ta, tb), (M, N, K), alpha, (A, ia, lda), (B, ib, ldb), beta, (C, ic, ldc))
        C[M x N] = alpha * op(A)[M x K] @ op(B)[K x N] + beta * C
    A, B, C are arrays of one float dtype (any shape; only their buffer is used), ia/ib/ic the
    element offset of the block's first entry, lda/ldb/ldc the row strides in elements.
    op(A) = A (stored M x K) when ta is False, A^T (A stored K x M) when ta is True; same for B.

One row (M == 1, A not transposed) goes to GEMV instead (``numba_xxgemv``, x and y contiguous):
OpenBLAS's GEMM packs op(B) on every call, which at M = 1 costs more than the product. Measured
(M lstm, B = 1, windows of 256, 1 thread, loaded 2-core Zen 3): the recurrent loop took 2.9 ms per
step through GEMM against 0.7 ms for the sampling kernel's loop doing the same products.

Nothing is bounds-checked: callers pass blocks that lie inside their arrays. Numba does not
notice when this file changes under a cached caller: clear the caches after editing it.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import ensure_blas

ensure_blas()  # SciPy's BLAS must be importable; numba_xxgemm fetches its sgemm/dgemm lazily

_CHAR = ir.IntType(8)


_GROUPS = (("ta", "tb"), ("M", "N", "K"), "alpha", ("A", "ia", "lda"), ("B", "ib", "ldb"), "beta", ("C", "ic", "ldc"))


@intrinsic
def gemm(typingctx, trans, mnk, alpha, a, b, beta, c):
    groups = (trans, mnk, a, b, c)
    if not all(isinstance(g, types.BaseTuple) for g in groups) or [len(g) for g in groups] != [2, 3, 3, 3, 3]:
        return None
    A, B, C = a.types[0], b.types[0], c.types[0]
    if not (isinstance(A, types.Array) and isinstance(B, types.Array) and isinstance(C, types.Array)):
        return None
    dt = C.dtype
    if A.dtype != dt or B.dtype != dt or dt not in (types.float32, types.float64):
        return None
    kind = "s" if dt == types.float32 else "d"
    sig = types.void(trans, mnk, alpha, a, b, beta, c)

    def codegen(context, builder, signature, args):
        arg = {}
        for names, val, ty in zip(_GROUPS, args, signature.args, strict=True):
            if isinstance(names, str):
                arg[names] = (val, ty)
            else:
                arg.update(zip(names, zip(cgutils.unpack_tuple(builder, val, len(names)), ty.types, strict=True),
                               strict=True))
        intp = context.get_value_type(types.intp)
        ptr = ir.IntType(8).as_pointer()

        def integer(name):
            return context.cast(builder, *arg[name], types.intp)

        def scalar_ptr(name):  # BLAS takes alpha and beta by reference
            slot = cgutils.alloca_once_value(builder, context.cast(builder, *arg[name], dt))
            return builder.bitcast(slot, ptr)

        def block(name, off):  # pointer to the block's first element
            val, ty = arg[name]
            base = context.make_array(ty)(context, builder, val).data
            return builder.bitcast(builder.gep(base, [integer(off)]), ptr)

        def flag(name):
            t = context.cast(builder, *arg[name], types.boolean)
            return builder.select(t, ir.Constant(_CHAR, ord("t")), ir.Constant(_CHAR, ord("n")))

        fnty = ir.FunctionType(ir.IntType(32), [_CHAR, _CHAR, _CHAR, intp, intp, intp, ptr, ptr, intp,
                                                ptr, intp, ptr, ptr, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        gvty = ir.FunctionType(ir.IntType(32), [_CHAR, _CHAR, intp, intp, ptr, ptr, intp, ptr, ptr, ptr])
        gv = cgutils.get_or_insert_function(builder.module, gvty, "numba_xxgemv")
        m, n, k = integer("M"), integer("N"), integer("K")
        zero, one = ir.Constant(intp, 0), ir.Constant(intp, 1)
        kind_c = ir.Constant(_CHAR, ord(kind))
        ta = context.cast(builder, *arg["ta"], types.boolean)
        tb = context.cast(builder, *arg["tb"], types.boolean)
        with builder.if_then(builder.and_(builder.icmp_signed(">", m, zero), builder.icmp_signed(">", n, zero))):
            one_row = builder.and_(builder.icmp_signed("==", m, one), builder.not_(ta))
            with builder.if_else(one_row) as (vector, matrix):
                with vector:  # C[0, :] = alpha * a @ op(B) + beta * C[0, :] as a GEMV (no packing of B)
                    # B's buffer read column-major is B^T (rows of B are its columns), leading dim ldb:
                    # tb False: y = (B^T) a -> 'n' on the N x K col-major matrix; tb True: y = B a -> 't' on K x N
                    trans = builder.select(tb, ir.Constant(_CHAR, ord("t")), ir.Constant(_CHAR, ord("n")))
                    rows = builder.select(tb, k, n)
                    cols = builder.select(tb, n, k)
                    builder.call(gv, (kind_c, trans, rows, cols, scalar_ptr("alpha"), block("B", "ib"),
                                      integer("ldb"), block("A", "ia"), scalar_ptr("beta"), block("C", "ic")))
                with matrix:
                    # row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T: B goes first
                    builder.call(fn, (kind_c, flag("tb"), flag("ta"), n, m, k,
                                      scalar_ptr("alpha"), block("B", "ib"), integer("ldb"), block("A", "ia"),
                                      integer("lda"), scalar_ptr("beta"), block("C", "ic"), integer("ldc")))
        return context.get_dummy_value()

    return sig, codegen

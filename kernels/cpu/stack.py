"""Stack-allocated register tiles for Numba kernels."""

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def stack_tile(rows, cols):
    """An intrinsic returning a (rows, cols) float32 C array on the stack (64-byte aligned alloca).

    Register tiles live in such a buffer: LLVM promotes it to vector registers, and a
    non-escaping alloca provably aliases no argument, so loops that store into it vectorise
    without runtime overlap checks (a heap ``np.zeros`` tile is written back every iteration).
    """
    arrty = types.Array(types.float32, 2, "C")

    @intrinsic
    def _tile(typingctx):
        def codegen(context, builder, sig, args):
            ary = context.make_array(arrty)(context, builder)
            ptr = cgutils.alloca_once(builder, context.get_value_type(types.float32), size=rows * cols)
            ptr.align = 64

            def intp(v):
                return context.get_constant(types.intp, v)

            context.populate_array(ary, data=ptr, shape=[intp(rows), intp(cols)],
                                   strides=[intp(cols * 4), intp(4)], itemsize=intp(4), meminfo=None)
            return ary._getvalue()

        return arrty(), codegen

    return _tile

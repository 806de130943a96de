"""Stack-allocated register tiles, software prefetch and non-temporal stores for Numba kernels."""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def stack_tile(rows, cols, dtype=types.float32):
    """An intrinsic returning a (rows, cols) C array of ``dtype`` (float32 by default) on the stack
    (a 64-byte aligned alloca).

    Register tiles live in such a buffer: LLVM promotes it to vector registers, and a
    non-escaping alloca provably aliases no argument, so loops that store into it vectorise
    without runtime overlap checks (a heap ``np.zeros`` tile is written back every iteration).
    """
    arrty = types.Array(dtype, 2, "C")

    @intrinsic
    def _tile(typingctx):
        def codegen(context, builder, sig, args):
            ary = context.make_array(arrty)(context, builder)
            ptr = cgutils.alloca_once(builder, context.get_value_type(dtype), size=rows * cols)
            ptr.align = 64
            item = context.get_abi_sizeof(context.get_data_type(dtype))

            def intp(v):
                return context.get_constant(types.intp, v)

            context.populate_array(ary, data=ptr, shape=[intp(rows), intp(cols)],
                                   strides=[intp(cols * item), intp(item)], itemsize=intp(item), meminfo=None)
            return ary._getvalue()

        return arrty(), codegen

    return _tile


@intrinsic
def prefetch(typingctx, arr, idx):
    """Prefetch (into L1, ``prefetcht0``) the cache line holding element ``idx`` of ``arr``'s data,
    counted in elements from its first one. A prefetch never faults, so ``idx`` may point past
    the array (the caller clamps it only to stay inside the allocation)."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [i8p, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, types.intp), codegen


@intrinsic
def stream16(typingctx, dst, di, src, si):
    """``dst.flat[di:di + 16] = src.flat[si:si + 16]`` with one non-temporal 64-byte store
    (``vmovntps``): the line goes to memory without being read first (no read-for-ownership) and
    without displacing the cache. ``dst`` must be 64-byte aligned at ``di`` (the instruction faults
    otherwise); ``src`` may be anything (a stack tile). Order such stores before another thread
    reads the data with ``store_fence``."""
    def codegen(context, builder, sig, args):
        d = context.make_array(sig.args[0])(context, builder, args[0])
        s = context.make_array(sig.args[2])(context, builder, args[2])
        vt = ir.VectorType(ir.FloatType(), 16)
        sp = builder.bitcast(builder.gep(s.data, [args[3]]), vt.as_pointer())
        dp = builder.bitcast(builder.gep(d.data, [args[1]]), vt.as_pointer())
        st = builder.store(builder.load(sp, align=4), dp, align=64)
        st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    f32 = (isinstance(dst, types.Array) and dst.dtype == types.float32 and isinstance(src, types.Array)
           and src.dtype == types.float32)
    if not f32:
        return None     # a typing error: only float32 arrays
    return types.void(dst, types.intp, src, types.intp), codegen


@intrinsic
def store_fence(typingctx):
    """``sfence``: earlier non-temporal stores become visible before any later store."""
    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.VoidType(), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.sfence")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def raw_view(typingctx, arr, start):
    """``arr.flat[start:]`` of a C-contiguous array as a 1-D array that holds no reference.

    A slice made inside a kernel carries the parent's meminfo, so making it and dropping it calls
    NRT_incref / NRT_decref (atomic updates of one shared counter: both threads hammer the same
    cache line). Made per register tile, those calls cost ~600 cycles a tile. The caller keeps
    ``arr`` alive for as long as the view is used (always true inside one kernel call).
    """
    dtype = arr.dtype
    resty = types.Array(dtype, 1, "C")

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, args[0])
        ary = context.make_array(resty)(context, builder)
        nitems = builder.mul(src.nitems, context.get_constant(types.intp, 1))
        shape = builder.sub(nitems, args[1])
        data = builder.gep(src.data, [args[1]])
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(dtype)))
        context.populate_array(ary, data=data, shape=[shape], strides=[itemsize], itemsize=itemsize,
                               meminfo=None)
        return ary._getvalue()

    return resty(arr, types.intp), codegen


@intrinsic(prefer_literal=True)
def call_native(typingctx, addr, fn, *args):
    """``fn(*args)`` through ``addr``, the address of ``fn``'s compiled code for the types of ``args``
    (``kernels.cpu.native.native_address``), with Numba's calling convention.

    A plain call links ``fn``'s code (and everything it calls) into the caller, where LLVM optimises
    and emits it again: a parallel driver twice, as its outlined loop body and itself. Through the
    address the caller holds a call instruction only. ``fn`` is typed for ``args`` here (which
    compiles it, or loads it from the cache, as a plain call would) so that a call that could not
    be compiled fails at typing; exceptions raised in ``fn`` propagate as from a plain call.
    Constants among ``args`` are typed as literals, as a plain call types them (a window size
    captured by a driver's closure): ``fn``'s code is then specialised on their values.
    """
    if not (isinstance(addr, types.Integer) and isinstance(fn, types.Dispatcher)):
        return None
    argtys = tuple(args)
    fn.get_call_type(typingctx, argtys, {})
    from kernels.cpu.native import TYPED

    TYPED.add((fn.dispatcher, argtys))

    def codegen(context, builder, sig, llargs):
        fnty = context.call_conv.get_function_type(types.none, argtys)
        callee = builder.inttoptr(llargs[0], fnty.as_pointer())
        vals = cgutils.unpack_tuple(builder, llargs[2], len(argtys))     # (the star-args arrive as one tuple)
        status, _ = context.call_conv.call_function(builder, callee, types.none, argtys, vals)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return types.none(addr, fn, types.StarArgTuple.from_types(argtys)), codegen

"""Two fused CPU loops of the ConvNet chain, compiled from C on first use: conv -> pool -> ReLU of
the first block, and pool -> ReLU of a later one, each written straight into the next block's padded
input; and plans that run a point's loops and products in one call.

:mod:`engine.probes.core.conv_plane` runs a point of the built-in ConvNet as BLAS products plus
element-wise passes. In PyTorch the passes are separate operators: the first convolution is a
product with ``c_in * k + 1 = 4`` columns whose output (the largest activation, 40 positions x 32
channels a sample) goes to memory and back for ``maximum`` and again for the ReLU, and every later
pool is a ``maximum`` then a ``relu_``. Fused here, each reads its input once and writes only what
the next product reads. On the 2-core Sapphire Rapids VM, at one thread and 128 rows: the first
block 25 us against 42 for ``mm`` + ``maximum`` + ``relu_`` (49 against 105 at 256 rows), a pool
at L = 20 7.8 against 18.4, at L = 10 5.1 against 15.1 (``bench/conv_block_kernels.py``,
``bench/results/conv_block_kernels.txt``).

Plans. A point's row blocks are a fixed list of steps: per block the first loop, then per later
block one product per tap and the pool loop. :meth:`NativeKernels.plan` encodes them once (addresses
and strides in a table) and runs them all in one call, the products by the ``sgemm_`` of the BLAS
PyTorch itself calls (found in ``libtorch_cpu``; on x86-64 Linux its bundled MKL; the same thread
settings apply), so a point is one Python call instead of ~9 a block, and ``ctypes`` releases the
GIL for all of it: two point workers no longer take turns at their Python calls. A point of the
CNN w=32 surface at one thread: 7.5 ms with the loops called per block, 6.2 ms as a plan, of which
the products alone take 4.7 ms (169 GFLOP/s, ``bench/conv_point_profile.py``). Without ``sgemm_``
the loops are called per block between PyTorch's products.

Same results as PyTorch's operators: the maximum and ReLU keep NaN as ``torch.maximum`` and
``torch.relu`` do (a NaN on either side gives NaN; ``relu(NaN)`` is NaN), so pooled values are
equal to theirs up to a NaN's bits (its payload) and the sign of a zero (``relu(-0.0)`` is +0
here); the first convolution sums ``b + sum_{c, t} x w`` in that order, with no fused
multiply-add (``-ffp-contract=off``): equal to the product's to float rounding, on every CPU alike.

The library is built once per source, compiler and CPU (its model and instruction-set flags are
part of the file's name, so a cache shared between machines never hands one CPU another's
instructions) into a private cache (``$XDG_CACHE_HOME/zooscope/kernels`` or ``~/.cache/...``, mode
0700, owned by this user, else a private temporary directory) with the system's C compiler and
``-march=native``. (GCC's ``target_clones`` would make one portable file, but its 64-byte vector
code came out 20x slower than ``-march=native``'s: 166 against 7.8 us for a pool.) It is checked
against PyTorch on values with NaN, infinities and signed zeros before first use. Without a
compiler, when a check fails, or with ``ZOOSCOPE_NATIVE_KERNELS=0``, :func:`kernels` is None and the
chain runs PyTorch's operators.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["ENV", "NativeKernels", "kernels"]

#: Set to 0 to turn the compiled loops off (PyTorch's operators then run instead).
ENV = "ZOOSCOPE_NATIVE_KERNELS"
_log = logging.getLogger(__name__)

_SOURCE = r"""
#include <string.h>
typedef float vf __attribute__((vector_size(64)));
typedef int vi __attribute__((vector_size(64)));
#define V 16
static inline vf ld(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf sel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }
/* torch.maximum (NaN when either is NaN), then relu (NaN stays NaN) */
static inline vf vmaxrelu(vf a, vf b) {
    vf z = {0}, m = sel((a >= b) | (a != a), a, b);
    return sel((m > z) | (m != m), m, z);
}
static inline vf vrelu(vf m) { vf z = {0}; return sel((m > z) | (m != m), m, z); }
static inline float maxrelu(float a, float b) {
    float m = (a >= b || a != a) ? a : b;
    return (m > 0.0f || m != m) ? m : 0.0f;
}
static inline float relu(float m) { return (m > 0.0f || m != m) ? m : 0.0f; }

/* First block: x[s*xs + ci*xc + q] holds sample s, channel ci, zero-padded position q; output
   position l sums b[c] + x[l + t] w[(ci*k + t)*C + c] over ci then t. With pool, output j is
   relu(max(conv(2j), conv(2j + 1))), else relu(conv(j)); written to dst[s*ds + j*dp + c].
   (pool is a constant in each inlined copy: no branch in the loops.) */
static inline __attribute__((always_inline)) void conv_rows(
        const float *restrict x, long n, long xs, long xc, long c_in, long k, long lout, const int pool,
        long C, const float *restrict w, const float *restrict b, float *restrict dst, long ds, long dp) {
    for (long s = 0; s < n; s++)
        for (long j = 0; j < lout; j++) {
            const float *xe = x + s * xs + (pool ? 2 : 1) * j;
            float *d = dst + s * ds + j * dp;
            long c0 = 0;
            for (; c0 + V <= C; c0 += V) {
                vf e = ld(b + c0), o = e;
                const float *wc = w + c0;
                for (long ci = 0; ci < c_in; ci++, wc += k * C)
                    for (long t = 0; t < k; t++) {
                        vf wt = ld(wc + t * C);
                        e += xe[ci * xc + t] * wt;
                        if (pool) o += xe[ci * xc + t + 1] * wt;
                    }
                st(d + c0, pool ? vmaxrelu(e, o) : vrelu(e));
            }
            for (; c0 < C; c0++) {
                float e = b[c0], o = b[c0];
                for (long ci = 0; ci < c_in; ci++)
                    for (long t = 0; t < k; t++) {
                        const float wt = w[(ci * k + t) * C + c0];
                        e += xe[ci * xc + t] * wt;
                        if (pool) o += xe[ci * xc + t + 1] * wt;
                    }
                d[c0] = pool ? maxrelu(e, o) : relu(e);
            }
        }
}
void conv_pool_relu(const float *restrict x, long n, long xs, long xc, long c_in, long k, long lout, int pool,
                    long C, const float *restrict w, const float *restrict b, float *restrict dst, long ds, long dp) {
    if (pool) conv_rows(x, n, xs, xc, c_in, k, lout, 1, C, w, b, dst, ds, dp);
    else conv_rows(x, n, xs, xc, c_in, k, lout, 0, C, w, b, dst, ds, dp);
}

/* A later block's output src[s*ss + l*sp + c]: relu(max(l = 2j, 2j + 1)) with pool, else relu(l = j),
   written to dst[s*ds + j*dp + c]. */
void pool_relu(const float *restrict src, long n, long ss, long sp, long lout, int pool, long C,
               float *restrict dst, long ds, long dp) {
    const long step = pool ? 2 : 1;
    for (long s = 0; s < n; s++)
        for (long j = 0; j < lout; j++) {
            const float *u = src + s * ss + step * j * sp, *v = u + sp;
            float *d = dst + s * ds + j * dp;
            long c = 0;
            if (pool) {
                for (; c + V <= C; c += V) st(d + c, vmaxrelu(ld(u + c), ld(v + c)));
                for (; c < C; c++) d[c] = maxrelu(u[c], v[c]);
            } else {
                for (; c + V <= C; c += V) st(d + c, vrelu(ld(u + c)));
                for (; c < C; c++) d[c] = relu(u[c]);
            }
        }
}

/* A whole point's blocks in one call (the caller's GIL released for all of it): ops of 16 slots,
   1 = row-major C (m x n, ldc) = A (m x k, lda) B (k x n, ldb) [+ C] by the BLAS's Fortran sgemm
   (as C^T = B^T A^T), 2 = conv_pool_relu, 3 = pool_relu, with their arguments in order. */
/* The integers go by address as 64-bit values: on a little-endian CPU an LP64 sgemm_ (32-bit
   integers, PyTorch's MKL) reads their low halves, the same numbers below 2^31, and an ILP64 one
   reads them whole. */
typedef void (*sgemm_t)(const char *, const char *, const long *, const long *, const long *, const float *,
                        const float *, const long *, const float *, const long *, const float *, float *, const long *);
void run_plan(const long *p, long ops, void *gemm) {
    const sgemm_t g = (sgemm_t)gemm;
    for (long i = 0; i < ops; i++, p += 16) {
        if (p[0] == 1) {
            const long lda = p[2], ldb = p[4], ldc = p[6], m = p[7], n = p[8], k = p[9];
            const float one = 1.0f, beta = p[10] ? 1.0f : 0.0f;
            g("N", "N", &n, &m, &k, &one, (const float *)p[3], &ldb, (const float *)p[1], &lda, &beta,
              (float *)p[5], &ldc);
        } else if (p[0] == 2) {
            conv_pool_relu((const float *)p[1], p[2], p[3], p[4], p[5], p[6], p[7], (int)p[8], p[9],
                           (const float *)p[10], (const float *)p[11], (float *)p[12], p[13], p[14]);
        } else if (p[0] == 3) {
            pool_relu((const float *)p[1], p[2], p[3], p[4], p[5], (int)p[6], p[7], (float *)p[8], p[9], p[10]);
        }
    }
}
"""
_FLAGS = ["-O3", "-march=native", "-std=gnu11", "-fPIC", "-shared", "-ffp-contract=off", "-fno-math-errno"]
_COMPILE_SECONDS = 120


class _Op(NamedTuple):
    """One step of a plan: its code (1 product, 2 first block, 3 pool), its integer arguments
    (addresses and element strides) and the tensors they point into."""

    code: int
    args: tuple[int, ...]
    tensors: tuple[Tensor, ...]


class NativeKernels:
    """The loaded library; float32 tensors only, views given by address and element strides."""

    def __init__(self, lib: ctypes.CDLL, sgemm: int | None):
        i, p = ctypes.c_long, ctypes.c_void_p
        self._fns = {2: lib.conv_pool_relu, 3: lib.pool_relu}
        self._fns[2].argtypes = [p, i, i, i, i, i, i, ctypes.c_int, i, p, p, p, i, i]
        self._fns[3].argtypes = [p, i, i, i, i, ctypes.c_int, i, p, i, i]
        self._run = lib.run_plan
        self._run.argtypes = [ctypes.POINTER(ctypes.c_long), i, p]
        for fn in (*self._fns.values(), self._run):
            fn.restype = None
        self.sgemm = sgemm  # the address of the BLAS's sgemm_ PyTorch runs (None: no plans)

    def conv_op(self, x: Tensor, w: Tensor, b: Tensor, pool: bool, dst: Tensor) -> _Op:
        """``relu(pool(conv(x)))`` into ``dst``: ``x`` (n, c_in, L + 2p) zero padded, ``w`` (c_in * k, C)
        rows by channel then tap, ``b`` (C,), ``dst`` (n, L', C) with contiguous channels,
        ``L' = L // 2`` with ``pool`` else ``L``."""
        _check(_plain((x, 3), (w, 2), (b, 1), (dst, 3)) and x.stride(2) == 1 and w.is_contiguous()
               and b.is_contiguous() and dst.stride(2) == 1 and _apart(dst, x, w, b), "conv_pool_relu")
        n, c_in, padded = x.shape
        k = w.shape[0] // c_in
        lout = (padded - k + 1) // 2 if pool else padded - k + 1
        _check(dst.shape == (n, lout, w.shape[1]) and w.shape[0] == c_in * k and b.shape == (w.shape[1],),
               "conv_pool_relu shapes")
        return _Op(2, (x.data_ptr(), n, x.stride(0), x.stride(1), c_in, k, lout, int(pool), w.shape[1],
                       w.data_ptr(), b.data_ptr(), dst.data_ptr(), dst.stride(0), dst.stride(1)), (x, w, b, dst))

    def pool_op(self, src: Tensor, pool: bool, dst: Tensor) -> _Op:
        """``relu(max(src[:, 2j], src[:, 2j + 1]))`` (with ``pool``, else ``relu(src[:, j])``) into
        ``dst[:, j]``: ``src`` (n, L, C) and ``dst`` (n, L', C) with contiguous channels."""
        _check(_plain((src, 3), (dst, 3)) and src.stride(2) == 1 and dst.stride(2) == 1 and _apart(dst, src),
               "pool_relu")
        n, length, c = src.shape
        lout = length // 2 if pool else length
        _check(dst.shape == (n, lout, c), "pool_relu")
        return _Op(3, (src.data_ptr(), n, src.stride(0), src.stride(1), lout, int(pool), c, dst.data_ptr(),
                       dst.stride(0), dst.stride(1)), (src, dst))

    def gemm_op(self, a: Tensor, b: Tensor, c: Tensor, accumulate: bool) -> _Op:
        """``c = a @ b`` (``c += a @ b`` when ``accumulate``), row-major views with unit column stride."""
        _check(_plain((a, 2), (b, 2), (c, 2)) and all(t.stride(1) == 1 for t in (a, b, c)) and _apart(c, a, b),
               "gemm")
        (m, k), n = a.shape, b.shape[1]
        _check(b.shape[0] == k and c.shape == (m, n) and a.stride(0) >= max(1, k)
               and b.stride(0) >= max(1, n) and c.stride(0) >= max(1, n)
               and max(m, n, k, a.stride(0), b.stride(0), c.stride(0)) < 2**31, "gemm")
        return _Op(1, (a.data_ptr(), a.stride(0), b.data_ptr(), b.stride(0), c.data_ptr(), c.stride(0), m, n, k,
                       int(accumulate)), (a, b, c))

    def call(self, op: _Op) -> _Call:
        """One step as a call (products only in plans). The call keeps the tensors alive; they must not
        be resized while it is used."""
        if op.code == 1:
            raise ValueError("a product runs in a plan (NativeKernels.plan)")
        return _Call(functools.partial(self._fns[op.code], *op.args), op.tensors)

    def plan(self, ops: list[_Op]) -> _Call | None:
        """The steps as one call that runs them in order without the GIL, or None without the BLAS's
        sgemm. The call keeps the tensors alive; they must not be resized while it is used."""
        if self.sgemm is None:
            return None
        table = (ctypes.c_long * (16 * len(ops)))()
        for i, op in enumerate(ops):
            table[16 * i : 16 * i + 1 + len(op.args)] = [op.code, *op.args]
        run = functools.partial(self._run, table, len(ops), self.sgemm)
        return _Call(run, tuple(t for op in ops for t in op.tensors) + (table,))

    def conv_pool_relu(self, x: Tensor, w: Tensor, b: Tensor, pool: bool, dst: Tensor) -> _Call:
        """:meth:`conv_op` as a call."""
        return self.call(self.conv_op(x, w, b, pool, dst))

    def pool_relu(self, src: Tensor, pool: bool, dst: Tensor) -> _Call:
        """:meth:`pool_op` as a call."""
        return self.call(self.pool_op(src, pool, dst))


class _Call:
    """A prepared call of a loop, holding the tensors whose memory it reads and writes (by address)."""

    __slots__ = ("_fn", "_tensors")

    def __init__(self, fn, tensors: tuple[Tensor, ...]):
        self._fn, self._tensors = fn, tensors

    def __call__(self) -> None:
        self._fn()


def _plain(*pairs: tuple[Tensor, int]) -> bool:
    """Float32 tensors of these dimensions in CPU memory, strided, none empty (the loops read them by address)."""
    return all(t.dtype == torch.float32 and t.ndim == ndim and t.device.type == "cpu" and t.layout == torch.strided
               and t.numel() > 0 and min(t.stride()) >= 0 for t, ndim in pairs)


def _apart(out: Tensor, *inputs: Tensor) -> bool:
    """Whether ``out``'s memory (first to last element it spans) shares no byte with any input's."""

    def span(t: Tensor) -> tuple[int, int]:
        last = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
        return t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size()

    lo, hi = span(out)
    return all(e <= lo or s >= hi for s, e in map(span, inputs))


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"{what}: float32 tensors with contiguous channels and matching shapes expected")


def kernels() -> NativeKernels | None:
    """The compiled loops, or None when turned off (``ZOOSCOPE_NATIVE_KERNELS=0``), not on Linux or
    macOS, or not buildable or not correct here (logged once)."""
    if os.environ.get(ENV, "1").strip() == "0" or sys.platform not in ("linux", "darwin"):
        return None
    return _loaded()


@functools.cache
def _loaded() -> NativeKernels | None:
    try:
        found = NativeKernels(_open(), _sgemm())
        if found.sgemm is not None and not _products_agree(found):
            _log.warning("PyTorch's sgemm_ called directly disagrees with torch.mm; the loops run without plans")
            found.sgemm = None
        if not _agrees(found):
            _log.warning("compiled ConvNet loops disagree with PyTorch here; using PyTorch's operators")
            return None
        return found
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        _log.warning("compiled ConvNet loops unavailable (%s); using PyTorch's operators", err)
        return None


def _sgemm() -> int | None:
    """The address of ``sgemm_`` in PyTorch's own library (its bundled MKL on x86-64 Linux), or None
    (also on a big-endian CPU, where the 64-bit integers ``run_plan`` passes would not read as 32-bit ones)."""
    if sys.byteorder != "little":
        return None
    name = "libtorch_cpu.dylib" if sys.platform == "darwin" else "libtorch_cpu.so"
    try:
        fn = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / name)).sgemm_
    except (OSError, AttributeError):
        return None
    return ctypes.cast(fn, ctypes.c_void_p).value


def _open() -> ctypes.CDLL:
    path = _library()
    try:
        return _load(path)
    except OSError:  # a damaged file in the cache (a crash while copying, a full disk): built again, once
        path.unlink(missing_ok=True)
        return _load(_library())


def _load(path: Path) -> ctypes.CDLL:
    """``path`` loaded only if, opened without following a last symlink, it is a regular file this user
    owns that nobody else can write. Its folder is this user's alone and no folder above it can be
    renamed by another user (:func:`_private_dir`), so the file checked is the file loaded."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise OSError(f"{path} is not a file of this user's that only it can write")
    return ctypes.CDLL(str(path))


def _library() -> Path:
    """The compiled library: from the private cache, or built there now."""
    found = (shutil.which(name) for name in ("cc", "gcc", "clang"))
    cc = next((c for c in found if c and os.path.isabs(c)), None)  # a relative PATH entry is not trusted
    if cc is None:
        raise OSError("no C compiler (cc, gcc or clang) on PATH")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    parts = [_SOURCE, " ".join(_FLAGS), version, sys.platform, _cpu()]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]
    folder = _private_dir()
    target = folder / f"convnet_{key}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, out = Path(tmp) / "kernels.c", Path(tmp) / "kernels.so"
        src.write_text(_SOURCE)
        done = subprocess.run([cc, *_FLAGS, "-o", str(out), str(src)], capture_output=True, text=True,
                              timeout=_COMPILE_SECONDS)
        if done.returncode != 0:
            raise OSError(f"{cc} failed: {done.stderr.strip()[-400:]}")
        os.replace(out, target)  # whole or not at all, also when two processes build at once
    _prune(folder, keep=target)
    return target


def _prune(folder: Path, keep: Path, days: float = 30.0) -> None:
    """Libraries of other sources, compilers or CPUs not used for ``days`` (a cache shared between
    machines keeps each CPU's while it is in use)."""
    cutoff = time.time() - days * 86400
    for old in folder.glob("convnet_*.so"):
        try:
            if old != keep and old.stat().st_atime < cutoff and old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass


def _cpu() -> str:
    """This CPU's model and instruction-set flags (what ``-march=native`` compiles for)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [line for line in f.read(1 << 20).splitlines()
                     if line.startswith(("model name", "flags", "Features", "CPU part"))]
        return "\n".join(dict.fromkeys(lines))  # the first core's lines (the same on every core)
    except OSError:
        return f"{platform.machine()} {platform.processor()} {platform.platform()}"


def _private_dir() -> Path:
    """This user's kernel cache (created 0700), or a fresh private temporary directory when it is
    missing, a symlink, not ours, writable by others, or below a folder another user could rename it in."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "zooscope" / "kernels"
    if not folder.is_absolute():  # no home directory ("~" left unexpanded) or a relative XDG_CACHE_HOME
        return Path(_session_dir())
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = folder.lstat()  # a symlink is not the folder we made
        if (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
                and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and all(map(_fixed, folder.parents))):
            return folder
    except OSError:
        pass
    return Path(_session_dir())


def _fixed(folder: Path) -> bool:
    """Whether no other user can rename what ``folder`` holds: it belongs to this user or root and
    only its owner may write in it, or it is sticky (``/tmp``: only an entry's owner renames it)."""
    info = folder.stat()
    return info.st_uid in (0, os.getuid()) and (not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
                                                 or bool(info.st_mode & stat.S_ISVTX))


@functools.cache
def _session_dir() -> str:
    return tempfile.mkdtemp(prefix="zooscope-kernels-")


def _products_agree(k: NativeKernels) -> bool:
    """A plan's products (a strided left factor, written then accumulated) against float64, within
    the bound of their sums (``(terms + 2) u`` times the sum of absolute values); the first product
    must ignore what its output held (NaN here)."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(37, 20, generator=g)[:, 2:15], torch.randn(13, 21, generator=g)
    b2 = torch.randn(13, 21, generator=g)
    c = torch.full((37, 21), float("nan"))
    k.plan([k.gemm_op(a, b, c, False), k.gemm_op(a, b2, c, True)])()
    exact = a.double() @ (b.double() + b2.double())
    size = a.double().abs() @ (b.double().abs() + b2.double().abs())
    return bool(((c.double() - exact).abs() <= (2 * 13 + 2) * 2.0**-24 * size).all())


def _agrees(k: NativeKernels) -> bool:
    """Both loops against PyTorch's operators on values with NaN, infinities and signed zeros,
    pooled and not, with a channel tail beyond the vector width."""
    g = torch.Generator().manual_seed(0)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1.0, -1.0])
    for pool in (True, False):
        src = torch.randn(3, 8, 21, generator=g)
        src.view(-1)[::5] = special.repeat(src.numel() // 35 + 1)[: len(src.view(-1)[::5])]
        dst = torch.full((3, 4 if pool else 8, 21), 7.0)
        k.pool_relu(src, pool, dst)()
        want = torch.maximum(src[:, 0::2], src[:, 1::2]) if pool else src
        if not torch.equal(dst.isnan(), want.isnan()) or not torch.equal(dst.nan_to_num(), want.relu().nan_to_num()):
            return False
        x = torch.nn.functional.pad(torch.randn(3, 2, 8, generator=g), (1, 1))
        x[0, 0, 3] = float("nan")
        w, b = torch.randn(6, 21, generator=g), torch.randn(21, generator=g)
        out = torch.full((3, 4 if pool else 8, 21), 7.0)
        k.conv_pool_relu(x, w, b, pool, out)()
        conv = torch.nn.functional.conv1d(x, w.T.reshape(21, 2, 3), b).transpose(1, 2)
        want = (torch.maximum(conv[:, 0::2], conv[:, 1::2]) if pool else conv).relu()
        if not torch.equal(out.isnan(), want.isnan()) or not torch.allclose(out.nan_to_num(), want.nan_to_num(),
                                                                             rtol=1e-5, atol=1e-5):
            return False
    return True

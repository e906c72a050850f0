"""The compiled ConvNet loops (engine/probes/core/native.py).

Tolerance. A pooled or ReLU'd value is a maximum: exact, so equal to PyTorch's (NaN where it has
NaN; a NaN's payload bits and a zero's sign may differ). The first convolution sums ``K + 1`` terms
(``K = c_in k`` products and the bias) one after another in float32 without fused multiply-adds,
so each output is within ``gamma_K * (|b| + sum |x w|)`` of the exact sum (``gamma_K = K u / (1 -
K u)``, ``u = 2**-24``, Higham's bound for recursive summation of rounded products); a maximum and
a ReLU are 1-Lipschitz and keep that bound.
"""

import ctypes
import gc
import os
import shutil
import stat
import subprocess
import weakref

import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from engine.probes.core import native

U = 2.0**-24
SPECIAL = [float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1e-45, -1e-45, 3e38, -3e38]


def _compiler() -> bool:
    return any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))


@pytest.fixture
def loops():
    """The library as built, without the self-check :func:`native.kernels` runs before first use."""
    if not _compiler():
        pytest.skip("no C compiler here")
    return native.NativeKernels(ctypes.CDLL(str(native._library())), native._sgemm())  # noqa: SLF001


def test_loops_are_built_wherever_a_c_compiler_is(monkeypatch):
    monkeypatch.setenv(native.ENV, "1")
    if not _compiler():
        pytest.skip("no C compiler here")
    assert native.kernels() is not None  # a build or self-check that fails here would fall back silently


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(native.ENV, "0")
    assert native.kernels() is None


def _with_specials(shape, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g)
    flat = t.view(-1)
    idx = torch.randperm(flat.numel(), generator=g)[: 3 * len(SPECIAL)]
    flat[idx] = torch.tensor(SPECIAL).repeat(3)
    return t


@pytest.mark.parametrize("channels", [32, 21, 5, 48])
@pytest.mark.parametrize("pool", [True, False])
def test_pool_relu_equals_torch_up_to_nan_bits_and_zero_sign(loops, channels, pool):
    src_rows = _with_specials((4, 13, channels + 3), seed=channels)[:, :11, 1 : channels + 1]  # strided view
    out_len = 5 if pool else 11
    padded = torch.full((4, out_len + 2, channels + 1), 9.0)
    dst = padded[:, 1 : out_len + 1, :channels]
    loops.pool_relu(src_rows, pool, dst)()
    want = torch.maximum(src_rows[:, 0:10:2], src_rows[:, 1:10:2]) if pool else src_rows
    want = want.relu()
    assert torch.equal(dst.isnan(), want.isnan())
    assert torch.equal(dst.nan_to_num(), want.nan_to_num())
    assert not torch.signbit(dst[~dst.isnan()]).any()  # a ReLU's output: never negative, -0 included
    assert (padded[:, 0] == 9).all() and (padded[:, -1] == 9).all() and (padded[..., -1] == 9).all()  # nothing else


def _conv_bound(x, w, b, pool):
    """float64 reference of relu(pool(conv)) and Higham's bound on each output (module docstring)."""
    c_in, k = x.shape[1], w.shape[0] // x.shape[1]
    weight = w.double().T.reshape(-1, c_in, k)
    ref = F.conv1d(x.double(), weight, b.double()).transpose(1, 2)
    size = F.conv1d(x.double().abs(), weight.abs(), b.double().abs()).transpose(1, 2)
    terms = c_in * k
    gamma = terms * U / (1 - terms * U)
    if pool:
        half = ref.shape[1] // 2
        ref = torch.maximum(ref[:, 0 : 2 * half : 2], ref[:, 1 : 2 * half : 2])
        size = torch.maximum(size[:, 0 : 2 * half : 2], size[:, 1 : 2 * half : 2])
    return ref.relu(), gamma * size


@pytest.mark.parametrize(("c_in", "k", "length", "channels"), [(1, 3, 40, 32), (2, 5, 37, 21), (3, 1, 8, 16),
                                                             (1, 7, 41, 64)])
@pytest.mark.parametrize("pool", [True, False])
def test_first_block_within_the_summation_bound(loops, c_in, k, length, channels, pool):
    g = torch.Generator().manual_seed(k + c_in)
    x = F.pad(torch.randn(6, c_in, length, generator=g) * 3, (k // 2, k // 2))
    w, b = torch.randn(c_in * k, channels, generator=g), torch.randn(channels, generator=g)
    out_len = length // 2 if pool else length
    dst = torch.full((6, out_len, channels), 9.0)
    loops.conv_pool_relu(x, w, b, pool, dst)()
    ref, bound = _conv_bound(x, w, b, pool)
    assert ((dst.double() - ref).abs() <= bound).all()


def test_first_block_keeps_nan_and_infinity_like_torch(loops):
    x = F.pad(torch.randn(3, 1, 10), (1, 1))
    x[0, 0, 4] = float("nan")
    x[1, 0, 6] = float("inf")
    w, b = torch.randn(3, 16), torch.randn(16)
    dst = torch.empty(3, 5, 16)
    loops.conv_pool_relu(x, w, b, True, dst)()
    conv = F.conv1d(x, w.T.reshape(16, 1, 3), b).transpose(1, 2)
    want = torch.maximum(conv[:, 0::2], conv[:, 1::2]).relu()
    assert torch.equal(dst.isnan(), want.isnan()) and torch.equal(dst.isinf(), want.isinf())
    assert dst[0].isnan().any() and dst[1].isinf().any()


def test_a_prepared_call_keeps_its_tensors_alive(loops):
    def prepared():
        src, dst = torch.randn(2, 6, 16), torch.empty(2, 3, 16)
        return loops.pool_relu(src, True, dst), weakref.ref(src), weakref.ref(dst)

    call, src, dst = prepared()
    gc.collect()
    assert src() is not None and dst() is not None  # the loop reads them by address
    call()
    assert torch.equal(dst(), torch.maximum(src()[:, 0::2], src()[:, 1::2]).relu())
    del call
    gc.collect()
    assert src() is None and dst() is None


@pytest.mark.parametrize("accumulate", [False, True])
def test_plan_products_within_the_summation_bound(loops, accumulate):
    if loops.sgemm is None:
        pytest.skip("no sgemm_ in PyTorch's library here")
    g = torch.Generator().manual_seed(3)
    a = torch.randn(300, 40, generator=g)[5:, 3:36]  # strided rows, as the shifted taps are
    b = torch.randn(33, 32, generator=g)
    c = torch.randn(295, 48, generator=g)[:, :32]
    before = c.clone()
    if not accumulate:
        c.fill_(float("nan"))  # a fresh product ignores what its output held
    loops.plan([loops.gemm_op(a, b, c, accumulate)])()
    start = before.double() if accumulate else 0
    exact = start + a.double() @ b.double()
    size = (before.double().abs() if accumulate else 0) + a.double().abs() @ b.double().abs()
    assert ((c.double() - exact).abs() <= (33 + 2) * U * size).all()


def test_a_plan_runs_its_steps_in_order(loops):
    if loops.sgemm is None:
        pytest.skip("no sgemm_ in PyTorch's library here")
    g = torch.Generator().manual_seed(4)
    a, w = torch.randn(24, 16, generator=g), torch.randn(16, 16, generator=g)
    conv = torch.empty(24, 16)
    pooled = torch.empty(2, 6, 16)
    loops.plan([loops.gemm_op(a, w, conv, False), loops.pool_op(conv.view(2, 12, 16), True, pooled)])()
    product = a @ w
    want = torch.maximum(product.view(2, 12, 16)[:, 0::2], product.view(2, 12, 16)[:, 1::2]).relu()
    assert torch.allclose(pooled, want, rtol=0, atol=35 * U * float((a.abs() @ w.abs()).max()))


def test_layouts_it_cannot_read_are_refused(loops):
    x, w, b = torch.zeros(2, 1, 12), torch.zeros(3, 8), torch.zeros(8)
    with pytest.raises(ValueError, match="conv_pool_relu: float32 tensors"):
        loops.conv_pool_relu(x.double(), w, b, True, torch.zeros(2, 5, 8))
    with pytest.raises(ValueError, match="conv_pool_relu shapes"):
        loops.conv_pool_relu(x, w, b, True, torch.zeros(2, 4, 8))  # 10 positions pool to 5, not 4
    with pytest.raises(ValueError, match="pool_relu: float32 tensors"):
        loops.pool_relu(torch.zeros(2, 8, 10).transpose(1, 2), True, torch.zeros(2, 5, 8))  # channels strided
    with pytest.raises(ValueError, match="gemm: float32 tensors"):
        loops.gemm_op(torch.zeros(4, 3), torch.zeros(4, 5), torch.zeros(4, 5), False)  # inner sizes differ
    with pytest.raises(ValueError, match="gemm: float32 tensors"):
        loops.gemm_op(torch.zeros(4, 3).T, torch.zeros(4, 5), torch.zeros(3, 5), False)  # columns strided
    with pytest.raises(ValueError, match="conv_pool_relu: float32 tensors"):
        loops.conv_pool_relu(x, torch.zeros(3, 8, 0), b, True, torch.zeros(2, 5, 8))  # weights not a matrix
    with pytest.raises(ValueError, match="conv_pool_relu: float32 tensors"):
        loops.conv_pool_relu(x, w, b, True, torch.zeros(2, 5, 8, device="meta"))  # not in CPU memory
    shared = torch.zeros(2, 10, 8)
    with pytest.raises(ValueError, match="pool_relu: float32 tensors"):
        loops.pool_relu(shared, True, shared[:, 5:])  # the output overlaps the input
    m = torch.zeros(6, 6)
    with pytest.raises(ValueError, match="gemm: float32 tensors"):
        loops.gemm_op(m[:, :3], m[:3, 3:], m[:, 3:], False)  # the product's output inside a factor's span
    with pytest.raises(ValueError, match="a product runs in a plan"):
        loops.call(loops.gemm_op(torch.zeros(4, 3), torch.zeros(3, 5), torch.zeros(4, 5), False))


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A cold cache under ``tmp_path`` and no loaded library (put back after)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv(native.ENV, "1")
    native._loaded.cache_clear()  # noqa: SLF001
    yield tmp_path
    native._loaded.cache_clear()  # noqa: SLF001


def test_built_once_into_a_private_cache_then_reused(fresh, monkeypatch):
    if not _compiler():
        pytest.skip("no C compiler here")
    assert native.kernels() is not None
    folder = fresh / "zooscope" / "kernels"
    built = list(folder.glob("convnet_*.so"))
    assert len(built) == 1 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [p.name for p in folder.iterdir()] == [built[0].name]  # no half-written files left
    native._loaded.cache_clear()  # noqa: SLF001
    real = subprocess.run

    def no_compiler(cmd, *a, **kw):
        if "-shared" in cmd:
            raise AssertionError("compiled again")
        return real(cmd, *a, **kw)

    monkeypatch.setattr(native.subprocess, "run", no_compiler)
    assert native.kernels() is not None


def test_a_damaged_library_in_the_cache_is_built_again(fresh):
    if not _compiler():
        pytest.skip("no C compiler here")
    built = native._library()  # noqa: SLF001
    built.write_bytes(b"\x7fELF truncated")
    assert native.kernels() is not None
    assert built.read_bytes()[:4] == b"\x7fELF" and built.stat().st_size > 1000


def test_a_cache_others_can_write_to_is_not_used(fresh):
    folder = fresh / "zooscope" / "kernels"
    folder.mkdir(parents=True)
    os.chmod(folder, 0o777)
    planted = folder / "planted.so"
    planted.write_bytes(b"not a library")
    chosen = native._private_dir()  # noqa: SLF001
    assert chosen != folder and stat.S_IMODE(chosen.stat().st_mode) == 0o700


def test_a_relative_cache_location_is_not_used(fresh, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the spec says: ignore it
    chosen = native._private_dir()  # noqa: SLF001
    assert chosen.is_absolute() and stat.S_IMODE(chosen.stat().st_mode) == 0o700


def test_a_cache_below_a_folder_others_can_write_to_is_not_used(fresh, monkeypatch):
    shared = fresh / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # another user could rename our folder away and put theirs in its place
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    chosen = native._private_dir()  # noqa: SLF001
    assert not str(chosen).startswith(str(shared))
    os.chmod(shared, 0o1777)  # sticky, as /tmp: only an entry's owner may rename it
    assert native._private_dir() == shared / "zooscope" / "kernels"  # noqa: SLF001


def test_a_symlinked_cache_folder_is_not_used(fresh, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    os.chmod(elsewhere, 0o700)
    (fresh / "zooscope").mkdir(parents=True)
    (fresh / "zooscope" / "kernels").symlink_to(elsewhere)
    chosen = native._private_dir()  # noqa: SLF001
    assert chosen != fresh / "zooscope" / "kernels" and chosen.resolve() != elsewhere.resolve()


def test_a_library_only_others_could_have_written_is_not_loaded(fresh):
    if not _compiler():
        pytest.skip("no C compiler here")
    built = native._library()  # noqa: SLF001
    link = built.parent / "link.so"
    link.symlink_to(built)
    with pytest.raises(OSError):
        native._load(link)  # noqa: SLF001 - a symlink, not the file
    os.chmod(built, 0o777)
    with pytest.raises(OSError, match="only it can write"):
        native._load(built)  # noqa: SLF001
    os.chmod(built, 0o755)
    assert native._load(built) is not None  # noqa: SLF001


def test_libraries_unused_for_a_month_are_pruned(fresh):
    if not _compiler():
        pytest.skip("no C compiler here")
    folder = fresh / "zooscope" / "kernels"
    folder.mkdir(parents=True, mode=0o700)
    stale, recent = folder / "convnet_stale.so", folder / "convnet_recent.so"
    stale.write_bytes(b"x")
    recent.write_bytes(b"x")
    month = 31 * 86400
    os.utime(stale, (stale.stat().st_atime - month, stale.stat().st_mtime - month))
    built = native._library()  # noqa: SLF001
    assert built.exists() and recent.exists() and not stale.exists()


def test_without_a_compiler_the_chain_falls_back_to_torch(fresh, monkeypatch, caplog):
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    assert native.kernels() is None
    assert "no C compiler" in caplog.text


def test_a_failing_compiler_falls_back_with_its_message(fresh, monkeypatch, caplog):
    def broken(cmd, *a, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "cc1: error: bad option") if "-shared" in cmd \
            else subprocess.CompletedProcess(cmd, 0, "cc 1.0", "")

    monkeypatch.setattr(native.shutil, "which", lambda name: "/usr/bin/cc")  # absolute, as which returns
    monkeypatch.setattr(native.subprocess, "run", broken)
    assert native.kernels() is None
    assert "bad option" in caplog.text
    assert not list((fresh / "zooscope" / "kernels").glob("*.so"))

"""What each architecture needs from its inputs, checked before anything is built.

Input shapes exclude the batch axis: images are ``(C, H, W)``, sequences ``(C, L)``,
token sequences ``(T,)`` with a ``vocab_size``, tabular rows ``(D,)``.
"""

from __future__ import annotations

__all__ = ["check_build_args", "require_image", "require_sequence", "require_image_or_sequence", "require_tokens"]


def check_build_args(input_shape: tuple[int, ...], n_outputs: int, vocab_size: int | None) -> tuple[int, ...]:
    """Validate the arguments every architecture shares; return ``input_shape`` as a tuple."""
    shape = tuple(input_shape)
    if not shape or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive integers; got {input_shape!r}")
    if isinstance(n_outputs, bool) or not isinstance(n_outputs, int) or n_outputs < 1:
        raise ValueError(f"n_outputs must be a positive integer; got {n_outputs!r}")
    if vocab_size is not None and (isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1):
        raise ValueError(f"vocab_size must be a positive integer or None; got {vocab_size!r}")
    return shape


def _describe(shape: tuple[int, ...], vocab_size: int | None) -> str:
    if vocab_size is not None:
        return f"token inputs {shape} with vocab_size={vocab_size}"
    return f"input shape {shape}"


def require_image(arch: str, shape: tuple[int, ...], vocab_size: int | None) -> None:
    if len(shape) != 3 or vocab_size is not None:
        raise ValueError(f"architecture {arch!r} needs image inputs (C, H, W); got {_describe(shape, vocab_size)}")


def require_sequence(arch: str, shape: tuple[int, ...], vocab_size: int | None) -> None:
    if len(shape) != 2 or vocab_size is not None:
        raise ValueError(f"architecture {arch!r} needs sequence inputs (C, L); got {_describe(shape, vocab_size)}")


def require_image_or_sequence(arch: str, shape: tuple[int, ...], vocab_size: int | None) -> None:
    if len(shape) not in (2, 3) or vocab_size is not None:
        raise ValueError(
            f"architecture {arch!r} needs image inputs (C, H, W) or sequence inputs (C, L); "
            f"got {_describe(shape, vocab_size)}"
        )


def require_tokens(arch: str, shape: tuple[int, ...], vocab_size: int | None) -> None:
    if len(shape) != 1 or vocab_size is None:
        raise ValueError(
            f"architecture {arch!r} needs token inputs (T,) with a vocab_size; got {_describe(shape, vocab_size)}"
        )

"""The algebra behind :func:`engine.nets.infer_perm_spec`: which entries of which axes move together.

Every axis of every tensor in a traced graph carries a *label*: a sequence of segments
that tile the axis. A segment is

- ``Seg("c", cls, scale)``: the axis positions covered by permutation class ``cls``.
  A class is a set of positions ("base elements", ``length`` of them) that one perm
  reorders in units of ``unit`` consecutive elements; on this axis each base element is
  ``scale`` positions (a :class:`~fractions.Fraction`: ``H*W`` after a flatten from conv
  to linear, ``1/head_dim`` on the head axis after a split into heads);
- ``Seg("f", n)``: ``n`` positions that must not move (model inputs and outputs, kernel
  taps, positions read one by one);
- ``Seg("a", n)``: ``n`` positions holding the same value (a broadcast); any perm of them
  is harmless, so they constrain nothing.

Operations then constrain the classes: *unify* two labels (an elementwise op, a
contraction, a residual addition: both axes must be permuted alike), *fix* a class (it
cannot move), *split* a class where a slice or a concatenation cuts it (each part becomes
its own class) and *coarsen* a class so that it only moves whole blocks (heads). Classes
are merged with union-find; whatever is not proven safe is fixed, so the result is
conservative, and :func:`engine.nets.infer_perm_spec` verifies it numerically anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Classes", "Label", "Seg"]


@dataclass(frozen=True)
class Seg:
    kind: str  # "c" (class), "f" (fixed) or "a" (any: a broadcast constant)
    n: int = 0  # positions, for "f" and "a"
    cls: int = -1  # class id, for "c"
    scale: Fraction = Fraction(1)  # positions per base element of the class, for "c"
    why: tuple[str, bool] | None = None  # for "f" made from a fixed class: (reason, listed)


Label = tuple[Seg, ...]


class Classes:
    """Permutation classes under union-find, with splits (concatenations) and block units."""

    def __init__(self):
        self.parent: list[int] = []
        self.length: list[int] = []
        self.unit: list[int] = []
        self.children: list[list[int] | None] = []
        self.fixed: list[tuple[str, bool] | None] = []  # (reason, listed)
        self.rel: list[Fraction] = []  # base elements of a class per base element of its parent
        self.hints: dict[int, str] = {}  # preferred perm names (e.g. "attn.heads"), by class

    # ------------------------------------------------------------ classes
    def new(self, length: int) -> int:
        self.parent.append(len(self.parent))
        self.length.append(length)
        self.unit.append(1)
        self.children.append(None)
        self.fixed.append(None)
        self.rel.append(Fraction(1))
        return len(self.parent) - 1

    def find(self, c: int) -> int:
        return self.resolve(c)[0]

    def resolve(self, c: int) -> tuple[int, Fraction]:
        """The root of ``c`` and how many of ``c``'s base elements one root element holds."""
        path = []
        while self.parent[c] != c:
            path.append(c)
            c = self.parent[c]
        rel = Fraction(1)
        for node in reversed(path):  # compress: every node on the path now points at the root
            rel *= self.rel[node]
            self.parent[node], self.rel[node] = c, rel
        return c, (self.rel[path[0]] if path else Fraction(1))

    def fix(self, c: int, reason: str, listed: bool) -> None:
        """Keep class ``c`` (every part of it) in place; the first reason is kept."""
        r = self.find(c)
        if self.children[r] is not None:
            for child in self.children[r]:
                self.fix(child, reason, listed)
        elif self.fixed[r] is None:
            self.fixed[r] = (reason, listed)

    def merge(self, c1: int, c2: int, reason: str, ratio: Fraction = Fraction(1)) -> None:
        """Two leaf root classes become one perm; ``ratio`` = elements of ``c2`` per element of ``c1``
        (16 when a linear layer's inputs are the 4x4 positions of each channel of a conv)."""
        r1, r2 = self.find(c1), self.find(c2)
        if r1 == r2:
            if ratio != 1:
                self.fix(r1, f"{reason}: the same units at two block sizes", True)
            return
        if self.length[r2] != self.length[r1] * ratio:  # cannot happen for axes of equal length
            self.fix(r1, reason, True)
            self.fix(r2, reason, True)
            return
        self.parent[r2], self.rel[r2] = r1, ratio
        self.fixed[r1] = self.fixed[r1] or self.fixed[r2]
        if r2 in self.hints:
            self.hints.setdefault(r1, self.hints[r2])
        # r1's blocks of u1 elements are u1 * ratio elements of r2, which must be whole blocks of r2
        need = (ratio / self.unit[r2]).denominator
        unit = math.lcm(self.unit[r1], need)
        self.unit[r1] = unit
        if self.length[r1] % unit:
            self.fix(r1, f"{reason}: the blocks of its parts do not tile the axis", True)

    def split(self, c: int, offset: int, reason: str) -> bool:
        """Cut leaf class ``c`` at base element ``offset`` into two classes; False when a unit would be cut."""
        r = self.find(c)
        if offset % self.unit[r] or self.fixed[r] is not None:
            self.fix(r, f"{reason} cuts through a block of units", True)
            return False
        a, b = self.new(offset), self.new(self.length[r] - offset)
        self.unit[a] = self.unit[b] = self.unit[r]
        self.children[r] = [a, b]
        return True

    def coarsen(self, c: int, factor: int, reason: str) -> None:
        """Make leaf class ``c`` move only blocks of a multiple of ``factor`` base elements."""
        r = self.find(c)
        unit = math.lcm(self.unit[r], factor)
        if self.length[r] % unit:
            self.fix(r, f"{reason}: blocks of {unit} do not tile {self.length[r]} units", True)
        else:
            self.unit[r] = unit

    # ------------------------------------------------------------ labels
    def fixed_label(self, n: int) -> Label:
        return (Seg("f", n),) if n else ()

    def any_label(self, n: int) -> Label:
        return (Seg("a", n),) if n else ()

    def fresh_label(self, n: int) -> Label:
        return (Seg("c", cls=self.new(n)),) if n else ()

    def seg_len(self, s: Seg) -> int:
        if s.kind != "c":
            return s.n
        n = self.length[s.cls] * s.scale
        assert n.denominator == 1, (s, n)
        return int(n)

    def length_of(self, label: Label) -> int:
        return sum(self.seg_len(s) for s in label)

    def normalize(self, label: Label) -> Label:
        """Leaf classes only; fixed classes become fixed segments; neighbours of one kind merged."""
        out: list[Seg] = []
        for s in label:
            for leaf in self._leaves(s):
                if out and leaf.kind != "c" and out[-1].kind == leaf.kind:
                    out[-1] = Seg(leaf.kind, out[-1].n + leaf.n, why=_first_listed(out[-1].why, leaf.why))
                elif leaf.kind == "c" or leaf.n:
                    out.append(leaf)
        return tuple(out)

    def _leaves(self, s: Seg) -> list[Seg]:
        if s.kind != "c":
            return [s]
        r, rel = self.resolve(s.cls)
        s = Seg("c", cls=r, scale=s.scale * rel)
        if self.children[r] is not None:
            return [leaf for child in self.children[r] for leaf in self._leaves(Seg("c", cls=child, scale=s.scale))]
        if self.fixed[r] is not None:
            return [Seg("f", self.seg_len(s), why=self.fixed[r])]
        return [Seg("c", cls=r, scale=s.scale)]

    def classes_in(self, label: Label) -> list[int]:
        return [s.cls for s in self.normalize(label) if s.kind == "c"]

    def fix_label(self, label: Label, reason: str, listed: bool) -> None:
        for c in self.classes_in(label):
            self.fix(c, reason, listed)

    def unify(self, a: Label, b: Label, reason: str) -> Label:
        """Constrain two labels of one length to be permuted alike; returns the common label."""
        if self.length_of(a) != self.length_of(b):
            self.fix_label(a, reason, True)
            self.fix_label(b, reason, True)
            return self.fixed_label(self.length_of(a))
        for _ in range(64):  # each round cuts one class; 64 cuts per axis pair is plenty
            a, b = self.normalize(a), self.normalize(b)
            cut = self._first_cut(a, b, reason) or self._first_cut(b, a, reason)
            if not cut:
                break
        self._pair(a, b, reason)
        self._pair(b, a, reason)
        a, b = self.normalize(a), self.normalize(b)
        return b if any(s.kind == "a" for s in a) and not any(s.kind == "a" for s in b) else a

    def _spans(self, label: Label) -> list[tuple[int, int, Seg]]:
        out, pos = [], 0
        for s in label:
            n = self.seg_len(s)
            out.append((pos, pos + n, s))
            pos += n
        return out

    def _pair(self, a: Label, b: Label, reason: str) -> None:
        """Every class segment of ``a`` against the segment of ``b`` that holds it (after the cuts
        of :meth:`unify` each class segment lies inside one segment of the other label)."""
        spans_b = self._spans(self.normalize(b))
        for lo, hi, sa in self._spans(self.normalize(a)):
            if sa.kind != "c" or self.fixed[self.find(sa.cls)] is not None:
                continue
            sb = next(s for start, end, s in spans_b if start <= lo and hi <= end)
            if sb.kind == "f":
                self.fix(sa.cls, *(sb.why if sb.why and sb.why[1] else (reason, False)))
            elif sb.kind == "c":
                self.merge(sa.cls, sb.cls, reason, sa.scale / sb.scale)

    def _first_cut(self, a: Label, b: Label, reason: str) -> bool:
        """Cut a class segment of ``a`` at the first boundary of ``b`` inside it; True if one was cut."""
        bounds = {end for _, end, _ in self._spans(b)}
        for start, end, s in self._spans(a):
            inner = sorted(x for x in bounds if start < x < end)
            if inner and s.kind == "c":
                offset = Fraction(inner[0] - start) / s.scale
                if offset.denominator != 1 or not self.split(s.cls, int(offset), reason):
                    self.fix(s.cls, f"{reason} cuts through a block of units", True)
                return True
        return False

    def cut(self, label: Label, start: int, stop: int, reason: str) -> Label:
        """The part of ``label`` on positions ``[start, stop)``, splitting classes at both ends."""
        n = self.length_of(label)
        marks = self.fixed_label(start) + self.fixed_label(stop - start) + self.fixed_label(n - stop)
        for _ in range(64):
            label = self.normalize(label)
            if not self._first_cut(label, marks, reason):
                break
        out, pos = [], 0
        for s in self.normalize(label):
            end = pos + self.seg_len(s)
            lo, hi = max(pos, start), min(end, stop)
            if lo < hi:
                out.append(s if s.kind == "c" else Seg(s.kind, hi - lo))
            pos = end
        return tuple(out)

    def scale(self, label: Label, factor: int) -> Label:
        """Each position of ``label`` becomes ``factor`` consecutive positions (merging an inner axis)."""
        return tuple(Seg("c", cls=s.cls, scale=s.scale * factor) if s.kind == "c" else Seg(s.kind, s.n * factor)
                     for s in self.normalize(label))

    def divide(self, label: Label, factor: int, reason: str) -> Label:
        """``label`` read in steps of ``factor`` positions (the outer axis of a split): classes
        are coarsened to whole blocks of ``factor`` positions; a segment boundary inside a
        step fixes the classes of the label."""
        label = self.normalize(label)
        pos, out = 0, []
        for s in label:
            n = self.seg_len(s)
            if pos % factor or n % factor:
                self.fix_label(label, f"{reason} cuts through the units of a part", True)
                return self.fixed_label(self.length_of(label) // factor)
            if s.kind == "c":
                step = Fraction(factor) / s.scale
                self.coarsen(s.cls, step.numerator, reason)
                why = self.fixed[self.find(s.cls)]
                kept = Seg("c", cls=s.cls, scale=s.scale / factor)
                out.append(kept if why is None else Seg("f", n // factor, why=why))
            else:
                out.append(Seg(s.kind, n // factor))
            pos += n
        return self.normalize(tuple(out))

    def fixed_reasons(self, label: Label) -> list[str]:
        """Why the fixed parts of ``label`` are fixed, for those worth telling the user."""
        return [s.why[0] for s in self.normalize(label) if s.kind == "f" and s.why and s.why[1]]

    def is_plain(self, label: Label, kind: str) -> bool:
        return all(s.kind == kind for s in self.normalize(label))


def _first_listed(a, b):
    return a if a and a[1] else b if b and b[1] else a or b

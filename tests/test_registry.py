"""The one registry helper: one duplicate policy and one unknown-name message for every registry."""

from __future__ import annotations

import pytest

from engine.data.registry import DATASETS
from engine.jobs.kinds import JOB_KINDS
from engine.jobs.probe_job import PROBE_KINDS
from engine.nets.registry import ARCHITECTURES
from engine.registry import Registry


def first(x):
    return x


def second(x):
    return x


def test_the_same_entry_again_is_a_no_op_and_a_different_one_names_both():
    reg = Registry("widget")
    reg.register("a", first)
    reg.register("a", first)
    assert reg.names() == ["a"] and reg.get("a") is first
    with pytest.raises(ValueError, match=r"widget 'a' is already registered as .*test_registry\.first; refusing "
                                         r"to replace it with .*test_registry\.second\. Register yours under "
                                         r"another name"):
        reg.register("a", second)
    assert reg.get("a") is first  # the refusal changed nothing


def test_equal_entries_count_as_the_same():
    reg = Registry("option")
    reg.register("k", (1, "x"))
    reg.register("k", (1, "x"))  # equal, not identical
    with pytest.raises(ValueError, match=r"option 'k' is already registered as \(1, 'x'\).*with \(2, 'x'\)"):
        reg.register("k", (2, "x"))


def test_unknown_names_list_the_known_ones_with_the_hint_and_error_type():
    class WidgetError(ValueError):
        pass

    reg = Registry("widget", hint="Add one with register().", error=WidgetError)
    for name in ("b", "a"):
        reg.register(name, name.upper())
    with pytest.raises(WidgetError, match=r"^unknown widget 'c'; available: a, b\. Add one with register\(\)\.$"):
        reg.get("c")
    with pytest.raises(WidgetError, match=r"unknown widget \['x'\]"):
        reg.check(["x"])  # unhashable: still the registry's error
    assert reg.check("a") == "a" and "a" in reg and ["x"] not in reg
    assert [n for n, _ in reg.items()] == ["b", "a"]  # registration order; names() is sorted


@pytest.mark.parametrize("name", ["", " a", 3])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match=r"widget name must be a non-empty string without surrounding spaces"):
        Registry("widget").register(name, first)


def test_copy_and_unregister_leave_the_original_alone():
    reg = Registry("widget")
    reg.register("a", first)
    other = reg.copy()
    other.unregister("a")
    other.register("a", second)
    assert reg.get("a") is first and other.get("a") is second
    with pytest.raises(ValueError, match=r"unknown widget 'z'"):
        other.unregister("z")


@pytest.mark.parametrize(("registry", "what"), [(DATASETS, "dataset"), (ARCHITECTURES, "architecture"),
                                               (PROBE_KINDS, "probe"), (JOB_KINDS, "job kind")])
def test_every_engine_registry_is_one(registry, what):
    assert isinstance(registry, Registry) and registry.what == what

"""Contract drift: the shape of a document and the tracker that reports changes once."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.core.drift import Drift, DriftTracker, child_path, shape_of
from proxy.core.jsonpath import compile_path


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (None, {("$", "null")}),
        (3, {("$", "number")}),
        (3.5, {("$", "number")}),
        (True, {("$", "boolean")}),
        ("x", {("$", "string")}),
        ([], {("$", "array")}),
        ({}, {("$", "object")}),
        (
            {"price": 1, "tags": ["a", 2], "n": None},
            {
                ("$", "object"),
                ("$.price", "number"),
                ("$.tags", "array"),
                ("$.tags[*]", "string"),
                ("$.tags[*]", "number"),
                ("$.n", "null"),
            },
        ),
        (
            {"weird key": {"it's": 1}},
            {("$", "object"), ("$['weird key']", "object"), ("$['weird key']['it\\'s']", "number")},
        ),
        (
            [{"a": 1}, {"b": "x"}],
            {("$", "array"), ("$[*]", "object"), ("$[*].a", "number"), ("$[*].b", "string")},
        ),
    ],
)
def test_shape_of(doc: Any, expected: set[tuple[str, str]]) -> None:
    assert shape_of(doc) == expected


def test_shape_paths_are_jsonpaths() -> None:
    doc = {"weird key": {"it's": 1}, "a-b": [{"x.y": 2}]}
    for path, _ in shape_of(doc):
        assert compile_path(path.replace("[*]", "[0]")).find(doc)


def test_shape_depth_limit() -> None:
    doc = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    paths = {p for p, _ in shape_of(doc)}
    assert "$.a.b.c.d" in paths
    assert "$.a.b.c.d.e" not in paths
    assert {p for p, _ in shape_of(doc, max_depth=1)} == {"$", "$.a"}


def test_shape_samples_the_first_items() -> None:
    items: list[dict[str, Any]] = [{"a": 1}] * 20 + [{"late": 1}]
    assert ("$[*].late", "number") not in shape_of(items)
    assert ("$[*].late", "number") in shape_of(items, max_items=21)


def test_shape_collapses_big_maps() -> None:
    prices = {f"SKU{i}": {"p": i} for i in range(100)}
    shape = shape_of({"prices": prices})
    assert ("$.prices.*.p", "number") in shape
    assert not any("SKU" in p for p, _ in shape)


@pytest.mark.parametrize(
    ("parent", "key", "path"),
    [("$", "a", "$.a"), ("$", "a b", "$['a b']"), ("$.x", "1", "$.x['1']"), ("$", "_", "$._")],
)
def test_child_path(parent: str, key: str, path: str) -> None:
    assert child_path(parent, key) == path


BASE = {"sku": "A", "price": 1, "items": [{"id": 1, "price": 2}]}


def drift(before: Any, after: Any) -> Drift | None:
    tracker = DriftTracker()
    assert tracker.observe(before) is None  # the first observation only learns
    return tracker.observe(after)


@pytest.mark.parametrize(
    ("after", "added", "removed", "retyped"),
    [
        ({**BASE, "promo": "x"}, [("$.promo", "string")], [], []),
        ({"sku": "A", "items": BASE["items"]}, [], [("$.price", "number")], []),
        ({**BASE, "price": "1.00"}, [], [], [("$.price", "number", "string")]),
        (
            {**BASE, "items": [{"id": 1, "cost": 2}]},
            [("$.items[*].cost", "number")],
            [("$.items[*].price", "number")],
            [],
        ),
        (
            {**BASE, "items": {"id": 1}},
            [("$.items.id", "number")],
            [],
            [("$.items", "array", "object")],
        ),
        ({**BASE, "price": 1.25}, None, None, None),  # int -> float is not drift
        ({**BASE, "price": None}, None, None, None),  # nullable, not retyped
        ({**BASE, "items": []}, None, None, None),  # an empty list removes nothing
        ({**BASE, "items": [{"id": 1, "price": None}]}, None, None, None),
    ],
)
def test_drift(
    after: Any,
    added: list[tuple[str, str]] | None,
    removed: list[tuple[str, str]] | None,
    retyped: list[tuple[str, str, str]] | None,
) -> None:
    result = drift(BASE, after)
    if added is None:
        assert result is None
        return
    assert result == Drift(tuple(added), tuple(removed or ()), tuple(retyped or ()))


def test_a_change_is_reported_once() -> None:
    tracker = DriftTracker()
    tracker.observe(BASE)
    changed = {**BASE, "price": "1.00"}
    assert tracker.observe(changed) is not None
    assert tracker.observe(changed) is None
    assert tracker.observe(changed) is None
    back = tracker.observe(BASE)  # changing back is a distinct change
    assert back is not None and back.retyped == (("$.price", "string", "number"),)


def test_empty_then_full_list_is_quiet() -> None:
    tracker = DriftTracker()
    tracker.observe(BASE)
    assert tracker.observe({**BASE, "items": []}) is None
    assert tracker.observe(BASE) is None


def test_null_keeps_the_known_type() -> None:
    tracker = DriftTracker()
    tracker.observe(BASE)
    assert tracker.observe({**BASE, "price": None}) is None
    result = tracker.observe({**BASE, "price": "x"})
    assert result is not None and result.retyped == (("$.price", "null|number", "string"),)


def test_optional_field_is_reported_once() -> None:
    tracker = DriftTracker()
    with_promo = {**BASE, "promo": {"code": "X"}}
    tracker.observe(with_promo)
    result = tracker.observe(BASE)
    assert result is not None and result.removed == (("$.promo", "object"),)  # not its children
    assert tracker.observe(with_promo) is None  # it came back: optional
    assert tracker.observe(BASE) is None
    assert tracker.observe(with_promo) is None


def test_shape_and_restore() -> None:
    tracker = DriftTracker()
    assert tracker.shape is None
    tracker.observe(BASE)
    restored = DriftTracker(learned=tracker.shape)
    assert restored.observe(BASE) is None
    assert restored.observe({**BASE, "new": 1}) is not None


def test_summary() -> None:
    d = Drift(
        added=(("$.discount", "number"),),
        removed=(("$.price", "number"),),
        retyped=(("$.sku", "string", "number"),),
    )
    assert d.summary() == "added $.discount (number); removed $.price; retyped $.sku string->number"

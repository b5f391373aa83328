"""Guards, the JSONPath subset they use, and the hysteresis that lets a real change through."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.guard_rules import GuardConfigError, parse_guards
from proxy.core.guards import (
    PASSED,
    Hysteresis,
    Rule,
    Verdict,
    Violation,
    check_body,
    check_doc,
    guarded_paths,
)
from proxy.core.jsonpath import compile_path


def one(rule: dict[str, Any]) -> tuple[Rule, ...]:
    return parse_guards([rule])


def failed(rules: tuple[Rule, ...], doc: Any, last_good: Any = None) -> list[str]:
    return [v.rule for v in check_doc(rules, doc, last_good=last_good).violations]


# ---------------------------------------------------------------- JSONPath

DOC = {"a": {"b": 1}, "items": [{"price": 1}, {"price": 2}], "weird key": 3, "n": None}


@pytest.mark.parametrize(
    ("path", "doc", "expected"),
    [
        ("$", DOC, [DOC]),
        ("$.a.b", DOC, [1]),
        ("$.a", DOC, [{"b": 1}]),
        ("$.items[0]", DOC, [{"price": 1}]),
        ("$.items[-1].price", DOC, [2]),
        ("$.items[2]", DOC, []),
        ("$.items[-3]", DOC, []),
        ("$.items[*].price", DOC, [1, 2]),
        ("$.a.*", DOC, [1]),
        ("$['weird key']", DOC, [3]),
        ('$["weird key"]', DOC, [3]),
        ("$.n", DOC, [None]),
        ("$.missing", DOC, []),
        ("$.a.b.c", DOC, []),
        ("$.items.price", DOC, []),  # a key step on a list matches nothing
        ("$.a[0]", DOC, []),  # an index step on an object matches nothing
        ("$.x", "not an object", []),
        ("$[0]", "abc", []),  # strings are not arrays
        ("$[*]", 5, []),
        ("$['it\\'s']", {"it's": 1}, [1]),
    ],
)
def test_find(path: str, doc: Any, expected: list[Any]) -> None:
    assert compile_path(path).find(doc) == expected


@pytest.mark.parametrize(
    ("path", "doc", "missing"),
    [
        ("$.items[*].price", {"items": []}, False),  # vacuous: nothing to check
        ("$.items[*].price", {"items": [{"price": 1}, {}]}, True),
        ("$.items[*].price", {}, True),
        ("$.items[*]", {"items": 3}, True),
        ("$.a", {"a": None}, False),
    ],
)
def test_resolve_reports_missing(path: str, doc: Any, missing: bool) -> None:
    assert compile_path(path).resolve(doc)[1] is missing


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("price", "must start with '$'"),
        ("$..price", "recursive descent"),
        ("$.", "expected a name"),
        ("$[", "unclosed"),
        ("$[1", "expected ']'"),
        ("$[a]", "inside []"),
        ("$['x", "unterminated"),
        ("$x", "expected '.' or '['"),
        ("$[?(@.a)]", "inside []"),
        ("$[1:2]", "expected ']'"),
    ],
)
def test_compile_path_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="bad JSONPath") as info:
        compile_path(text)
    assert fragment in str(info.value)


def test_singular() -> None:
    assert compile_path("$.a[0]['b']").singular
    assert not compile_path("$.a[*].b").singular
    assert not compile_path("$.a.*").singular


# ---------------------------------------------------------------- absolute rules

ITEMS = {"items": [{"price": 1.5, "sku": "A-1"}, {"price": 2, "sku": "B-2"}]}


@pytest.mark.parametrize(
    ("rule", "doc", "violation"),
    [
        ({"path": "$.p", "gt": 0}, {"p": 1}, None),
        ({"path": "$.p", "gt": 0}, {"p": 0}, "gt"),
        ({"path": "$.p", "gt": 0}, {"p": True}, "gt"),  # booleans are not numbers
        ({"path": "$.p", "gt": 0}, {"p": "5"}, "gt"),
        ({"path": "$.p", "gt": 0}, {"p": math.nan}, "gt"),
        ({"path": "$.p", "gt": 0}, {"p": 10**400}, None),
        ({"path": "$.p", "ge": 0}, {"p": 0}, None),
        ({"path": "$.p", "ge": 0}, {"p": -0.01}, "ge"),
        ({"path": "$.p", "lt": 10}, {"p": 9.99}, None),
        ({"path": "$.p", "lt": 10}, {"p": 10}, "lt"),
        ({"path": "$.p", "le": 10}, {"p": 10}, None),
        ({"path": "$.p", "le": 10}, {"p": math.inf}, "le"),
        ({"path": "$.p", "eq": 1}, {"p": 1.0}, None),
        ({"path": "$.p", "eq": 1}, {"p": True}, "eq"),
        ({"path": "$.p", "eq": True}, {"p": 1}, "eq"),
        ({"path": "$.p", "eq": None}, {"p": None}, None),
        ({"path": "$.p", "eq": "v2"}, {"p": "v3"}, "eq"),
        ({"path": "$.c", "one_of": ["GBP", "EUR"]}, {"c": "EUR"}, None),
        ({"path": "$.c", "one_of": ["GBP", "EUR"]}, {"c": "gbp"}, "one_of"),
        ({"path": "$.c", "one_of": ["GBP", "EUR"]}, {"c": ["GBP"]}, "one_of"),
        ({"path": "$.c", "one_of": [1, 2]}, {"c": True}, "one_of"),
        ({"path": "$.c", "one_of": [True]}, {"c": True}, None),
        ({"path": "$.v", "type": "string"}, {"v": "x"}, None),
        ({"path": "$.v", "type": "string"}, {"v": 1}, "type"),
        ({"path": "$.v", "type": "number"}, {"v": 1.5}, None),
        ({"path": "$.v", "type": "number"}, {"v": True}, "type"),
        ({"path": "$.v", "type": "integer"}, {"v": 3}, None),
        ({"path": "$.v", "type": "integer"}, {"v": 3.0}, None),
        ({"path": "$.v", "type": "integer"}, {"v": 3.5}, "type"),
        ({"path": "$.v", "type": "integer"}, {"v": False}, "type"),
        ({"path": "$.v", "type": "boolean"}, {"v": False}, None),
        ({"path": "$.v", "type": "boolean"}, {"v": 0}, "type"),
        ({"path": "$.v", "type": "object"}, {"v": {}}, None),
        ({"path": "$.v", "type": "object"}, {"v": []}, "type"),
        ({"path": "$.v", "type": "array"}, {"v": []}, None),
        ({"path": "$.v", "type": "array"}, {"v": {}}, "type"),
        ({"path": "$.v", "type": "null"}, {"v": None}, None),
        ({"path": "$.v", "type": "null"}, {"v": 0}, "type"),
        ({"path": "$.v", "type": "null"}, {}, "missing"),  # missing is not null
        ({"path": "$.v", "not_empty": True}, {"v": "x"}, None),
        ({"path": "$.v", "not_empty": True}, {"v": ""}, "not_empty"),
        ({"path": "$.v", "not_empty": True}, {"v": [0]}, None),
        ({"path": "$.v", "not_empty": True}, {"v": []}, "not_empty"),
        ({"path": "$.v", "not_empty": True}, {"v": {}}, "not_empty"),
        ({"path": "$.v", "not_empty": True}, {"v": 0}, "not_empty"),
        ({"path": "$.v", "not_empty": True}, {"v": None}, "not_empty"),
        ({"path": "$.v", "min_items": 1}, {"v": [1]}, None),
        ({"path": "$.v", "min_items": 1}, {"v": []}, "min_items"),
        ({"path": "$.v", "min_items": 1}, {"v": "x"}, "min_items"),
        ({"path": "$.v", "max_items": 2}, {"v": [1, 2]}, None),
        ({"path": "$.v", "max_items": 2}, {"v": [1, 2, 3]}, "max_items"),
        ({"path": "$.s", "matches": "^[A-Z0-9-]+$"}, {"s": "AB-12"}, None),
        ({"path": "$.s", "matches": "^[A-Z0-9-]+$"}, {"s": "ab"}, "matches"),
        ({"path": "$.s", "matches": "[0-9]"}, {"s": "x1y"}, None),  # re.search, not match
        ({"path": "$.s", "matches": "^[0-9]+$"}, {"s": 12}, "matches"),  # strings only
        ({"path": "$.items[*].price", "gt": 0}, ITEMS, None),
        ({"path": "$.items[*].price", "gt": 1.5}, ITEMS, "gt"),
        ({"path": "$.items[*].sku", "matches": "^[A-Z]-"}, ITEMS, None),
        ({"path": "$.items[*].price", "gt": 0}, {"items": []}, None),  # vacuous
        ({"path": "$.items[*].price", "gt": 0}, {"items": [{"price": 1}, {}]}, "missing"),
        ({"path": "$.p", "gt": 0}, {}, "missing"),
        ({"path": "$.p", "gt": 0}, [], "missing"),
        ({"path": "$.p", "gt": 0}, None, "missing"),
        ({"required": ["$.a", "$.b.c"]}, {"a": 0, "b": {"c": ""}}, None),
        ({"required": ["$.a", "$.b.c"]}, {"a": 0, "b": {}}, "required"),
        ({"required": ["$.a"]}, {"a": None}, "required"),
        ({"required": ["$.items[*].sku"]}, ITEMS, None),
        ({"required": ["$.items[*].sku"]}, {"items": [{"sku": None}]}, "required"),
    ],
)
def test_rule(rule: dict[str, Any], doc: Any, violation: str | None) -> None:
    assert failed(one(rule), doc) == ([] if violation is None else [violation])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([float(i + 1) for i in range(1000)], None),
        ([i + 1 for i in range(999)] + [0], "0"),
        ([1.0] * 500 + [math.nan] + [1.0] * 499, "nan"),
        ([1.0] * 500 + [True] + [1.0] * 499, "true"),
        ([10**400, 0.5], None),  # a huge int next to a float: exact comparison, no overflow
        ([math.inf, -math.inf], "-inf"),
        ([1, "2"], "'2'"),
    ],
)
def test_wildcard_over_many_reports_first_offender(values: list[Any], expected: str | None) -> None:
    doc = {"items": [{"price": v} for v in values]}
    verdict = check_doc(one({"path": "$.items[*].price", "gt": 0}), doc, last_good=None)
    assert [v.value for v in verdict.violations] == ([] if expected is None else [expected])


@pytest.mark.parametrize(
    ("rule", "values", "ok"),
    [
        ({"type": "string"}, ["a", "b"], True),
        ({"type": "string"}, ["a", 1], False),
        ({"type": "integer"}, [1, 2.0], True),
        ({"type": "integer"}, [1, 2.5], False),
        ({"matches": "^x"}, ["xa", "xb"], True),
        ({"matches": "^x"}, ["xa", "b"], False),
        ({"not_empty": True}, ["a", [1], {"k": 1}], True),
        ({"not_empty": True}, ["a", ""], False),
        ({"one_of": ["a", "b"]}, ["a", "b", "a"], True),
        ({"one_of": ["a", "b"]}, ["a", "c"], False),
        ({"one_of": [1, "a"]}, [1, "a", 1.0], True),
        ({"eq": "GBP"}, ["GBP", "GBP"], True),
        ({"eq": "GBP"}, ["GBP", "EUR"], False),
        ({"eq": 1}, [1, True], False),
        ({"lt": 5}, [1, 4.9], True),
        ({"le": 5}, [5, 5.1], False),
        ({"ge": 0}, [0, -1], False),
    ],
)
def test_wildcard_checks(rule: dict[str, Any], values: list[Any], ok: bool) -> None:
    rules = one({"path": "$.v[*]", **rule})
    assert check_doc(rules, {"v": values}, last_good=None).ok is ok


def test_one_missing_violation_per_path() -> None:
    rules = parse_guards([{"path": "$.p", "gt": 0}, {"path": "$.p", "lt": 9}])
    assert failed(rules, {}) == ["missing"]


def test_each_failing_rule_reports_once() -> None:
    rules = parse_guards([{"path": "$.items[*].price", "gt": 0}, {"path": "$.c", "eq": "GBP"}])
    doc = {"items": [{"price": 0}, {"price": -1}], "c": "EUR"}
    verdict = check_doc(rules, doc, last_good=None)
    assert [(v.rule, v.path, v.value) for v in verdict.violations] == [
        ("gt", "$.items[*].price", "0"),
        ("eq", "$.c", "'EUR'"),
    ]
    assert verdict.detail() == "guard: gt at $.items[*].price"
    assert not verdict.relative_only


def test_violation_value_is_short() -> None:
    verdict = check_doc(one({"path": "$.s", "eq": "x"}), {"s": "y" * 500}, last_good=None)
    assert len(verdict.violations[0].value) <= 80
    huge = check_doc(one({"path": "$.n", "lt": 0}), {"n": 10**5000}, last_good=None)
    assert huge.violations[0].rule == "lt"
    assert len(huge.violations[0].value) <= 80


def test_labels() -> None:
    assert Violation("gt", "$.price", "0").label() == "gt at $.price"
    assert PASSED.ok and PASSED.detail() == ""


# ---------------------------------------------------------------- relative rules

SHRINK = one({"path": "$.items", "max_shrink": "50%"})
CHANGE = one({"path": "$.price", "max_change": 30})


@pytest.mark.parametrize(
    ("rules", "doc", "last_good", "violation"),
    [
        (SHRINK, {"items": [0] * 5}, {"items": [0] * 10}, None),  # exactly 50 %
        (SHRINK, {"items": [0] * 4}, {"items": [0] * 10}, "max_shrink"),
        (SHRINK, {"items": [0] * 40}, {"items": [0] * 10}, None),  # growth is fine
        (SHRINK, {"items": [0] * 4}, None, None),  # no last good copy
        (SHRINK, {"items": [0] * 4}, {}, None),  # last good lacks the path
        (SHRINK, {"items": [0] * 4}, {"items": "x"}, None),  # not comparable
        (SHRINK, {"items": [0] * 4}, {"items": []}, None),  # a % of nothing
        (SHRINK, {"items": "x"}, {"items": [0] * 10}, "max_shrink"),
        (SHRINK, {"items": 49}, {"items": 100}, "max_shrink"),  # numbers too
        (SHRINK, {"items": 50}, {"items": 100}, None),
        (SHRINK, {}, {"items": [0] * 10}, "missing"),
        (CHANGE, {"price": 130}, {"price": 100}, None),
        (CHANGE, {"price": 131}, {"price": 100}, "max_change"),
        (CHANGE, {"price": 70}, {"price": 100}, None),
        (CHANGE, {"price": 69.9}, {"price": 100}, "max_change"),
        (CHANGE, {"price": -131}, {"price": -100}, "max_change"),
        (CHANGE, {"price": 5}, {"price": 0}, None),  # a % of zero is undefined
        (CHANGE, {"price": 5}, {"price": True}, None),
        (CHANGE, {"price": 5}, {"price": math.nan}, None),
        (CHANGE, {"price": 5}, {"price": 10**400}, None),
        (CHANGE, {"price": 5}, {"price": [1, 2]}, None),  # max_change is about numbers
        (CHANGE, {"price": True}, {"price": 100}, "max_change"),
        (CHANGE, {"price": math.nan}, {"price": 100}, "max_change"),
        (CHANGE, {"price": math.inf}, {"price": 100}, "max_change"),
        (CHANGE, {"price": [1]}, {"price": 100}, "max_change"),
    ],
)
def test_relative(rules: tuple[Rule, ...], doc: Any, last_good: Any, violation: str | None) -> None:
    assert failed(rules, doc, last_good) == ([] if violation is None else [violation])


def test_relative_only() -> None:
    rules = parse_guards([{"path": "$.items", "max_shrink": "50%"}, {"path": "$.p", "gt": 0}])
    last = {"items": [0] * 10, "p": 1}
    shrunk = check_doc(rules, {"items": [0], "p": 1}, last_good=last)
    assert not shrunk.ok and shrunk.relative_only
    assert shrunk.violations[0].value == "1 (last good 10)"
    both = check_doc(rules, {"items": [0], "p": 0}, last_good=last)
    assert not both.ok and not both.relative_only
    assert not check_doc(rules, last, last_good=last).relative_only


# ---------------------------------------------------------------- bodies

RULES = parse_guards([{"path": "$.price", "gt": 0}])


@pytest.mark.parametrize(
    ("body", "max_bytes", "violation", "parsed"),
    [
        (b'{"price": 3}', None, None, True),
        (b'\xef\xbb\xbf{"price": 3}', None, None, True),  # a UTF-8 BOM is tolerated
        (b'{"price": 0}', None, "gt", True),
        (b"<html><body>Service unavailable</body></html>", None, "json", False),
        (b'{"price": 3', None, "json", False),
        (b"", None, "json", False),
        (b"\xff\xfe\x00garbage", None, "json", False),
        (b"[" * 100_000 + b"]" * 100_000, None, "json", False),
        (b'{"price": 3}', 12, None, True),
        (b'{"price": 3} ', 12, "max_object_size", False),
    ],
)
def test_check_body(body: bytes, max_bytes: int | None, violation: str | None, parsed: bool) -> None:
    verdict, doc = check_body(RULES, body, last_good=None, max_bytes=max_bytes)
    assert [v.rule for v in verdict.violations] == ([] if violation is None else [violation])
    assert (doc is not None) is parsed


def test_html_violation_shows_the_start_of_the_body() -> None:
    verdict, _ = check_body(RULES, b"<html>" + b"x" * 1000, last_good=None)
    assert verdict.violations[0].path == "$"
    assert verdict.violations[0].value.startswith("b'<html>")
    assert len(verdict.violations[0].value) <= 80


def test_body_without_rules_is_not_parsed_but_still_bounded() -> None:
    assert check_body((), b"<html>", last_good=None) == (PASSED, None)
    verdict, _ = check_body((), b"x" * 11, last_good=None, max_bytes=10)
    assert verdict.violations[0].label() == "max_object_size at $"


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"path": "$.a", "gt": 0}, ""),
        (["x"], "[0]"),
        ([{"path": "$.a", "gt": 0, "lt": 5}], "[0].lt"),
        ([{"gt": 0}], "[0]"),
        ([{"path": "$.a"}], "[0]"),
        ([{"path": 5, "gt": 0}], "[0].path"),
        ([{"path": "$..a", "gt": 0}], "[0].path"),
        ([{"path": "$.a", "gt": "x"}], "[0].gt"),
        ([{"path": "$.a", "gt": True}], "[0].gt"),
        ([{"path": "$.a", "ge": math.nan}], "[0].ge"),
        ([{"path": "$.a", "eq": [1]}], "[0].eq"),
        ([{"path": "$.a", "one_of": []}], "[0].one_of"),
        ([{"path": "$.a", "one_of": "GBP"}], "[0].one_of"),
        ([{"path": "$.a", "one_of": [{"x": 1}]}], "[0].one_of"),
        ([{"path": "$.a", "type": "float"}], "[0].type"),
        ([{"path": "$.a", "not_empty": False}], "[0].not_empty"),
        ([{"path": "$.a", "min_items": -1}], "[0].min_items"),
        ([{"path": "$.a", "max_items": 1.5}], "[0].max_items"),
        ([{"path": "$.a", "min_items": True}], "[0].min_items"),
        ([{"path": "$.a", "matches": "("}], "[0].matches"),
        ([{"path": "$.a", "matches": 5}], "[0].matches"),
        ([{"path": "$.a", "max_shrink": "150%"}], "[0].max_shrink"),
        ([{"path": "$.a", "max_shrink": -1}], "[0].max_shrink"),
        ([{"path": "$.a", "max_shrink": "half"}], "[0].max_shrink"),
        ([{"path": "$.a", "max_shrink": "50"}], "[0].max_shrink"),
        ([{"path": "$.a", "max_change": True}], "[0].max_change"),
        ([{"path": "$.a", "max_change": 10**400}], "[0].max_change"),
        ([{"path": "$.a[*]", "max_change": 10}], "[0].path"),
        ([{"required": "$.a"}], "[0].required"),
        ([{"required": []}], "[0].required"),
        ([{"required": ["$.a", "a"]}], "[0].required[1]"),
        ([{"required": ["$.a"], "path": "$.a"}], "[0].path"),
        ([{"path": "$.a", "gt": 0, "foo": 1}], "[0].foo"),
        ([{"path": "$.a", "gt": 0}, {"path": "$.b", "gt": None}], "[1].gt"),
    ],
)
def test_parse_errors(raw: object, where: str) -> None:
    with pytest.raises(GuardConfigError) as info:
        parse_guards(raw)
    assert info.value.where == where
    assert info.value.message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("raw", "percent"),
    [("50%", 50.0), (" 12.5% ", 12.5), (50, 50.0), (0, 0.0), (100, 100.0), (0.5, 0.5)],
)
def test_percentages(raw: object, percent: float) -> None:
    assert one({"path": "$.a", "max_shrink": raw})[0].arg == percent


def test_parse_none_and_describe() -> None:
    assert parse_guards(None) == ()
    rules = parse_guards(
        [
            {"path": "$.price", "gt": 0},
            {"path": "$.items", "max_shrink": "50%"},
            {"required": ["$.sku", "$.price"]},
            {"path": "$.sku", "matches": "^[A-Z]+$"},
        ]
    )
    assert [r.describe() for r in rules] == [
        "$.price gt 0",
        "$.items max_shrink 50%",
        "required $.sku, $.price",
        '$.sku matches "^[A-Z]+$"',
    ]
    assert guarded_paths(rules) == ("$.items", "$.price", "$.sku")
    assert rules == parse_guards(
        [
            {"path": "$.price", "gt": 0},
            {"path": "$.items", "max_shrink": 50},
            {"required": ["$.sku", "$.price"]},
            {"path": "$.sku", "matches": "^[A-Z]+$"},
        ]
    )


# ---------------------------------------------------------------- hysteresis

H_RULES = parse_guards([{"path": "$.items", "max_shrink": "50%"}, {"path": "$.p", "gt": 0}])
GOOD = {"items": [0] * 100, "p": 1}


def feed(h: Hysteresis, doc: Any) -> bool:
    return h.observe(check_doc(H_RULES, doc, last_good=GOOD), doc)


def shrunk(n: int, p: int = 1) -> dict[str, Any]:
    return {"items": [0] * n, "p": p}


@pytest.mark.parametrize(
    ("docs", "accepted"),
    [
        ([shrunk(40), shrunk(40), shrunk(40)], [False, False, True]),
        ([shrunk(40), shrunk(41), shrunk(40)], [False, False, True]),  # within 5 %
        ([shrunk(40), shrunk(10), shrunk(10), shrunk(10)], [False, False, False, True]),
        ([shrunk(40), shrunk(40), shrunk(40, p=0), shrunk(40), shrunk(40)], [False] * 5),
        ([shrunk(40), GOOD, shrunk(40), shrunk(40)], [False] * 4),
        ([shrunk(40), shrunk(40), GOOD, shrunk(40), shrunk(40), shrunk(40)], [False] * 5 + [True]),
        ([shrunk(40)] * 6, [False, False, True, False, False, True]),  # the streak restarts
    ],
)
def test_hysteresis(docs: list[Any], accepted: list[bool]) -> None:
    h = Hysteresis()
    assert [feed(h, d) for d in docs] == accepted


def test_hysteresis_reset_and_confirm_after() -> None:
    h = Hysteresis(confirm_after=2)
    assert not feed(h, shrunk(40))
    assert h.streak == 1
    h.reset()
    assert not feed(h, shrunk(40))
    assert feed(h, shrunk(40))
    assert Hysteresis(confirm_after=1).observe(check_doc(H_RULES, shrunk(40), last_good=GOOD), shrunk(40))
    with pytest.raises(ValueError):
        Hysteresis(confirm_after=0)


def test_hysteresis_agreement_needs_the_same_failing_rules() -> None:
    rules = parse_guards([{"path": "$.a", "max_change": 10}, {"path": "$.b", "max_change": 10}])
    last = {"a": 100, "b": 100}
    h = Hysteresis(confirm_after=2)
    first = {"a": 50, "b": 100}
    second = {"a": 50, "b": 50}
    assert not h.observe(check_doc(rules, first, last_good=last), first)
    assert not h.observe(check_doc(rules, second, last_good=last), second)
    assert h.observe(check_doc(rules, second, last_good=last), second)


def test_hysteresis_ignores_hand_made_paths() -> None:
    verdict = Verdict(False, (Violation("max_shrink", "not a path", "1"),), True)
    h = Hysteresis(confirm_after=2)
    assert not h.observe(verdict, [1])
    assert h.observe(verdict, [1])


# ---------------------------------------------------------------- never raises

FIXED_RULES = parse_guards(
    [
        {"path": "$.price", "gt": 0},
        {"path": "$.price", "max_change": "30%"},
        {"path": "$.items", "max_shrink": "50%"},
        {"path": "$.items[*].price", "le": 1000},
        {"path": "$.items[*].sku", "matches": "^[A-Z]"},
        {"path": "$.items[-1]", "type": "object"},
        {"path": "$.currency", "one_of": ["GBP", 1, True, None]},
        {"path": "$.currency", "eq": "GBP"},
        {"path": "$.*", "not_empty": True},
        {"path": "$.items", "min_items": 1},
        {"path": "$.items", "max_items": 3},
        {"path": "$['items'][0]", "type": "integer"},
        {"required": ["$.sku", "$.items[*].sku"]},
    ]
)
KEYS = st.sampled_from(["price", "items", "sku", "currency"]) | st.text(max_size=4)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**5000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)

BODY_JSON = st.recursive(  # no huge ints: json.dumps refuses to print them
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(doc=JSON, last_good=st.none() | JSON)
def test_check_doc_never_raises(doc: Any, last_good: Any) -> None:
    verdict = check_doc(FIXED_RULES, doc, last_good=last_good)
    assert verdict.ok is (not verdict.violations)
    assert not (verdict.ok and verdict.relative_only)
    assert all(len(v.value) <= 80 for v in verdict.violations)
    Hysteresis().observe(verdict, doc)


@settings(max_examples=200, deadline=None)
@given(doc=JSON)
def test_a_document_never_drifts_from_itself(doc: Any) -> None:
    verdict = check_doc(FIXED_RULES, doc, last_good=doc)
    assert not any(v.relative for v in verdict.violations)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=64) | BODY_JSON.map(lambda d: json.dumps(d).encode()))
def test_check_body_never_raises(body: bytes) -> None:
    verdict, doc = check_body(FIXED_RULES, body, last_good=None, max_bytes=48)
    if doc is None:
        assert not verdict.ok

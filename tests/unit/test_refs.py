"""Dataset refs: ``NAME``, ``NAME@3``, ``NAME@latest``, ``NAME@TAG``, ``NAME@HASH``."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcycle.core.errors import RefError, UsageError
from modelcycle.data.refs import Ref, check_name, check_tag, parse_ref

_FIRST = string.ascii_letters + string.digits
_REST = _FIRST + "._-"

names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_FIRST),
    st.text(alphabet=_REST, max_size=40),
)
tags = names.filter(lambda t: not t.isdigit() and t != "latest")
versions = st.integers(min_value=1, max_value=10**9)


@settings(max_examples=200)
@given(names)
def test_a_bare_name_parses_to_the_latest_version(name: str) -> None:
    ref = parse_ref(name)
    assert ref == Ref(name)
    assert ref.selector is None
    assert ref.number is None
    assert str(ref) == name


@settings(max_examples=200)
@given(names, st.one_of(tags, versions.map(str)))
def test_name_and_selector_round_trip_through_str(name: str, selector: str) -> None:
    ref = parse_ref(f"{name}@{selector}")
    assert ref.name == name
    assert ref.selector == selector
    assert str(ref) == f"{name}@{selector}"
    assert parse_ref(str(ref)) == ref


@given(names, versions, st.integers(min_value=0, max_value=5))
def test_a_number_selects_that_version(name: str, number: int, zeros: int) -> None:
    ref = parse_ref(f"{name}@{'0' * zeros}{number}")
    assert ref.number == number
    assert ref.selector == str(number)  # leading zeros are dropped
    assert str(ref) == f"{name}@{number}"


@given(tags)
def test_a_tag_selector_has_no_number(tag: str) -> None:
    ref = parse_ref(f"ds@{tag}")
    assert ref.selector == tag
    assert ref.number is None


@given(names)
def test_latest_means_no_selector(name: str) -> None:
    assert parse_ref(f"{name}@latest") == Ref(name, None)
    assert str(parse_ref(f"{name}@latest")) == name


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_ref("  iris@2 \n") == Ref("iris", "2")


def test_a_hash_prefix_is_kept_as_the_selector() -> None:
    ref = parse_ref("iris@3fa9c0de")
    assert ref.selector == "3fa9c0de"
    assert ref.number is None


@pytest.mark.parametrize(
    ("text", "in_message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("@", "not a valid dataset name"),
        ("@3", "not a valid dataset name"),
        ("iris@", "nothing after '@'"),
        ("iris@0", "numbered from 1"),
        ("iris@000", "numbered from 1"),
        ("iris@a@b", "neither a version number"),
        ("iris@-tag", "neither a version number"),
        ("iris@ta g", "neither a version number"),
        ("-iris", "not a valid dataset name"),
        (".iris@1", "not a valid dataset name"),
        ("ir is", "not a valid dataset name"),
        ("iris/1", "not a valid dataset name"),
        ("a" * 201, "not a valid dataset name"),
    ],
)
def test_bad_refs_raise_ref_error_with_a_hint(text: str, in_message: str) -> None:
    with pytest.raises(RefError) as info:
        parse_ref(text)
    assert in_message in info.value.message
    assert info.value.hint
    assert isinstance(info.value, UsageError)


def test_version_zero_hint_suggests_version_one() -> None:
    with pytest.raises(RefError) as info:
        parse_ref("iris@0")
    assert info.value.hint == "try iris@1"


def test_the_longest_allowed_name_is_200_characters() -> None:
    assert parse_ref("a" * 200).name == "a" * 200


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(max_size=30),
        st.builds(lambda n, s: f"{n}@{s}", names, st.text(max_size=8)),
    )
)
def test_any_text_gives_a_ref_or_a_ref_error(text: str) -> None:
    try:
        ref = parse_ref(text)
    except RefError as e:
        assert e.hint
    else:
        assert parse_ref(str(ref)) == ref


def test_a_non_ascii_digit_selector_raises_ref_error() -> None:
    # "²".isdigit() is True but int("²") fails: the parser must not leak a ValueError.
    with pytest.raises(RefError):
        parse_ref("iris@²")


@pytest.mark.parametrize("text", ["iris\n@1", "iris\n@latest", "iris\n@v1"])
def test_a_name_with_a_newline_is_rejected(text: str) -> None:
    # Only the outer whitespace is stripped; a newline inside the ref is not part of a name.
    with pytest.raises(RefError):
        parse_ref(text)


def test_check_name_rejects_a_trailing_newline() -> None:
    with pytest.raises(RefError):
        check_name("iris\n")


@given(names)
def test_check_name_accepts_valid_names(name: str) -> None:
    assert check_name(name) == name


def test_check_name_says_what_was_checked() -> None:
    with pytest.raises(RefError, match="not a valid model name"):
        check_name("bad name", "model name")


@given(tags)
def test_check_tag_accepts_valid_tags(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize(
    "tag", ["", "latest", "1", "42", "007", "-x", ".x", "a b", "a@b", "a/b", "x" * 201, "v1\n"]
)
def test_check_tag_rejects(tag: str) -> None:
    with pytest.raises(RefError) as info:
        check_tag(tag)
    assert "cannot be a tag" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("tag", ["v1", "Latest", "latest2", "1a", "prod_2024-01.rc1"])
def test_check_tag_accepts(tag: str) -> None:
    assert check_tag(tag) == tag

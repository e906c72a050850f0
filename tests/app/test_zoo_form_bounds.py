"""The zoo form refuses oversized and alias-bomb sweep files and bad names without echoing them (issue 14.3)."""

from __future__ import annotations

import pytest
from app_conftest import current_services, shown

from engine.bounds import MAX_SWEEP_FILE_BYTES

LAUGHS = "\n".join([
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    *(f"{b}: &{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdefg", "bcdefgh")),
    "name: *h",
]) + "\n"


def _preview(at, name: str, data: bytes):
    at.file_uploader(key="f_upload").upload(name, data, "application/yaml")
    at.button(key="FormSubmitter:create_zoo-Preview").click().run()
    assert not at.exception, at.exception
    return [shown(e.value) for e in at.error]


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("laughs.yaml", LAUGHS.encode(), r"^laughs\.yaml: line 2 uses the YAML alias \*a; sweep files may not use aliases"),
    ("big.toml", b"#" * (MAX_SWEEP_FILE_BYTES + 1), r"^'big\.toml' is 1,048,577 bytes; a sweep file may hold at most "
                                                      r"1,048,576"),
])
def test_a_viewers_preview_of_a_hostile_sweep_file_is_refused_in_a_short_message(app, empty_store, name, data,
                                                                                 expected):
    import re

    errors = _preview(app(empty_store), name, data)
    assert len(errors) == 1 and re.search(expected, errors[0]), errors
    assert len(errors[0]) < 300
    assert current_services().store.list_zoos().empty


def test_a_long_control_character_name_is_refused_next_to_its_field(app, empty_store):
    at = app(empty_store)
    at.text_input(key="f_name").input("evil\x1b[2J" + "x" * 5000)
    at.button(key="FormSubmitter:create_zoo-Preview").click().run()
    assert not at.exception, at.exception
    (error,) = [shown(e.value) for e in at.error]
    assert error.startswith("zoo name has 5008 characters; at most 100 are allowed") and len(error) < 250
    assert current_services().store.list_zoos().empty

"""What reaches a person: URLs never show credentials, text never carries live control codes."""

from __future__ import annotations

import pytest

from taskstore_redis._core import shown


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:s3cret@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("redis://alice:s3cret@localhost/0", "redis://alice:***@localhost/0"),
        ("redis://s3cret@localhost/0", "redis://***@localhost/0"),
        ("redis://127.0.0.1:1/0?password=s3cret", "redis://127.0.0.1:1/0?password=***"),
        (
            "rediss://h/0?username=bob&Password=s3cret&ssl_cert_reqs=none",
            "rediss://h/0?username=***&Password=***&ssl_cert_reqs=none",
        ),
        ("unix:///tmp/r.sock?db=2&password=s3cret", "unix:///tmp/r.sock?db=2&password=***"),
    ],
)
def test_a_url_is_shown_without_its_credentials(raw: str, expected: str) -> None:
    assert shown.url(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("redis://u:s3cret@[::1:1/0", "redis://<unparsed>"),
        ("redis://u:s3cret@host:notaport/0", "redis://<unparsed>"),
        ("u:s3cret@[::1", "<unparsed>"),
        ("redis://h/0?password", "redis://<unparsed>"),
    ],
)
def test_a_url_that_cannot_be_parsed_is_shown_as_its_scheme_at_most(
    raw: str, expected: str
) -> None:
    assert shown.url(raw) == expected
    assert "s3cret" not in shown.url(raw)


def test_a_url_with_control_characters_is_shown_escaped() -> None:
    assert shown.url("redis://host/0\x1b]0;x\x07") == "redis://host/0\\x1b]0;x\\x07"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain text, ünïcode, 中文", "plain text, ünïcode, 中文"),
        ("A\x1b[31mRED\x1b[2J", "A\\x1b[31mRED\\x1b[2J"),
        ("two\nlines\r\tand a tab", "two\\nlines\\r\\tand a tab"),
        ("nul\x00 del\x7f c1\x9b", "nul\\x00 del\\x7f c1\\x9b"),
        ("bidi \u202eevil", "bidi \\u202eevil"),
        ("no\u00a0break", "no\u00a0break"),
    ],
)
def test_control_characters_are_shown_never_obeyed(raw: str, expected: str) -> None:
    assert shown.printable(raw) == expected


def test_the_credentials_of_a_url_are_found_without_parsing_it() -> None:
    assert shown.secrets("redis://u:s3cret@[::1:1/0") == ["u:s3cret", "s3cret"]
    assert shown.secrets("redis://h/0?db=1&password=p%40ss") == ["p%40ss", "p@ss"]
    assert shown.secrets("redis://h/0") == []
    text = "refused u:s3cret and p@ss\x1b[2J"
    assert shown.scrub(text, ["redis://u:s3cret@h/0?password=p%40ss", None]) == (
        "refused *** and ***\\x1b[2J"
    )

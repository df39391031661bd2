"""Log lines never carry a token, and the words around one survive."""

from __future__ import annotations

import io
import json

from daemon.core import log


def test_authorization_values_and_known_tokens_are_redacted_words_are_not() -> None:
    assert log.redact_text("Authorization: OAuth MLY|4242|abcdef0123456789") == (
        "Authorization: OAuth ***"
    )
    assert log.redact_text("Bearer abc.def-ghi_jkl012") == "Bearer ***"
    # The server's own message about a bad token stays readable.
    assert log.redact_text("Invalid OAuth access token.") == "Invalid OAuth access token."
    log.register_secret("s3cr3t-value")
    assert log.redact_text("sent s3cr3t-value twice: s3cr3t-value") == "sent *** twice: ***"


def test_a_json_log_line_has_no_secret_in_any_field() -> None:
    out = io.StringIO()
    log.setup("info", "json", stream=out)
    log.register_secret("MLY|777|0123456789abcdef")
    log.get("t").info(
        "upload_retry",
        token="MLY|777|0123456789abcdef",
        reason="HTTP 401 for OAuth MLY|777|0123456789abcdef",
        headers={"Authorization": "OAuth MLY|777|0123456789abcdef"},
        file="G0000001.JPG",
    )
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert "0123456789abcdef" not in out.getvalue()
    assert line["file"] == "G0000001.JPG" and line["event"] == "upload_retry"
    assert line["token"] == "***" and line["headers"]["Authorization"] == "***"

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


def test_a_library_log_record_comes_out_redacted_in_the_daemons_json_format() -> None:
    import logging

    out = io.StringIO()
    log.setup("info", "json", stream=out)
    log.register_secret("MLY|888|fedcba9876543210")
    logging.getLogger("aiohttp.client").warning("retry with %s", "MLY|888|fedcba9876543210")
    try:
        raise RuntimeError("refused MLY|888|fedcba9876543210")
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    logging.getLogger("aiohttp.access").info("GET /graph/me 200")  # below the libraries' floor
    lines = [json.loads(line) for line in out.getvalue().strip().splitlines()]
    assert "fedcba9876543210" not in out.getvalue()
    assert len(lines) == 2
    assert lines[0]["event"] == "retry with ***" and lines[0]["level"] == "warning"
    assert lines[0]["logger"] == "aiohttp.client" and "timestamp" in lines[0]
    assert lines[1]["level"] == "error" and "RuntimeError: refused ***" in lines[1]["exception"]


def test_a_library_log_record_on_a_console_reads_like_the_daemons_own() -> None:
    import logging

    out = io.StringIO()
    log.setup("info", "console", stream=out)
    log.register_secret("tok-console-0123456789")
    log.get().warning("own_line", reason="tok-console-0123456789")
    logging.getLogger("watchdog.observers").warning("lost tok-console-0123456789")
    own, theirs = out.getvalue().strip().splitlines()
    assert "tok-console-0123456789" not in out.getvalue()
    assert "[warning  ]" in own and "[warning  ]" in theirs
    assert "lost ***" in theirs and "watchdog.observers" in theirs

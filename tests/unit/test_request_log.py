"""The request log: at INFO a summary line per period and no line per request; at DEBUG a line per request."""
from shared.request_log import RequestLog
from tests.helpers import wait_until


def fields_never_built():
    raise AssertionError("a DEBUG line was built at INFO")


def test_at_info_each_period_with_requests_has_one_summary_line_and_no_request_has_its_own(capsys):
    log = RequestLog("summary-test", "INFO", 0.5)
    for status, ms in ((200, 3.0), (200, 9.4), (404, 1.0), (503, 2.0)):
        log.request(fields_never_built, status, ms)
    said = []

    def summarized():
        said.append(capsys.readouterr().err)
        return "requests" in "".join(said)

    wait_until(summarized, 5, "no summary line came")
    text = "".join(said)
    assert "server=summary-test" in text and "4 requests (2xx 2, 4xx 1, 5xx 1), slowest 9 ms" in text
    assert text.count("\n") == 1, text
    # What the summary thread does each period: for a period without requests, it says nothing.
    log.flush()
    assert capsys.readouterr().err == "", "a summary for a period without requests"


def test_at_debug_every_request_has_its_line(capsys):
    log = RequestLog("debug-test", "DEBUG", 3600)
    log.request(lambda: (("server", "debug-test"), ("op", "deposit"), ("status", 200)), 200, 1.0)
    assert capsys.readouterr().err == "server=debug-test op=deposit status=200\n"

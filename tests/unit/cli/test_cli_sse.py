"""Server-Sent Events framing as /v1/events sends it."""
from cli.sse import Event, Parser


def feed(text: str) -> list[Event]:
    p = Parser()
    return [e for line in text.split("\n") if (e := p.feed(line)) is not None]


def test_frames_comments_and_ids() -> None:
    got = feed(": subscribed\n\n"
               "id: 7\nevent: instance\ndata: {\"app\": \"web\", \"state\": \"RUNNING\"}\n\n"
               ": keepalive\n\n"
               "event: endpoints\ndata: {\"app\": \"web\",\ndata: \"endpoints\": []}\n\n"
               "id: 9\nevent: reset\ndata: {}\n\n")
    assert got == [Event("instance", {"app": "web", "state": "RUNNING"}, "7"),
                   Event("endpoints", {"app": "web", "endpoints": []}, "7"),  # the last id stays
                   Event("reset", {}, "9")]


def test_data_that_is_not_json_stays_text_and_unknown_fields_are_ignored() -> None:
    assert feed("retry: 100\nfoo: bar\ndata:plain\n\n") == [Event("message", "plain", None)]


def test_a_frame_without_data_is_no_message() -> None:
    assert feed("id: 3\n\nevent: x\n\n") == [Event("x", None, "3")]


def test_one_line_per_event_kind() -> None:
    from cli.events import summary
    at = "2026-12-01T15:00:00Z"
    assert summary(Event("instance", {"app": "web", "instance": "web-1", "host": "h1", "state": "FAILED",
                                      "health": None, "ip": "", "reason": "exited 1", "at": at})) == \
        "web web-1 on h1 FAILED - -: exited 1"
    assert summary(Event("deployment", {"app": "web", "deployment": 7, "version": 2, "state": "running",
                                        "progress": {"target": 3, "new_running": 1}, "at": at})) == "web #7 v2 running 1/3"
    assert summary(Event("deployment", {"app": "web", "deployment": 7, "version": 2, "state": "succeeded",
                                        "target": 3, "new_running": 3, "reason": ""})) == "web #7 v2 succeeded 3/3"
    assert summary(Event("host", {"host": "h2", "state": "DOWN", "draining": True, "cordoned": False})) == \
        "h2 DOWN draining"
    assert summary(Event("endpoints", {"app": "web", "endpoints": [{}, {}], "seq": 4})) == "web 2 in service (seq 4)"
    assert summary(Event("reset", {})).startswith("reset: events were missed")


def test_event_times() -> None:
    from cli.events import at_text
    assert at_text(Event("host", {"at": "2026-12-01T15:00:00Z"})) == "2026-12-01T15:00:00Z"
    assert at_text(Event("host", {"at": 1764601200.5})) == "2025-12-01T15:00:00.500+00:00"

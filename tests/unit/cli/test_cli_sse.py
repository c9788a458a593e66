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

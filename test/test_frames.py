"""FrameParser without sockets: RFC 6455's rules for a server, fed plain bytes in chunks of any size."""

import struct
import tracemalloc

import pytest
from wsraw import frame_bytes

from igor.frames import Close, FrameError, FrameParser, Ping, Pong, TextMessage

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
MiB = 1 << 20


def feed_bytewise(parser, data):
    events = []
    for index in range(len(data)):
        events += parser.feed(data[index:index + 1])
    return events


def faults(events):
    """The events, with a FrameError shown as ("FrameError", close code) so lists compare."""
    return [("FrameError", e.close_code) if isinstance(e, FrameError) else e for e in events]


CONVERSATION = b"".join([
    frame_bytes(TEXT, b'{"streamId": 1}'),
    frame_bytes(TEXT, "h\u00e9".encode(), fin=False),
    frame_bytes(PING, b"between"),
    frame_bytes(CONT, "llo \u20ac".encode(), fin=False),
    frame_bytes(PONG, b""),
    frame_bytes(CONT, b"!", fin=True),
    frame_bytes(TEXT, b"x" * 1000),                   # a 16-bit length
    frame_bytes(TEXT, b"y" * 70_000),                 # a 64-bit one, across many chunks
    frame_bytes(CLOSE, struct.pack("!H", 1000) + b"bye"),
])
EXPECTED = [
    TextMessage('{"streamId": 1}'),
    Ping(b"between"),
    Pong(b""),
    TextMessage("h\u00e9llo \u20ac!"),
    TextMessage("x" * 1000),
    TextMessage("y" * 70_000),
    Close(1000, "bye"),
]


def test_bytes_at_once_byte_by_byte_and_in_odd_chunks_give_the_same_events():
    assert FrameParser(1 << 20).feed(CONVERSATION) == EXPECTED
    assert feed_bytewise(FrameParser(1 << 20), CONVERSATION) == EXPECTED
    parser, events = FrameParser(1 << 20), []
    for start in range(0, len(CONVERSATION), 4093):
        events += parser.feed(memoryview(CONVERSATION)[start:start + 4093])
    assert events == EXPECTED
    assert parser.closed


def test_control_frames_between_fragments_come_out_at_once():
    parser = FrameParser(1024)
    assert parser.feed(frame_bytes(TEXT, b"ab", fin=False)) == []
    assert parser.feed(frame_bytes(PING, b"1")) == [Ping(b"1")]
    assert parser.feed(frame_bytes(PONG, b"2")) == [Pong(b"2")]
    assert parser.feed(frame_bytes(CONT, b"cd")) == [TextMessage("abcd")]


def test_a_close_between_fragments_ends_the_parse():
    parser = FrameParser(1024)
    data = frame_bytes(TEXT, b"ab", fin=False) + frame_bytes(CLOSE, b"") + frame_bytes(CONT, b"cd")
    assert parser.feed(data) == [Close(None, "")]
    assert parser.closed and parser.feed(frame_bytes(TEXT, b"later")) == []


@pytest.mark.parametrize("cut", range(1, len("a\u00e9\u20ac\U0001f600".encode())))
def test_utf8_split_across_fragments_at_any_byte(cut):
    encoded = "a\u00e9\u20ac\U0001f600".encode()
    data = frame_bytes(TEXT, encoded[:cut], fin=False) + frame_bytes(CONT, encoded[cut:])
    assert FrameParser(1024).feed(data) == [TextMessage("a\u00e9\u20ac\U0001f600")]
    assert feed_bytewise(FrameParser(1024), data) == [TextMessage("a\u00e9\u20ac\U0001f600")]


def test_invalid_utf8_is_refused_at_its_fragment_not_at_the_end_of_the_message():
    parser = FrameParser(1024)
    assert faults(parser.feed(frame_bytes(TEXT, b"ok \xff", fin=False))) == [("FrameError", 1007)]


@pytest.mark.parametrize("data", [
    frame_bytes(TEXT, b"\xe2\x82"),                                                  # cut short in one frame
    frame_bytes(TEXT, b"ok", fin=False) + frame_bytes(CONT, b"\xe2\x82"),            # cut short at the end
    frame_bytes(TEXT, b"\xed\xa0\x80"),                                              # a surrogate
])
def test_invalid_utf8_is_1007(data):
    assert faults(FrameParser(1024).feed(data)) == [("FrameError", 1007)]


def test_the_size_limit_counts_fragments():
    parser = FrameParser(1 << 20, max_fragments=4)
    # Four fragments make a message, and the count starts again with the next one.
    four = frame_bytes(TEXT, b"{", fin=False) + frame_bytes(CONT, b"", fin=False) * 2 + frame_bytes(CONT, b"}")
    assert parser.feed(four + four) == [TextMessage("{}"), TextMessage("{}")]
    parser.feed(frame_bytes(TEXT, b"{", fin=False) + frame_bytes(CONT, b"", fin=False) * 3)
    # The fifth is refused from its header alone.
    assert faults(parser.feed(frame_bytes(CONT, b"", fin=False)[:2])) == [("FrameError", 1009)]


def test_the_size_limit_counts_bytes_across_fragments_from_the_header():
    parser = FrameParser(10)
    assert parser.feed(frame_bytes(TEXT, b"123456", fin=False)) == []
    # 6 + 5 > 10: refused on the two header bytes, before any of the payload.
    assert faults(parser.feed(frame_bytes(CONT, b"12345")[:2])) == [("FrameError", 1009)]
    assert FrameParser(10).feed(frame_bytes(TEXT, b"123456", fin=False) + frame_bytes(CONT, b"1234")) == [
        TextMessage("1234561234")]


def test_a_declared_64_mib_frame_holds_only_the_bytes_that_arrived():
    parser = FrameParser(128 * MiB)
    header = frame_bytes(TEXT, b"", length=64 * MiB, key=bytes(4))  # a zero mask: the bytes fed are the text
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        assert parser.feed(header + b"x") == []
        after_header = tracemalloc.get_traced_memory()[0] - base
        assert parser.wanted == 64 * MiB - 1
        parser.feed(b"y" * MiB)
        after_a_mib = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert after_header < 64 * 1024
    assert MiB <= after_a_mib < 3 * MiB  # grows with the data: the text decoded so far
    assert parser.wanted == 63 * MiB - 1


def test_a_frame_error_comes_last_after_the_events_before_it():
    parser = FrameParser(1024)
    data = (frame_bytes(TEXT, b"first") + frame_bytes(PING, b"owed a pong")
            + frame_bytes(TEXT, b"unmasked", mask=False) + frame_bytes(TEXT, b"never seen"))
    assert faults(parser.feed(data)) == [TextMessage("first"), Ping(b"owed a pong"), ("FrameError", 1002)]
    assert parser.closed and parser.feed(frame_bytes(TEXT, b"more")) == []


@pytest.mark.parametrize("data, code", [
    (frame_bytes(TEXT, b"x", mask=False)[:2], 1002),                   # unmasked: known from two bytes
    (frame_bytes(TEXT, b"x", rsv=2)[:2], 1002),                        # a reserved bit
    (frame_bytes(0x3, b"")[:2], 1002),                                 # an unknown opcode
    (frame_bytes(CONT, b"x")[:2], 1002),                               # nothing to continue
    (frame_bytes(PING, b"x", fin=False)[:2], 1002),                    # a fragmented control frame
    (frame_bytes(TEXT, b"a", fin=False) + frame_bytes(TEXT, b"b")[:2], 1002),  # a new message inside one
    (bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 63), 1002),          # a 64-bit length with its top bit set
    (frame_bytes(BINARY, b"\x00\x01"), 1003),                          # binary: refused once read
    (frame_bytes(CLOSE, b"\x03"), 1002),                               # a one-byte close payload
    (frame_bytes(CLOSE, struct.pack("!H", 1005)), 1002),               # a reserved close code
    (frame_bytes(CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),     # a close reason that is not UTF-8
])
def test_faults_are_found_as_soon_as_their_bytes_are_in(data, code):
    assert faults(FrameParser(1024).feed(data)) == [("FrameError", code)]


@pytest.mark.parametrize("length", [0, 5, 64 * 1024, 64 * 1024 + 3, 300_001])
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_unmasked_copies_and_unmasks_at_any_length_and_alignment(length, offset):
    from igor.frames import unmasked

    source = bytes(range(256)) * (length // 256 + 2)
    chunk = memoryview(source)[offset:offset + length]
    mask = b"\x12\x34\x56\x78"
    assert bytes(unmasked(chunk, mask)) == bytes(b ^ mask[i % 4] for i, b in enumerate(chunk))


def test_a_binary_message_under_protocol_3_is_its_bytes_in_parts():
    from igor.frames import BinaryMessage

    parser = FrameParser(max_size=1 << 20, binary=True)
    payload = bytes(range(256)) * 300
    first = frame_bytes(0x2, payload[:1000], fin=False)
    events = parser.feed(first) + parser.feed(frame_bytes(0x0, payload[1000:]))
    assert len(events) == 1 and isinstance(events[0], BinaryMessage)
    assert events[0].payload[0:len(payload)] == payload and len(events[0].payload) == len(payload)
    assert events[0].payload[999:1003] == payload[999:1003]  # a slice across the two parts

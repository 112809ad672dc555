"""The client's message builders are the inverse of the server's parser."""

import json

from igor.handshake import SUBPROTOCOL_V3
from igor.protocol import (
    CLIENT_SUBPROTOCOL,
    Call,
    Cancel,
    EndInput,
    Input,
    ProcessInput,
    Reply,
    client_call_message,
    client_cancel_message,
    client_end_message,
    client_input_message,
    client_introduce_data,
    client_process_input_message,
    client_reply_error_message,
    client_reply_message,
    parse_message,
)


def parsed(message):
    return parse_message(json.dumps(message))


def test_each_builder_parses_back_to_its_message():
    assert parsed(client_call_message(7, "jobs.run", {"steps": 3})) == Call(7, "jobs.run", {"steps": 3})
    assert parsed(client_call_message("s", "ping")) == Call("s", "ping", None)
    assert parsed(client_cancel_message(7)) == Cancel(7)
    assert parsed(client_input_message(7, [1, 2])) == Input(7, [1, 2])
    assert parsed(client_input_message(7, None)) == Input(7, None)  # null is input too, not "no data"
    assert parsed(client_end_message(7)) == EndInput(7)
    assert parsed(client_process_input_message("clock", "go")) == ProcessInput("clock", "go")
    assert parsed(client_reply_message(3, {"ok": True})) == Reply(3, {"ok": True})
    assert parsed(client_reply_error_message(3, "no", 404, "UnknownAction")) == Reply(3, None, "no", 404,
                                                                                      "UnknownAction")
    assert parsed(client_reply_error_message(3, "boom")) == Reply(3, None, "boom", 500, "Error")


def test_the_client_asks_for_the_protocol_the_server_speaks():
    assert CLIENT_SUBPROTOCOL == SUBPROTOCOL_V3


def test_an_introduction_carries_the_secret_only_when_there_is_one():
    assert parsed(client_call_message(1, "introduce_self", client_introduce_data("w", "s3cret"))) == Call(
        1, "introduce_self", {"client_id": "w", "resume": "s3cret"})
    assert client_introduce_data(5) == {"client_id": 5}

"""The typed configuration: each mistake of issue 9 is a ConfigError that names its key, at construction."""

import math

import pytest

from igor import Config, ConfigError, IgorServer


@pytest.mark.parametrize("config, key", [
    # A str is iterable: as a tuple of its characters it would hold "*" and let every origin in.
    ({"allowed_origins": "http://localhost:*"}, "allowed_origins"),
    # ... and "*" as allowed_hosts would switch the DNS-rebinding guard off.
    ({"allowed_hosts": "*"}, "allowed_hosts"),
    ({"allowed_hosts": "localhost"}, "allowed_hosts"),
    ({"allowed_origins": ["http://localhost:3000", 3000]}, "allowed_origins"),
    ({"allowed_origins": [""]}, "allowed_origins"),
    # A negative interval made an idle server spin; a string one killed the heartbeat thread.
    ({"ping_interval": -1}, "ping_interval"),
    ({"ping_interval": 0}, "ping_interval"),
    ({"ping_interval": "20"}, "ping_interval"),
    ({"ping_interval": math.nan}, "ping_interval"),
    ({"ping_interval": math.inf}, "ping_interval"),
    ({"ping_interval": True}, "ping_interval"),
    ({"ping_timeout": math.nan}, "ping_timeout"),
    ({"send_timeout": -0.5}, "send_timeout"),
    ({"handshake_timeout": "10"}, "handshake_timeout"),
    ({"max_streams": 0}, "max_streams"),
    ({"max_streams": 2.5}, "max_streams"),
    ({"send_queue_bytes": -1}, "send_queue_bytes"),
    ({"max_message_size": "64MB"}, "max_message_size"),
])
def test_a_wrong_value_is_a_config_error_naming_its_key(config, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        IgorServer({}, config)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        Config(**config)  # the keyword form checks the same


@pytest.mark.parametrize("key, nearest", [
    ("ping_intervall", "ping_interval"),
    ("allowed_origin", "allowed_origins"),
    ("max_stream", "max_streams"),
    ("sendqueue_bytes", "send_queue_bytes"),
])
def test_an_unknown_key_suggests_the_nearest(key, nearest):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'; did you mean '{nearest}'"):
        IgorServer({}, {key: 1})
    with pytest.raises(ConfigError, match=f"did you mean '{nearest}'"):
        IgorServer({}, **{key: 1})


def test_an_unknown_key_with_no_near_one_lists_the_known_keys():
    with pytest.raises(ConfigError, match="known keys: host, port"):
        IgorServer({}, {"zzzz": 1})


def test_right_values_are_kept_and_lists_become_tuples():
    config = Config.from_mapping({"allowed_origins": ["http://localhost:*"], "allowed_hosts": ["*"],
                                  "ping_interval": None, "send_timeout": 1}, port=0)
    assert config.allowed_origins == ("http://localhost:*",) and config.allowed_hosts == ("*",)
    assert config.ping_interval is None and config.send_timeout == 1 and config.port == 0
    with pytest.raises(AttributeError):
        config.port = 1  # frozen


def test_keywords_win_over_the_dict():
    assert IgorServer({}, {"port": 1234, "max_streams": 3}, max_streams=5).config.max_streams == 5

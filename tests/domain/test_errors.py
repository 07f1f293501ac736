"""Every tidings error survives pickling whole: its type, message and attributes.

Celery pickles a task's exception for its result backend and logs (and retries carry it);
``multiprocessing`` pickles what a child raises. An error that fails to pickle turns into its
nearest picklable base there: a ``BrokerUnavailable`` would be reported as a ``BrokerError``.
"""

from __future__ import annotations

import pickle

import pytest

from tidings.domain import errors

SAMPLES: list[errors.TidingsError] = [
    errors.TidingsError("something"),
    errors.InvalidChannel("user..1", "empty segment"),
    errors.InvalidPattern("user.**", "double wildcard"),
    errors.InvalidMessage("event is empty"),
    errors.MessageTooLarge("user.1", 70_000, 65_536),
    errors.InvalidPosition("zz"),
    errors.PositionExpired("abc:1", "abc:5"),
    errors.InvalidTopicName("x" * 300),
    errors.InvalidAccessRule("user.*:"),
    errors.ConfigurationError("KAFKA_TIMEOUT must be positive"),
    errors.UnknownBroker("redis", ["memory", "kafka", "gateway"]),
    errors.BrokerError("lost"),
    errors.BrokerUnavailable(["127.0.0.1:9092", "127.0.0.1:9093"], "timed out"),
    errors.BrokerOverloaded("queue full"),
    errors.ChannelHasNoTopic("chat.1", "realtime_chat_1"),
    errors.InvalidToken("bad signature"),
    errors.TokenExpired("expired"),
    errors.TokenSecretMissing(),
    errors.SecretTooShort("REALTIME_SECRET", 8, 32),
    errors.InvalidOrigin("ftp://x", "scheme must be http or https"),
    errors.InvalidProxy("10.0.0.1/8", "host bits set"),
]


def _all_errors(cls: type[errors.TidingsError]) -> set[type[errors.TidingsError]]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _all_errors(sub)
    return found


def test_every_error_class_of_the_domain_has_a_sample() -> None:
    declared = {
        cls for cls in _all_errors(errors.TidingsError) if cls.__module__ == errors.__name__
    }
    assert declared == {type(sample) for sample in SAMPLES}


@pytest.mark.parametrize("error", SAMPLES, ids=lambda error: type(error).__name__)
def test_an_error_pickles_with_its_type_message_and_attributes(
    error: errors.TidingsError,
) -> None:
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)

"""The pure core of tidings: channels, messages, topics, presence, routing, access and protocol.

Nothing here does I/O or imports a framework; every rule is a plain function or value object that
property tests can state laws about.
"""

from .access import AccessPolicy, AccessRule, Decision, Identity, Verdict
from .channel import Channel, ChannelKind, ChannelPattern
from .message import JSON, Message, MessageType
from .position import Position
from .presence import ConnectionRef, Member, Presence, PresenceChange
from .routing import SubscriptionTable
from .topics import PerChannelTopics, SharedTopics, TopicStrategy, topic_strategy

__all__ = [
    "JSON",
    "AccessPolicy",
    "AccessRule",
    "Channel",
    "ChannelKind",
    "ChannelPattern",
    "ConnectionRef",
    "Decision",
    "Identity",
    "Member",
    "Message",
    "MessageType",
    "PerChannelTopics",
    "Position",
    "Presence",
    "PresenceChange",
    "SharedTopics",
    "SubscriptionTable",
    "TopicStrategy",
    "Verdict",
    "topic_strategy",
]

"""In-process adapters: the embedded broker and an in-memory transport."""

from .broker import MemoryBroker, MemoryFeed
from .transport import MemoryClient, MemoryTransport

__all__ = ["MemoryBroker", "MemoryClient", "MemoryFeed", "MemoryTransport"]

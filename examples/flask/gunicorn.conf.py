"""gunicorn's settings for the storefront, read from the working directory by default:

    gunicorn 'storefront:create_app()'

``preload_app``: the app is imported once, in the master, and the workers are forked from it
(less memory, a broken app fails before any worker starts). Whatever tidings opened in the
master (the publisher ``create_app`` builds, the connection ``when_ready``'s broadcast used) is
re-made by tidings in each worker after the fork: nothing to do here for it.
"""

from __future__ import annotations

import os
from typing import Any

from tidings import BrokerError, broadcast

workers = 2
preload_app = True


def when_ready(server: Any) -> None:
    """Tell the staff a new release is serving (runs in the master, before the fork)."""
    try:
        broadcast("admin.orders", "storefront.started", {"pid": os.getpid()})
    except BrokerError as exc:
        server.log.warning("storefront.started was not broadcast: %s", exc)

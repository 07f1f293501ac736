"""The storefront: a Flask app factory, the way Flask's own tutorial builds one.

    flask --app storefront init-db
    gunicorn --preload -w 2 'storefront:create_app()'

Configuration comes from ``FLASK_*`` environment variables (``FLASK_SECRET_KEY``,
``FLASK_DATABASE``, ``FLASK_TIDINGS_WS_URL``); tidings reads its own ``REALTIME_*`` and ``KAFKA_*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

import tidings
from tidings.ports import RealtimePort

from . import db, views


def create_app(
    config: Mapping[str, Any] | None = None, *, realtime: RealtimePort | None = None
) -> Flask:
    """The app. ``realtime`` is the port views broadcast through: the process-wide one by
    default, a ``FakeRealtime`` in tests."""
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY="dev-only-set-FLASK_SECRET_KEY",
        DATABASE=str(Path(app.instance_path) / "storefront.sqlite3"),
        TIDINGS_WS_URL="ws://127.0.0.1:6001/ws",
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.config.from_prefixed_env()
    if config is not None:
        app.config.from_mapping(config)

    Path(app.instance_path).mkdir(parents=True, exist_ok=True)  # where the default database goes

    port = realtime if realtime is not None else tidings.realtime()
    # Build the publisher now: a wrong REALTIME_* or KAFKA_* setting stops the app at start, not
    # at its first broadcast. Under ``gunicorn --preload`` this runs once, in the master, before
    # the workers are forked; tidings makes the publisher work again in each worker.
    port.broker()
    app.extensions["tidings"] = port

    db.init_app(app)
    app.register_blueprint(views.shop)
    return app

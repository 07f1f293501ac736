"""A Pusher app's auth endpoints, made with Pusher's own Python library, against tidings.

pusher-js (and Laravel Echo) ask the app's server to authorize private and presence channels and
to sign users in; the app answers with ``pusher.Pusher.authenticate`` and ``authenticate_user``,
signed with the app's secret: exactly what an app that used Pusher, soketi or Reverb already
does. tidings checks those signatures (docs/pusher.md). Who the user is comes from the app's own
session; this example takes ``user`` from the request, as a stand-in for a login.

    PUSHER_APP_ID=1 PUSHER_APP_KEY=app-key PUSHER_APP_SECRET=... flask --app examples/pusher/app run
"""

from __future__ import annotations

import os

import pusher
from flask import Flask, abort, jsonify, request

USERS = {"alice": {"name": "Alice"}, "bob": {"name": "Bob"}, "carol": {"name": "Carol"}}
"""The app's users (its database, in a real app)."""


def create_app() -> Flask:
    app = Flask(__name__)
    client = pusher.Pusher(
        app_id=os.environ["PUSHER_APP_ID"],
        key=os.environ["PUSHER_APP_KEY"],
        secret=os.environ["PUSHER_APP_SECRET"],
    )

    def current_user() -> str:
        user = request.form.get("user") or request.args.get("user")
        if user not in USERS:
            abort(403)  # not logged in: pusher-js reports the refusal on the channel
        return user

    @app.post("/pusher/auth")
    def authorize_channel() -> object:
        user = current_user()
        channel = request.form["channel_name"]
        socket_id = request.form["socket_id"]
        if channel.startswith("presence-"):
            member = {"user_id": user, "user_info": USERS[user]}
            return jsonify(client.authenticate(channel, socket_id, member))
        return jsonify(client.authenticate(channel, socket_id))

    @app.post("/pusher/user-auth")
    def authenticate_user() -> object:
        user = current_user()
        data = {"id": user, "user_info": USERS[user]}
        return jsonify(client.authenticate_user(request.form["socket_id"], data))

    return app

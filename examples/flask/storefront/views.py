"""The storefront's views: a JSON login that answers a tidings connection token, and staff
changing an order's status, which tells the customer and the staff over tidings."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request, session
from werkzeug.security import check_password_hash

from tidings import BrokerError, issue_token
from tidings.ports import RealtimePort

from .db import get_db

shop = Blueprint("shop", __name__)

STATUSES = ("pending", "packed", "shipped", "delivered")


def realtime() -> RealtimePort:
    """The port the app was made with (``create_app(realtime=...)``)."""
    port: RealtimePort = current_app.extensions["tidings"]
    return port


def error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message), status


def current_user() -> sqlite3.Row | None:
    user_id = session.get("user_id")
    if user_id is None:
        return None
    user: sqlite3.Row | None = (
        get_db().execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    )
    return user


def connection(user: sqlite3.Row) -> dict[str, Any]:
    """What the browser needs to open its WebSocket: a token for this user (``user.{id}`` is
    theirs alone) and where the gateway is."""
    return {
        "token": issue_token(user["id"], info={"name": user["username"]}, ttl=3600),
        "ws_url": current_app.config["TIDINGS_WS_URL"],
        "user_id": user["id"],
        "channel": f"user.{user['id']}",
    }


def as_json(order: sqlite3.Row) -> dict[str, Any]:
    return {
        "order_id": order["id"],
        "customer_id": order["customer_id"],
        "item": order["item"],
        "status": order["status"],
    }


@shop.get("/")
def index() -> str:
    """A page to try it in a browser: log in, watch your orders change."""
    return render_template("index.html", ws_url=current_app.config["TIDINGS_WS_URL"])


@shop.post("/login")
def login() -> Response | tuple[Response, int]:
    body = request.get_json(silent=True) or {}
    missing = [name for name in ("username", "password") if not isinstance(body.get(name), str)]
    if missing:
        return error(400, f"a JSON body with {' and '.join(missing)} (strings) is needed")
    user = (
        get_db().execute("SELECT * FROM users WHERE username = ?", (body["username"],)).fetchone()
    )
    if user is None or not check_password_hash(user["password"], body["password"]):
        return error(401, "wrong username or password")
    session.clear()
    session["user_id"] = user["id"]
    return jsonify(connection(user))


@shop.get("/realtime/token")
def realtime_token() -> Response | tuple[Response, int]:
    """A fresh token for the logged-in user (``client.js`` asks on every reconnect)."""
    user = current_user()
    if user is None:
        return error(401, "log in first")
    return jsonify(connection(user))


@shop.get("/orders")
def orders() -> Response | tuple[Response, int]:
    """The user's orders; staff see every order."""
    user = current_user()
    if user is None:
        return error(401, "log in first")
    if user["is_staff"]:
        rows = get_db().execute("SELECT * FROM orders ORDER BY id").fetchall()
    else:
        rows = (
            get_db()
            .execute("SELECT * FROM orders WHERE customer_id = ? ORDER BY id", (user["id"],))
            .fetchall()
        )
    return jsonify(orders=[as_json(row) for row in rows])


@shop.post("/orders/<int:order_id>/status")
def set_status(order_id: int) -> Response | tuple[Response, int]:
    """Staff set an order's status (``{"status": "shipped"}``); the customer hears on
    ``user.{id}``, the staff on ``admin.orders``, once the change is committed.

    A broadcast that fails (the broker down) is logged and answered as ``"notified": false``:
    the status change stands. ``REALTIME_OUTBOX`` makes such broadcasts retried instead.
    ``worker`` is the process that answered (gunicorn runs several).
    """
    user = current_user()
    if user is None:
        return error(401, "log in first")
    if not user["is_staff"]:
        return error(403, "only staff change orders")
    status = (request.get_json(silent=True) or {}).get("status")
    if status not in STATUSES:
        return error(400, f"status {status!r} is not one of {', '.join(STATUSES)}")
    db = get_db()
    if db.execute("UPDATE orders SET status = ? WHERE id = ?", (status, order_id)).rowcount == 0:
        return error(404, f"no order {order_id}")
    db.commit()
    order = as_json(db.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone())
    try:
        realtime().to_user(order["customer_id"], "order.updated", order)
        realtime().broadcast(
            "admin.orders",
            "order.status_changed",
            {"order_id": order_id, "customer_id": order["customer_id"], "status": status},
        )
        notified = True
    except BrokerError:
        current_app.logger.exception("order %s is %s, but browsers were not told", order_id, status)
        notified = False
    return jsonify(order=order, notified=notified, worker=os.getpid())

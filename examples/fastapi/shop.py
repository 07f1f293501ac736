"""A FastAPI shop that tells its customers, live, when their order ships.

    uvicorn shop:app --port 8000

- ``POST /login`` (HTTP Basic) answers the connection token the browser hands to the gateway:
  ``{"user_id", "token", "ws_url"}``. A wrong password is a 401 and no token.
- ``POST /orders/{order_id}/ship`` (HTTP Basic, staff only) marks the order shipped, awaits the
  broadcast of ``order.updated`` on the customer's channel ``user.{id}``, and leaves the
  staff feed ``admin.orders`` to a background task that runs after the response.

The endpoints take the ``RealtimePort`` as a dependency (``Depends(get_realtime)``) rather than
calling ``tidings.realtime()`` themselves, so that a test swaps in ``FakeRealtime`` through
``app.dependency_overrides`` without any server (test_fastapi.py shows how).

Users and orders are toys held in memory; the realtime part is what a real app does.
"""

from __future__ import annotations

import hmac
import os
from typing import Annotated

import attrs
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials

import tidings
from tidings import BrokerUnavailable
from tidings.ports import RealtimePort

WS_URL = os.environ.get("GATEWAY_WS_URL", "ws://127.0.0.1:6001/ws")
"""Where browsers reach the gateway: answered with each token, so the page needs no setting."""


@attrs.frozen
class User:
    id: int
    username: str
    password: str
    staff: bool = False


@attrs.define
class Order:
    id: int
    customer_id: int
    status: str = "paid"


USERS = {
    user.username: user
    for user in (
        User(42, "alice", "wonderland"),
        User(43, "bob", "builder"),
        User(1, "staff", "backoffice", staff=True),
    )
}
ORDERS = {order.id: order for order in (Order(1001, 42), Order(1002, 42), Order(1003, 43))}

app = FastAPI(title="tidings FastAPI example")
basic = HTTPBasic()


def current_user(credentials: Annotated[HTTPBasicCredentials, Depends(basic)]) -> User:
    """The user the request's HTTP Basic credentials name; 401 when they do not match."""
    user = USERS.get(credentials.username)
    # compare_digest even for an unknown name, so the answer takes as long either way.
    expected = user.password if user is not None else "\0"
    if user is None or not hmac.compare_digest(credentials.password, expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "wrong username or password",
            headers={"WWW-Authenticate": "Basic"},
        )
    return user


def staff_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.staff:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "staff only")
    return user


def get_realtime() -> RealtimePort:
    """The process-wide port, built from the environment (REALTIME_*, KAFKA_*) on first use."""
    return tidings.realtime()


Realtime = Annotated[RealtimePort, Depends(get_realtime)]


@app.exception_handler(BrokerUnavailable)
async def realtime_down(request: Request, exc: BrokerUnavailable) -> JSONResponse:
    """The broker (Kafka, or the gateway published into) did not take the message in time: the
    client may try again; the error names the brokers tried, for the log, not for the client."""
    return JSONResponse({"detail": "live updates are unavailable, try again"}, status_code=503)


@app.post("/login")
async def login(user: Annotated[User, Depends(current_user)]) -> dict[str, object]:
    """The connection token for the browser: it may subscribe to ``user.{id}`` with it."""
    token = tidings.issue_token(user.id, info={"name": user.username}, ttl=3600)
    return {"user_id": user.id, "token": token, "ws_url": WS_URL}


@app.post("/orders/{order_id}/ship")
async def ship(
    order_id: int,
    staff: Annotated[User, Depends(staff_user)],
    realtime: Realtime,
    background: BackgroundTasks,
) -> dict[str, object]:
    order = ORDERS.get(order_id)
    if order is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no order {order_id}")
    order.status = "shipped"
    # Awaited: the broker has the message when the response says so, and the event loop keeps
    # serving other requests meanwhile.
    await realtime.abroadcast(
        f"user.{order.customer_id}",
        "order.updated",
        {"order_id": order.id, "status": order.status},
    )
    # The staff feed can wait for the response to go: FastAPI runs the task after it.
    background.add_task(
        realtime.abroadcast,
        "admin.orders",
        "order.status_changed",
        {"order_id": order.id, "status": order.status, "by": staff.username},
    )
    return {"order_id": order.id, "status": order.status}

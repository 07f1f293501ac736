"""The shop's views: a session login that also answers a tidings connection token, and shipping
orders, which tells the customer and the staff once the transaction has committed."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from tidings import issue_token

from . import broadcasts
from .models import NotPending, Order


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _connection(request: HttpRequest) -> dict[str, Any]:
    """What the browser needs to open its WebSocket: a token for this user (``user.{id}`` is
    theirs alone) and where the gateway is. Tokens live an hour; ``client.js`` asks
    ``/realtime/token`` for a fresh one whenever it reconnects."""
    user = request.user
    token = issue_token(user.pk, info={"name": user.get_username()}, ttl=3600)
    return {
        "token": token,
        "ws_url": settings.TIDINGS_WS_URL,
        "user_id": user.pk,
        "channel": f"user.{user.pk}",
    }


@require_GET
@ensure_csrf_cookie
def index(request: HttpRequest) -> HttpResponse:
    """A page to try it in a browser: log in, watch your orders change."""
    return render(request, "orders/index.html", {"ws_url": settings.TIDINGS_WS_URL})


@require_POST
def login_view(request: HttpRequest) -> JsonResponse:
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return _error(401, "wrong username or password")
    login(request, user)
    return JsonResponse(_connection(request))


@require_GET
def realtime_token(request: HttpRequest) -> JsonResponse:
    """A fresh token for the logged-in user (``client.js`` calls it on every reconnect)."""
    if not request.user.is_authenticated:
        return _error(401, "log in first")
    return JsonResponse(_connection(request))


@require_GET
def my_orders(request: HttpRequest) -> JsonResponse:
    """The user's orders; staff see every order."""
    if not request.user.is_authenticated:
        return _error(401, "log in first")
    orders = Order.objects.order_by("pk")
    if not request.user.is_staff:
        orders = orders.filter(customer=request.user)
    return JsonResponse({"orders": [order.as_json() for order in orders]})


@require_POST
def ship_orders(request: HttpRequest) -> JsonResponse:
    """Ship the orders ``order=1&order=2``: all of them or none (one transaction).

    Each broadcast is registered with ``transaction.on_commit``, so it is sent only once the
    orders are saved for good; if one order cannot ship, the transaction rolls back and nobody
    hears of the others. ``robust=True``: a broadcast that fails (the broker down) is logged and
    does not turn the committed shipment into an error page; ``REALTIME_OUTBOX`` makes it
    retried instead (docs/django.md).
    """
    if not request.user.is_authenticated:
        return _error(401, "log in first")
    if not request.user.is_staff:
        return _error(403, "only staff ship orders")
    given = request.POST.getlist("order")
    if not given:
        return _error(400, "no order to ship: give one or more order=ID")
    try:
        order_ids = [int(each) for each in given]
    except ValueError:
        return _error(400, f"order ids are integers, got {given}")
    try:
        with transaction.atomic():
            shipped = []
            for order_id in order_ids:
                order = Order.objects.select_for_update().get(pk=order_id)
                order.ship()
                order.save(update_fields=["status"])
                # order=order: each callback keeps its own order, not the loop's last one.
                transaction.on_commit(
                    lambda order=order: broadcasts.order_shipped(order), robust=True
                )
                shipped.append(order.as_json())
    except Order.DoesNotExist:
        return _error(404, f"no order {order_id}")
    except NotPending as exc:
        return _error(409, f"{exc}; nothing was shipped")
    return JsonResponse({"shipped": shipped})

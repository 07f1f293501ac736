from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("login", views.login_view, name="login"),
    path("realtime/token", views.realtime_token, name="realtime-token"),
    path("orders", views.my_orders, name="orders"),
    path("orders/ship", views.ship_orders, name="ship-orders"),
]

"""The shop's URLs: all of them belong to the orders app."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("", include("orders.urls"))]

"""An order belongs to a customer and moves from pending to shipped."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class NotPending(Exception):
    """Shipping an order that is not pending (shipped already, say)."""


class Order(models.Model):
    PENDING = "pending"
    SHIPPED = "shipped"
    STATUSES = [(PENDING, "Pending"), (SHIPPED, "Shipped")]

    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    item = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=STATUSES, default=PENDING)

    customer_id: int

    def ship(self) -> None:
        if self.status != self.PENDING:
            raise NotPending(f"order {self.pk} is {self.status}, not {self.PENDING}")
        self.status = self.SHIPPED

    def as_json(self) -> dict[str, Any]:
        return {
            "order_id": self.pk,
            "customer_id": self.customer_id,
            "item": self.item,
            "status": self.status,
        }

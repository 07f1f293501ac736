"""``python manage.py demo_data``: two users and a few orders to try the example with.

ann (a customer, password ``ann-password``) has three orders; bob (staff, ``bob-password``)
ships them. Running it again changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from orders.models import Order

ITEMS = ("Espresso machine", "Coffee grinder", "Milk jug")


class Command(BaseCommand):
    help = "Create the demo users ann (customer) and bob (staff), and ann's orders."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        ann, created = users.objects.get_or_create(username="ann")
        if created:
            ann.set_password("ann-password")
            ann.save()
            for item in ITEMS:
                Order.objects.create(customer=ann, item=item)
        bob, created = users.objects.get_or_create(username="bob", defaults={"is_staff": True})
        if created:
            bob.set_password("bob-password")
            bob.save()
        self.stdout.write(f"ann (user {ann.pk}) with {ann.order_set.count()} orders; bob (staff)")

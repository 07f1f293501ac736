"""The shop's own tests, the way a Django project writes them: ``python manage.py test``.

``FakeRealtime`` (shipped with tidings) stands in for the port ``orders.broadcasts`` uses and
records what would have been broadcast. ``captureOnCommitCallbacks(execute=True)`` runs the
``on_commit`` callbacks that ``TestCase``'s own transaction would otherwise never commit.
With pytest-django, take the ``fake_realtime`` fixture instead of the patch.
"""

from __future__ import annotations

from unittest import mock

from django.contrib.auth import get_user_model
from django.test import TestCase

from tidings import BrokerUnavailable
from tidings.testing import FakeRealtime

from .models import Order


class ShippingTests(TestCase):
    def setUp(self) -> None:
        users = get_user_model()
        self.ann = users.objects.create_user("ann", password="ann-password")
        self.bob = users.objects.create_user("bob", password="bob-password", is_staff=True)
        self.first = Order.objects.create(customer=self.ann, item="Espresso machine")
        self.second = Order.objects.create(customer=self.ann, item="Coffee grinder")
        self.realtime = FakeRealtime()
        patcher = mock.patch("orders.broadcasts.realtime", return_value=self.realtime)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.client.force_login(self.bob)

    def test_shipping_tells_the_customer_and_the_staff_after_commit(self) -> None:
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            answer = self.client.post("/orders/ship", {"order": [self.first.pk]})
            self.realtime.assert_nothing_broadcast()  # not before the commit
        self.assertEqual(answer.status_code, 200)
        self.assertEqual(len(callbacks), 1)
        self.realtime.assert_broadcast(
            f"user.{self.ann.pk}",
            "order.updated",
            {
                "order_id": self.first.pk,
                "customer_id": self.ann.pk,
                "item": "Espresso machine",
                "status": "shipped",
            },
        )
        self.realtime.assert_broadcast(
            "admin.orders",
            "order.status_changed",
            {"order_id": self.first.pk, "customer_id": self.ann.pk, "status": "shipped"},
        )

    def test_a_rolled_back_shipment_broadcasts_nothing(self) -> None:
        self.second.status = Order.SHIPPED
        self.second.save()
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            answer = self.client.post("/orders/ship", {"order": [self.first.pk, self.second.pk]})
        self.assertEqual(answer.status_code, 409)
        self.assertIn(f"order {self.second.pk} is shipped", answer.json()["error"])
        self.assertEqual(callbacks, [])
        self.realtime.assert_nothing_broadcast()
        self.first.refresh_from_db()
        self.assertEqual(self.first.status, Order.PENDING)

    def test_a_failed_broadcast_leaves_the_shipment_committed(self) -> None:
        self.realtime.fail_with(BrokerUnavailable(["127.0.0.1:9092"], "down for the test"))
        with (
            self.assertLogs(level="ERROR") as logs,
            self.captureOnCommitCallbacks(execute=True),
        ):
            answer = self.client.post("/orders/ship", {"order": [self.first.pk]})
        self.assertEqual(answer.status_code, 200)
        self.assertIn("down for the test", logs.output[0])
        self.first.refresh_from_db()
        self.assertEqual(self.first.status, Order.SHIPPED)

    def test_only_staff_ship(self) -> None:
        self.client.force_login(self.ann)
        answer = self.client.post("/orders/ship", {"order": [self.first.pk]})
        self.assertEqual(answer.status_code, 403)
        self.realtime.assert_nothing_broadcast()

    def test_bad_order_ids_are_refused_by_name(self) -> None:
        answer = self.client.post("/orders/ship", {"order": ["seven"]})
        self.assertEqual(answer.status_code, 400)
        self.assertIn("seven", answer.json()["error"])
        self.assertEqual(self.client.post("/orders/ship", {}).status_code, 400)
        self.assertEqual(self.client.post("/orders/ship", {"order": [999]}).status_code, 404)


class LoginTests(TestCase):
    def setUp(self) -> None:
        self.ann = get_user_model().objects.create_user("ann", password="ann-password")

    def test_login_answers_a_token_for_the_users_channel(self) -> None:
        answer = self.client.post("/login", {"username": "ann", "password": "ann-password"})
        self.assertEqual(answer.status_code, 200)
        body = answer.json()
        self.assertEqual(body["channel"], f"user.{self.ann.pk}")
        self.assertTrue(body["token"])
        self.assertEqual(self.client.get("/realtime/token").status_code, 200)

    def test_wrong_password_gets_no_token(self) -> None:
        answer = self.client.post("/login", {"username": "ann", "password": "wrong"})
        self.assertEqual(answer.status_code, 401)
        self.assertNotIn("token", answer.json())
        self.assertEqual(self.client.get("/realtime/token").status_code, 401)

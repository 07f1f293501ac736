"""SQLite, one connection per request (``flask.g``), and ``flask init-db`` with demo data."""

from __future__ import annotations

import sqlite3
from typing import Any

import click
from flask import Flask, current_app, g
from werkzeug.security import generate_password_hash

SCHEMA = """
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS users;
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT UNIQUE NOT NULL,
    password TEXT NOT NULL,
    is_staff INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL REFERENCES users (id),
    item TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
);
"""

ITEMS = ("Espresso machine", "Coffee grinder", "Milk jug")


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = sqlite3.connect(current_app.config["DATABASE"])
        g.db.row_factory = sqlite3.Row
    connection: sqlite3.Connection = g.db
    return connection


def close_db(_error: BaseException | None = None) -> None:
    connection = g.pop("db", None)
    if connection is not None:
        connection.close()


def init_db() -> dict[str, Any]:
    """A fresh schema; ann (customer, ``ann-password``) with three orders, bob (staff,
    ``bob-password``)."""
    db = get_db()
    db.executescript(SCHEMA)
    ann = db.execute(
        "INSERT INTO users (username, password) VALUES (?, ?)",
        ("ann", generate_password_hash("ann-password")),
    ).lastrowid
    db.execute(
        "INSERT INTO users (username, password, is_staff) VALUES (?, ?, 1)",
        ("bob", generate_password_hash("bob-password")),
    )
    db.executemany(
        "INSERT INTO orders (customer_id, item) VALUES (?, ?)", [(ann, item) for item in ITEMS]
    )
    db.commit()
    return {"ann": ann, "orders": len(ITEMS)}


@click.command("init-db")
def init_db_command() -> None:
    """Create the tables and the demo users (ann, bob) and orders, dropping what was there."""
    created = init_db()
    click.echo(f"ann (user {created['ann']}) with {created['orders']} orders; bob (staff)")


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)

"""The peer make bench measures the bank against (issue #20): what a competent engineer would write in an
afternoon on Flask and PostgreSQL row locks, with the same routes, answers and money rules as the business servers.

A deposit is one upsert; a withdrawal one guarded update; a transfer locks both rows in id order (SELECT … FOR
UPDATE) and updates them in one transaction; every commit is durable (synchronous_commit=on). What it does not do
that the bank does: no idempotency records (a retried request may apply twice), no leases or fencing (it trusts
PostgreSQL's row locks and one database), no second tier to outgrow one machine with.

Settings from the environment: PEER_DSN (libpq), PEER_TOKEN (the clients' bearer token), PEER_POOL (connections
per worker).
"""
import os

from flask import Flask, jsonify

from shared.auth import bearer_auth, configure_tokens
from shared.errors import ApiError, register_error_handlers
from shared.money import format_cents
from shared.web import amount_cents, valid_account_id

MAX_BALANCE_CENTS = 10 ** 18
SCHEMA = """CREATE TABLE IF NOT EXISTS accounts (
    id text PRIMARY KEY,
    cents bigint NOT NULL CHECK (cents >= 0 AND cents <= 1000000000000000000))"""

auth = bearer_auth()


def create_app():
    # Here, not at the top: psycopg is the benchmark's requirement, and bench.run imports this module's schema.
    from psycopg_pool import ConnectionPool

    app = Flask(__name__)
    register_error_handlers(app)
    configure_tokens(app, {os.environ["PEER_TOKEN"]: "client"})
    pool = ConnectionPool(os.environ["PEER_DSN"], min_size=2, max_size=int(os.environ.get("PEER_POOL", "16")),
                          timeout=10, open=True)

    @app.post("/deposit/<account_id>/<amount>")
    @auth.login_required
    def deposit(account_id, amount):
        account, cents = valid_account_id(account_id), amount_cents(amount)
        with pool.connection() as connection:
            row = connection.execute(
                "INSERT INTO accounts (id, cents) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE "
                "SET cents = accounts.cents + EXCLUDED.cents WHERE accounts.cents + EXCLUDED.cents <= %s "
                "RETURNING cents", (account, cents, MAX_BALANCE_CENTS)).fetchone()
        if row is None:
            raise ApiError(422, "balance_limit", f"account {account} would exceed the largest balance")
        return jsonify(account=account, amount=format_cents(cents), balance=format_cents(row[0]))

    @app.post("/withdrawal/<account_id>/<amount>")
    @auth.login_required
    def withdrawal(account_id, amount):
        account, cents = valid_account_id(account_id), amount_cents(amount)
        with pool.connection() as connection:
            row = connection.execute("UPDATE accounts SET cents = cents - %s WHERE id = %s AND cents >= %s "
                                     "RETURNING cents", (cents, account, cents)).fetchone()
            if row is None:
                _refuse(connection, account)
        return jsonify(account=account, amount=format_cents(cents), balance=format_cents(row[0]))

    @app.get("/balance/<account_id>")
    @auth.login_required
    def balance(account_id):
        account = valid_account_id(account_id)
        with pool.connection() as connection:
            row = connection.execute("SELECT cents FROM accounts WHERE id = %s", (account,)).fetchone()
        if row is None:
            raise ApiError(404, "account_not_found", f"account {account} does not exist")
        return jsonify(account=account, balance=format_cents(row[0]))

    @app.post("/transfer/<origin_id>/<target_id>/<amount>")
    @auth.login_required
    def transfer(origin_id, target_id, amount):
        origin, target = valid_account_id(origin_id), valid_account_id(target_id)
        cents = amount_cents(amount)
        if origin == target:
            raise ApiError(400, "same_account", "origin and target must be different accounts")
        with pool.connection() as connection, connection.transaction():
            # Both rows locked in id order: two transfers between the same accounts cannot deadlock.
            rows = dict(connection.execute("SELECT id, cents FROM accounts WHERE id = ANY(%s) ORDER BY id "
                                           "FOR UPDATE", ([origin, target],)).fetchall())
            for account in (origin, target):
                if account not in rows:
                    raise ApiError(404, "account_not_found", f"account {account} does not exist")
            if rows[origin] < cents:
                raise ApiError(422, "insufficient_funds", f"account {origin} has not enough funds")
            if rows[target] + cents > MAX_BALANCE_CENTS:
                raise ApiError(422, "balance_limit", f"account {target} would exceed the largest balance")
            connection.execute("UPDATE accounts SET cents = cents - %s WHERE id = %s", (cents, origin))
            connection.execute("UPDATE accounts SET cents = cents + %s WHERE id = %s", (cents, target))
        return jsonify(origin=origin, target=target, amount=format_cents(cents),
                       origin_balance=format_cents(rows[origin] - cents),
                       target_balance=format_cents(rows[target] + cents))

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    return app


def _refuse(connection, account):
    exists = connection.execute("SELECT 1 FROM accounts WHERE id = %s", (account,)).fetchone()
    if exists is None:
        raise ApiError(404, "account_not_found", f"account {account} does not exist")
    raise ApiError(422, "insufficient_funds", f"account {account} has not enough funds")

"""Many threads on three business apps over one real data server: exact balances, conserved sum, no deadlock."""
import collections
import random
import threading

from shared.money import parse_cents

THREADS = 24
OPERATIONS_PER_THREAD = 20


def run_threads(count, work):
    errors = []

    def guarded(index):
        try:
            work(index)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "threads still running: a deadlock or a hang"
    assert errors == []


def test_deposits_and_withdrawals_on_one_hot_account_are_exact(make_business_app, client_headers):
    banks = [make_business_app(f"b{i}") for i in (1, 2, 3)]
    applied = collections.Counter()
    statuses = collections.Counter()
    mutex = threading.Lock()

    def work(index):
        client, rng = banks[index % 3].test_client(), random.Random(index)
        for _ in range(OPERATIONS_PER_THREAD):
            kind = rng.choice(["deposit", "withdrawal"])
            response = client.post(f"/{kind}/hot/{'2.00' if kind == 'deposit' else '3.00'}", headers=client_headers)
            with mutex:
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    applied[kind] += 1
                    assert parse_cents(response.json["balance"]) >= 0

    run_threads(THREADS, work)
    assert set(statuses) <= {200, 422, 404}, statuses
    final = banks[0].test_client().get("/balance/hot", headers=client_headers).json["balance"]
    assert parse_cents(final) == 200 * applied["deposit"] - 300 * applied["withdrawal"]
    assert applied["deposit"] > 0 and applied["withdrawal"] > 0


def test_crossing_transfers_conserve_the_sum_and_never_deadlock(make_business_app, client_headers):
    banks = [make_business_app(f"b{i}") for i in (1, 2, 3)]
    accounts = ["a", "b", "c", "d"]
    for account in accounts:
        assert banks[0].test_client().post(f"/deposit/{account}/50", headers=client_headers).status_code == 200
    moved = collections.Counter()
    statuses = collections.Counter()
    mutex = threading.Lock()

    def work(index):
        client, rng = banks[index % 3].test_client(), random.Random(index)
        for _ in range(OPERATIONS_PER_THREAD):
            origin, target = rng.sample(accounts, 2)
            response = client.post(f"/transfer/{origin}/{target}/7.00", headers=client_headers)
            with mutex:
                statuses[response.json.get("error", response.status_code)] += 1
                if response.status_code == 200:
                    moved[origin] -= 700
                    moved[target] += 700

    run_threads(THREADS, work)
    # account_busy promises that nothing was applied: the balances below check that promise too.
    assert set(statuses) <= {200, "insufficient_funds", "account_busy"}, statuses
    balances = {a: parse_cents(banks[1].test_client().get(f"/balance/{a}", headers=client_headers).json["balance"])
                for a in accounts}
    assert balances == {a: 5000 + moved[a] for a in accounts}
    assert sum(balances.values()) == 4 * 5000 and min(balances.values()) >= 0
    assert statuses[200] > THREADS * OPERATIONS_PER_THREAD // 2

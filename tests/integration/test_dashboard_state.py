"""GET /dashboard/state: the bank at a glance, for operators only."""
from data.dashboard import Activity
from tests.helpers import OPERATOR_TOKEN, FakeClock, bearer

OPERATOR = bearer(OPERATOR_TOKEN)


def test_the_state_shows_money_leases_rates_and_refusals_and_only_to_operators(data_client, b1):
    assert data_client.get("/dashboard/state", headers=b1).status_code == 401
    assert data_client.get("/dashboard").status_code == 200
    for account, amount in (("a", "10.00"), ("b", "2.50")):
        token = data_client.post(f"/getLock/b1/{account}", headers=b1).json["token"]
        data_client.post("/commit/b1", headers=b1, json={
            "writes": [{"account": account, "amount": amount, "token": token}], "unlock": True})
    stale = token
    data_client.post("/commit/b1", headers=b1, json={
        "writes": [{"account": "b", "amount": "99.00", "token": stale}], "unlock": True})
    held = data_client.post("/getLock/b1/a", headers=b1).json["token"]
    state = data_client.get("/dashboard/state", headers=OPERATOR).json
    assert (state["total"], state["accounts"], state["lease_count"]) == ("12.50", 2, 1)
    assert [(lease["account"], lease["holder"], lease["token"]) for lease in state["leases"]] == [("a", "b1", held)]
    assert [(r["business"], r["account"], r["token"]) for r in state["refusals"]] == [("b1", "b", stale)]


def test_operations_per_second_average_the_last_whole_seconds_and_forget_older_ones():
    clock = FakeClock()
    activity = Activity(clock)
    for _ in range(5):
        activity.committed("b1", 4)
        clock.advance(1)
    activity.committed("b2", 100)           # still in the current second: not counted yet
    assert activity.view()[0] == {"b1": 4.0, "b2": 0.0}
    clock.advance(10)
    assert activity.view()[0] == {"b1": 0.0, "b2": 0.0}

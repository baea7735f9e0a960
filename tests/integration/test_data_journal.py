"""Durability: the journal replays every acknowledged write, drops a torn tail and refuses a corrupt middle."""
import logging
import os
import stat
import threading

import pytest

from data.embedded.journal import JournalCorrupt
from data.factory import create_store
from data.store import HoldConflict, UnknownAccount, Write
from shared.settings import load_data_settings
from tests.helpers import B1, FakeClock, InThread, amount_of, data_environ, set_amount, wait_until
from tests.integration.test_store_holds import a_hold, closed, commit


@pytest.fixture
def start(make_data_app):
    """start(journal, background=None, **overrides): a data app journaling to journal; closed after the test if
    the test did not stop it."""
    def start(journal, background=None, **overrides):
        settings = load_data_settings(data_environ(DATA_JOURNAL=str(journal), **overrides))
        return make_data_app(settings, **({"background": background} if background else {}))
    return start


def run_now(job):
    job()


def stop(app):
    app.extensions["bank.store"].close()


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_a_restart_replays_every_acknowledged_write(tmp_path, fsync, start):
    journal = tmp_path / "bank.journal"
    app = start(journal, DATA_FSYNC=fsync)
    client = app.test_client()
    for i in range(20):
        set_amount(client, f"acc{i % 4}", f"{i}.50")
    last_token = set_amount(client, "acc0", "7.25", [{"id": "op-x", "request": "r", "result": {"ok": 1}}])
    stop(app)

    client = start(journal, DATA_FSYNC=fsync).test_client()
    assert [amount_of(client, f"acc{i}") for i in range(4)] == ["7.25", "17.50", "18.50", "19.50"]
    granted = client.post("/getLock/b1/acc0", headers=B1, json={"lookup": ["op-x"]}).json
    assert granted["token"] > last_token
    assert granted["operations"] == {"op-x": {"request": "r", "result": {"ok": 1}}}


def test_a_lock_never_written_leaves_nothing_after_restart(tmp_path, start):
    journal = tmp_path / "bank.journal"
    app = start(journal)
    app.test_client().post("/getLock/b1/ghost", headers=B1)
    stop(app)
    assert start(journal).test_client().get("/getAmount/b1/ghost", headers=B1).status_code == 404


def test_a_torn_last_record_is_dropped_with_a_warning_and_writing_goes_on(tmp_path, caplog, start):
    journal = tmp_path / "bank.journal"
    app = start(journal)
    set_amount(app.test_client(), "acc", "10.00")
    stop(app)
    with open(journal, "ab") as f:
        f.write(b'1234abcd {"t":"commit","w":{"acc":')

    with caplog.at_level(logging.WARNING, logger="bank.data"):
        app = start(journal)
    assert "torn" in caplog.text
    client = app.test_client()
    assert amount_of(client, "acc") == "10.00"
    set_amount(client, "acc", "11.00")
    stop(app)
    assert amount_of(start(journal).test_client(), "acc") == "11.00"


def test_a_corrupt_record_in_the_middle_stops_start_up(tmp_path, start):
    journal = tmp_path / "bank.journal"
    app = start(journal)
    for amount in ("1.00", "2.00", "3.00"):
        set_amount(app.test_client(), "acc", amount)
    stop(app)
    lines = journal.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"acc":100', b'"acc":900')
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalCorrupt, match="record 2"):
        start(journal)


def test_compaction_keeps_the_journal_proportional_to_accounts_not_history(tmp_path, start):
    journal = tmp_path / "bank.journal"
    app = start(journal, DATA_COMPACT_MIN_BYTES="2000", background=run_now)
    client = app.test_client()
    for i in range(200):
        set_amount(client, f"acc{i % 3}", f"{i}.00", [{"id": f"op-{i}", "request": "r", "result": i}])
    stop(app)
    assert app.extensions["bank.store"].stats().compactions > 1
    assert journal.stat().st_size < 2 * 2000 + 200 * 100

    client = start(journal).test_client()
    assert [amount_of(client, f"acc{i}") for i in range(3)] == ["198.00", "199.00", "197.00"]
    recorded = client.post("/getLock/b1/acc0", headers=B1, json={"lookup": ["op-199", "op-0"]}).json["operations"]
    assert recorded == {"op-199": {"request": "r", "result": 199}, "op-0": {"request": "r", "result": 0}}


def test_writes_go_on_while_a_compaction_writes_its_snapshot_and_all_of_them_survive_it(tmp_path, start):
    journal, jobs = tmp_path / "bank.journal", []
    app = start(journal, DATA_COMPACT_MIN_BYTES="1000", background=jobs.append)
    client = app.test_client()
    i = 0
    while not jobs:
        set_amount(client, f"acc{i % 5}", f"{i}.00", [{"id": f"op-{i}", "request": "r", "result": i}])
        i += 1
    for j in range(i, i + 20):
        set_amount(client, f"acc{j % 5}", f"{j}.00", [{"id": f"op-{j}", "request": "r", "result": j}])
    assert len(jobs) == 1, "a second compaction started while the first was under way"
    before = journal.stat().st_size
    jobs.pop()()
    assert journal.stat().st_size < before
    set_amount(client, "late", "1.00")
    stop(app)

    client = start(journal).test_client()
    last = i + 19
    assert [amount_of(client, f"acc{k}") for k in range(5)] == [f"{last - (last - k) % 5}.00" for k in range(5)]
    assert amount_of(client, "late") == "1.00"
    lookup = [f"op-{k}" for k in (0, i - 1, i, last)]
    assert set(client.post("/getLock/b1/acc0", headers=B1, json={"lookup": lookup}).json["operations"]) == set(lookup)


def test_a_compaction_that_fails_leaves_the_journal_whole_and_writing_goes_on(tmp_path, monkeypatch, start):
    journal, jobs = tmp_path / "bank.journal", []
    app = start(journal, DATA_COMPACT_MIN_BYTES="1000", background=jobs.append)
    client = app.test_client()
    i = 0
    while not jobs:
        set_amount(client, "acc", f"{i}.00")
        i += 1
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda *args: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    jobs.pop()()
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (tmp_path / "bank.journal.compacting").exists()
    set_amount(client, "acc", "77.00")
    stop(app)
    assert amount_of(start(journal).test_client(), "acc") == "77.00"


def test_fencing_tokens_keep_growing_across_many_restarts(tmp_path, start):
    journal, seen = tmp_path / "bank.journal", []
    for _ in range(3):
        app = start(journal)
        client = app.test_client()
        for _ in range(3):
            token = client.post("/getLock/b1/acc", headers=B1).json["token"]
            client.post("/unLock/b1/acc", headers=B1, json={"token": token})
            seen.append(token)
        stop(app)
    assert seen == sorted(set(seen))


def test_idempotency_records_are_forgotten_after_their_retention_also_across_a_restart(tmp_path, make_data_app):
    journal, wall = tmp_path / "bank.journal", FakeClock()
    settings = load_data_settings(data_environ(DATA_JOURNAL=str(journal), DATA_OPERATION_RETENTION="60"))
    app = make_data_app(settings, wall_clock=wall)
    client = app.test_client()
    set_amount(client, "acc", "1.00", [{"id": "old", "request": "r", "result": 1}])
    wall.advance(30)
    set_amount(client, "acc", "2.00", [{"id": "new", "request": "r", "result": 2}])
    wall.advance(31)
    granted = client.post("/getLock/b1/acc", headers=B1, json={"lookup": ["old", "new"]}).json
    assert set(granted["operations"]) == {"new"}
    client.post("/unLock/b1/acc", headers=B1, json={"token": granted["token"]})
    stop(app)
    wall.advance(30)
    client = make_data_app(settings, wall_clock=wall).test_client()
    assert client.post("/getLock/b1/acc", headers=B1, json={"lookup": ["old", "new"]}).json["operations"] == {}


def test_the_journal_directory_is_made_when_it_is_missing(tmp_path, start):
    journal = tmp_path / "var" / "data" / "bank.journal"
    app = start(journal)
    set_amount(app.test_client(), "acc", "4.00")
    stop(app)
    assert amount_of(start(journal).test_client(), "acc") == "4.00"


def record_ends(content):
    """The offset just past each whole record's newline."""
    return [index + 1 for index, byte in enumerate(content) if byte == ord("\n")]


@pytest.fixture
def open_store():
    """open_store(journal): the embedded store on journal, with no HTTP layer (hundreds are opened in a test);
    closed after the test if the test did not close it."""
    opened = []

    def open_store(journal):
        opened.append(create_store(load_data_settings(data_environ(DATA_JOURNAL=str(journal)))))
        return opened[-1]

    yield open_store
    for store in opened:
        store.close()


def balances(store, accounts):
    """{account: cents, None if it does not exist}."""
    def cents(account):
        try:
            return store.read("b1", account).cents
        except UnknownAccount:
            return None
    return {account: cents(account) for account in accounts}


def test_a_crash_cut_at_any_byte_of_the_last_two_records_loses_nothing_acknowledged(tmp_path, start, open_store):
    original = tmp_path / "original.journal"
    app = start(original)
    client = app.test_client()
    set_amount(client, "a", "1.00")
    set_amount(client, "b", "2.00", [{"id": "op-b", "request": "r", "result": 2}])
    set_amount(client, "a", "3.00", [{"id": "op-a", "request": "r", "result": 3}])
    stop(app)
    content = original.read_bytes()
    ends = record_ends(content)
    assert ends[-1] == len(content) and len(ends) == 4     # the fence reservation and three commits

    journal = tmp_path / "bank.journal"
    for cut in range(ends[-3], len(content) + 1):
        journal.write_bytes(content[:cut])
        whole = sum(1 for end in ends if end <= cut)
        store = open_store(journal)
        expected = {"a": 300 if whole == 4 else 100, "b": 200 if whole >= 3 else None}
        assert balances(store, "ab") == expected, cut
        store.commit("b1", {"c": Write(cut, store.lock("b1", "c").token)}, unlock=True)
        # A second crash: the process dies without closing anything; what it wrote is in the file.
        crashed, store = store, open_store(journal)
        crashed.close()
        assert balances(store, "abc") == {**expected, "c": cut}, cut
        recorded = store.lock("b1", "z", lookup=["op-a", "op-b"]).recorded
        assert set(recorded) == {op for op, needed in (("op-b", 3), ("op-a", 4)) if whole >= needed}, cut
        store.close()


class BrokenDisk:
    """os.fsync that fails with EIO once broken, as a disk that lost its pages does."""

    def __init__(self, monkeypatch):
        self.broken = False
        self.hold = None            # an Event a failing fsync waits for, to be caught under way
        self.entered = threading.Event()
        self.synced_sizes = []      # the journal's size at each fsync that went through
        self.synced_folders = []    # the inode of each folder fsynced
        real_fsync = os.fsync

        def fsync(fd):
            if self.broken:
                self.entered.set()
                if self.hold is not None:
                    self.hold.wait(5)
                raise OSError(5, "Input/output error")
            status = os.fstat(fd)
            if stat.S_ISDIR(status.st_mode):
                self.synced_folders.append(status.st_ino)
            else:
                self.synced_sizes.append(status.st_size)
            real_fsync(fd)
        monkeypatch.setattr(os, "fsync", fsync)


def assert_storage_failed(response):
    assert response.status_code == 503 and response.json["error"] == "storage_failed", response.json
    assert "nothing was applied" not in response.json["message"]


def test_after_a_failed_fsync_nothing_is_acknowledged_until_a_restart(tmp_path, monkeypatch, start):
    journal, disk = tmp_path / "bank.journal", BrokenDisk(monkeypatch)
    app = start(journal)
    client = app.test_client()
    set_amount(client, "acc", "5.00")
    token = client.post("/getLock/b1/acc", headers=B1).json["token"]
    disk.broken = True
    assert_storage_failed(client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": "acc", "amount": "6.00", "token": token}], "unlock": True}))
    disk.broken = False
    # The value of the failed commit is in memory; no one may see it, nor anything else, before a restart.
    assert_storage_failed(client.get("/getAmount/b1/acc", headers=B1))
    assert_storage_failed(client.get(f"/getAmount/b1/acc?token={token}", headers=B1))
    assert_storage_failed(client.post("/getLock/b1/other", headers=B1))
    assert_storage_failed(client.post("/unLock/b1/acc", headers=B1, json={"token": token}))
    assert_storage_failed(client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": "acc", "amount": "7.00", "token": token}], "unlock": True}))
    assert_storage_failed(client.get("/health"))
    stop(app)
    assert amount_of(start(journal).test_client(), "acc") in ("5.00", "6.00")


def test_a_get_lock_whose_sync_fails_leaves_no_lease_behind(tmp_path, monkeypatch, start):
    disk = BrokenDisk(monkeypatch)
    app = start(tmp_path / "bank.journal")
    store, client = app.extensions["bank.store"], app.test_client()
    set_amount(client, "acc", "5.00")
    token = client.post("/getLock/b1/acc", headers=B1).json["token"]
    disk.broken, disk.hold = True, threading.Event()

    def call(method, path, body):
        return app.test_client().open(path, method=method, headers=B1, json=body)

    commit = InThread(call, "POST", "/commit/b1", {
        "writes": [{"account": "acc", "amount": "6.00", "token": token}], "unlock": True})
    assert disk.entered.wait(5)
    # This lock is granted while the commit's fsync is under way, and must wait for that fsync to reply.
    lock = InThread(call, "POST", "/getLock/b1/other", {})
    wait_until(lambda: store.counts().leases == 1, 5, "the lock was never granted")
    disk.hold.set()
    assert_storage_failed(commit.result())
    assert_storage_failed(lock.result())
    assert store.counts().leases == 0


def test_with_fsync_everysec_a_failed_background_fsync_stops_every_answer(tmp_path, monkeypatch, start):
    disk = BrokenDisk(monkeypatch)
    app = start(tmp_path / "bank.journal", DATA_FSYNC="everysec")
    client = app.test_client()
    set_amount(client, "acc", "5.00")
    token = client.post("/getLock/b1/acc", headers=B1).json["token"]
    # A history read waits until the history file has every entry, and an entry goes there only once its commit
    # is on disk: from here on, the background fsync has nothing to do until the next write.
    assert client.get("/getHistory/b1/acc", headers=B1).status_code == 200
    disk.broken = True
    # A refusal under a key, recorded alone: no history entry, so only the background fsync ever syncs it.
    recorded = client.post("/commit/b1", headers=B1, json={"writes": [], "operations": [
        {"id": "op-refused", "request": "r", "result": {"error": "insufficient_funds"}}]})
    # Acknowledged before its fsync, as everysec promises; the fsync fails after the answer.
    assert recorded.status_code == 200, recorded.json
    wait_until(lambda: client.get("/health").status_code != 200, 5, "the failed background fsync went unnoticed")
    assert_storage_failed(client.get("/health"))
    assert_storage_failed(client.get("/getAmount/b1/acc", headers=B1))
    assert_storage_failed(client.post("/getLock/b1/other", headers=B1))
    assert_storage_failed(client.post("/unLock/b1/acc", headers=B1, json={"token": token}))
    assert_storage_failed(client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": "acc", "amount": "7.00", "token": token}], "unlock": True}))


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_fencing_token_reservations_reach_the_disk_under_every_fsync_policy(tmp_path, monkeypatch, fsync, start):
    journal, disk = tmp_path / "bank.journal", BrokenDisk(monkeypatch)
    app = start(journal, DATA_FSYNC=fsync)
    size_before_lock = journal.stat().st_size
    token = app.test_client().post("/getLock/b1/acc", headers=B1).json["token"]
    reservation = journal.read_bytes()[size_before_lock:]
    assert b'"t":"fence"' in reservation
    assert max(disk.synced_sizes) >= size_before_lock + len(reservation)
    stop(app)
    assert start(journal).test_client().post("/getLock/b1/acc", headers=B1).json["token"] > token


def test_the_folder_is_fsynced_when_the_journal_is_made_and_after_a_compaction_renames_it(tmp_path, monkeypatch,
                                                                                          start):
    disk, folder = BrokenDisk(monkeypatch), tmp_path / "new" / "var"
    app = start(folder / "bank.journal", DATA_COMPACT_MIN_BYTES="1000", background=run_now)
    made = disk.synced_folders.count(folder.stat().st_ino)
    assert made >= 1 and disk.synced_folders.count((tmp_path / "new").stat().st_ino) >= 1
    client = app.test_client()
    while app.extensions["bank.store"].stats().compactions == 0:
        set_amount(client, "acc", "1.00")
    assert disk.synced_folders.count(folder.stat().st_ino) > made


@pytest.mark.parametrize("compact", [False, True])
def test_held_and_closed_holds_survive_a_restart_and_a_compaction(tmp_path, compact):
    journal = tmp_path / "bank.journal"
    settings = load_data_settings(data_environ(DATA_JOURNAL=str(journal), DATA_COMPACT_MIN_BYTES="2000"))
    store = create_store(settings, background=run_now)
    commit(store, {"payer": 1000, "payee": 0}, [])
    held, captured = a_hold(), a_hold(cents=100)
    commit(store, {"payer": 1000}, [held, captured])
    commit(store, {"payer": 900, "payee": 100}, [closed(captured, "captured", 100)])
    for i in range(60 if compact else 0):
        commit(store, {f"acc{i % 3}": i}, [])
    assert (store.stats().compactions > 0) == compact
    store.close()

    store = create_store(settings, background=run_now)
    try:
        assert store.read("b1", "payer").holds == (held,)
        assert store.hold(captured["id"])["state"] == "captured"
        with pytest.raises(HoldConflict, match="closed already"):
            commit(store, {"payer": 900}, [closed(captured, "released")])
    finally:
        store.close()

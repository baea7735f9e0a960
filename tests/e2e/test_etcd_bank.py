"""The bank on an etcd cluster: two real data-server processes serve one bank, and the checker finds it exact."""
from client.check import BankCheck
from tests.e2e.conftest import System, business_server_env, data_server_env


def test_two_data_servers_on_a_three_member_cluster_keep_the_bank_exact(servers, etcd_cluster, tmp_path):
    etcd = {"DATA_STORE": "etcd", "ETCD_ENDPOINTS": ",".join(etcd_cluster.endpoints), "ETCD_PREFIX": "e2e-bank/"}
    data = [servers(f"data{i}", "data/gunicorn.conf.py", data_server_env("", **etcd), tmp_path).start()
            for i in (1, 2)]
    businesses = [servers(f"business{i}", "business/gunicorn.conf.py",
                          business_server_env(f"b{i}", data[i % 2].url), tmp_path).start() for i in (1, 2, 3)]
    system = System(data[0], businesses)
    report = BankCheck(system.apis(), workers=16, accounts=3, operations=600, seed=21).run()
    assert report.violations == []
    assert sum(1 for event in report.events if event.outcome == "ok") > 300

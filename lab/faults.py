"""The nemesis: each fault acts on the running lab and says how to heal it; the schedules list them in order."""
import signal
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable        # inject(lab) -> (what was done, in words; heal()), heal() undoing it
    on_statements: bool = False     # it acts on the statement store: the lab runs one


def isolate_the_leader(lab):
    member = lab.cluster.leader()
    lab.network.isolate(lab.member_host(member))
    return f"the etcd leader {member} cut off from every host", lab.network.heal


def split_the_members_one_and_two(lab):
    """The leader with data1 on one side, the other two members with data2 on the other."""
    member = lab.cluster.leader()
    alone = lab.member_host(member)
    lab.network.cut([alone, "data1"], [lab.member_host(m) for m in lab.cluster.names if m != member] + ["data2"])
    return f"{member} and data1 | the other two members and data2", lab.network.heal


def cut_a_data_server_off_from_etcd(lab):
    lab.network.cut(["data1"], [lab.member_host(m) for m in lab.cluster.names])
    return "data1 cut off from every etcd member, still reachable by the business servers", lab.network.heal


def cut_a_business_server_off_from_the_data_tier(lab):
    lab.network.cut(["business1"], ["data1", "data2"])
    return "business1 cut off from both data servers, still reachable by the client", lab.network.heal


def bridge_the_members(lab):
    """Jepsen's bridge: the leader and a follower cannot see each other; both see the third member."""
    leader = lab.cluster.leader()
    follower, middle = [m for m in lab.cluster.names if m != leader]
    lab.network.cut([lab.member_host(leader)], [lab.member_host(follower)])
    return f"{leader} and {follower} cut off from each other, both see {middle}", lab.network.heal


def kill_the_leader_while_a_data_server_is_cut_off_from_it(lab):
    member = lab.cluster.leader()
    lab.network.cut(["data1"], [lab.member_host(member)])
    lab.cluster.kill(member)

    def heal():
        lab.network.heal()
        lab.cluster.start_member(member)
        lab.cluster.wait_healthy(names=[member])

    return f"data1 cut off from the leader {member}, then {member} killed (-9); healed by its restart", heal


def pause_a_partitioned_business_server_past_its_lease(lab):
    """business2 paused and cut off past LOCK_TTL while others write; with it on its host, a stale holder: it took
    a lease on one of the check's accounts just before, and writes under it once healed, which must be refused."""
    stale = lab.stale_holder("business2", lab.accounts[0])
    lab.business["business2"].signal(signal.SIGSTOP)
    lab.network.isolate("business2")

    def heal():
        lab.network.heal()
        lab.business["business2"].signal(signal.SIGCONT)
        # Granted late (it may have waited in the account's line), its lease may still be live: wait till it runs out.
        if not lab.lease_gone(stale.account, stale.token):
            stale.process.kill()
            raise RuntimeError(f"the stale holder's lease on {stale.account} never ran out")
        lab.late_writes.append(stale.write_late())

    return ("business2 paused (SIGSTOP) and cut off from every host past its LOCK_TTL, a stale holder on its host "
            f"holding a lease on {lab.accounts[0]}; then healed, resumed, and the stale holder's late write sent"), heal


def cut_the_statement_stores_primary_off(lab):
    """The PostgreSQL primary cut off from every host: the relay cannot reach it, Patroni on it cannot reach etcd.
    The bank's writes never wait for the statement store: they go on, the backlog growing in etcd meanwhile."""
    primary = lab.statements.primary()
    lab.network.isolate(primary)
    return f"the statement store's primary {primary} cut off from every host", lab.network.heal


SCHEDULES = {
    "full": [Fault("leader isolated", isolate_the_leader),
             Fault("members split 1 / 2", split_the_members_one_and_two),
             Fault("data server cut off from etcd", cut_a_data_server_off_from_etcd),
             Fault("business server cut off from data", cut_a_business_server_off_from_the_data_tier),
             Fault("members bridged", bridge_the_members),
             Fault("leader killed, data server cut off from it",
                   kill_the_leader_while_a_data_server_is_cut_off_from_it),
             Fault("business server paused and partitioned", pause_a_partitioned_business_server_past_its_lease),
             Fault("statement store's primary cut off", cut_the_statement_stores_primary_off, on_statements=True)],
    "short": [Fault("leader isolated", isolate_the_leader),
              Fault("data server cut off from etcd", cut_a_data_server_off_from_etcd),
              Fault("business server paused and partitioned", pause_a_partitioned_business_server_past_its_lease)],
}

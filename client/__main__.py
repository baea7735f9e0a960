"""python -m client tour | check | demo | history | accounts | open | holds — exercise and verify the running bank,
print a statement or the client's own accounts, open an account, or place, capture, release and list holds."""
import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from client.answers import failed
from client.check import BankCheck
from client.clients import DEFAULT_ADVERSARY, CheckClients
from client.holds_command import add_holds_command, run_holds
from client.infra.bank_api import STORE_HOLDS_ALL, BankApi, wait_for_statement_store, wait_until_healthy
from client.tour import Tour
from shared.settings import client_tokens_by_name, exit_on_settings_error, load_client_settings


class Verdict(NamedTuple):
    passed: bool
    line: str                   # one line that says what was checked and whether it passed


def main(argv=None):
    settings = exit_on_settings_error(load_client_settings)
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__)
    parser.add_argument("--urls", default=",".join(settings.business_urls),
                        help="business server URLs, comma separated (BUSINESS_URLS)")
    parser.add_argument("--token", default=settings.token, help="client bearer token (CLIENT_TOKEN)")
    parser.add_argument("--clients", default=None,
                        help="for tour, check and demo: the clients they run as, name:token pairs (CLIENT_TOKENS)")
    parser.add_argument("--adversary", default=DEFAULT_ADVERSARY, help="which of --clients tries to steal")
    parser.add_argument("--operator-token", default=settings.operator_token,
                        help="for tour, check and demo: an operator's token, to read every statement (OPERATOR_TOKEN)")
    parser.add_argument("--timeout", type=float, default=settings.timeout, help="seconds per request")
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for every server's /health first")
    parser.add_argument("--verdict", default=None, help="file to write the one-line verdict to as well")
    parser.add_argument("--also-wait-for", default="", help="other servers' URLs (data servers, say), comma "
                                                            "separated, whose /health --wait waits for too")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("tour", help="exercise every feature, one PASS/FAIL line each")
    statement = commands.add_parser("history", help="print an account's statement, newest first")
    statement.add_argument("account", help="the account id")
    statement.add_argument("--limit", type=_at_least(1), default=20, help="entries to print (1 to 100)")
    statement.add_argument("--cursor", default=None, help="the next page's cursor that an earlier page printed")
    listing = commands.add_parser("accounts", help="print the client's own accounts and their balances")
    listing.add_argument("--limit", type=_at_least(1), default=20, help="accounts to print (1 to 100)")
    listing.add_argument("--cursor", default=None, help="the next page's cursor that an earlier page printed")
    opening = commands.add_parser("open", help="open an account of the client's, with a zero balance")
    opening.add_argument("account", help="the account id")
    add_holds_command(commands)
    for name, workers, accounts, operations in (("check", 16, 5, 2000), ("demo", 8, 4, 400)):
        command = commands.add_parser(name, help="concurrent bank workload and checker" if name == "check"
                                      else "the tour, then a short check")
        command.add_argument("--workers", type=_at_least(1), default=workers, help="concurrent client threads")
        command.add_argument("--accounts", type=_at_least(2, "so that transfers have a target"), default=accounts,
                             help="accounts to spread over")
        command.add_argument("--operations", type=_at_least(1), default=operations, help="operations to send")
        command.add_argument("--duration", type=float, default=None, help="seconds to run instead of a count")
        command.add_argument("--seed", type=int, default=None, help="seed of the random workload")
    args = parser.parse_args(argv)

    apis = [BankApi(url.strip(), args.token, args.timeout, settings.tls_ca) for url in args.urls.split(",")
            if url.strip()]
    if args.wait:
        others = [BankApi(url.strip(), "", args.timeout, settings.tls_ca) for url in args.also_wait_for.split(",")
                  if url.strip()]
        missing = wait_until_healthy(apis + others, args.wait)
        if missing:
            print(f"client: no answer from {', '.join(missing)} within {args.wait:.0f} s", file=sys.stderr)
            return 2
    if args.command == "history":
        return print_statement(apis[0], args.account, args.limit, args.cursor)
    if args.command == "accounts":
        return print_accounts(apis[0], args.limit, args.cursor)
    if args.command == "open":
        return open_account(apis[0], args.account)
    if args.command == "holds":
        return run_holds(apis[0], args)
    try:
        named = settings.client_tokens if args.clients is None else client_tokens_by_name(args.clients, "--clients")
        clients = CheckClients.from_tokens(named, args.operator_token, args.adversary)
    except ValueError as error:
        print(f"client: {error}", file=sys.stderr)
        return 2
    tour = report = None
    if args.command in ("tour", "demo"):
        tour = Tour(apis, clients, sys.stdout)
        tour.run()
    if args.command in ("check", "demo"):
        report = BankCheck(apis, clients, args.workers, args.accounts, args.operations, args.duration,
                           args.seed).run()
    passed, line = verdict(args.command, tour, report)
    if args.command == "demo" and args.also_wait_for:
        # On the cluster shape, the demo's history has left etcd for the statement store.
        relayed = wait_for_statement_store(BankApi(args.also_wait_for.split(",")[0].strip(), "", args.timeout,
                                                   settings.tls_ca))
        if relayed is not None:
            print(relayed, flush=True)
            passed, line = (passed, line) if relayed.startswith(STORE_HOLDS_ALL) else (False, f"demo FAILED: {relayed}")
    print(line, flush=True)
    if args.verdict:
        Path(args.verdict).parent.mkdir(parents=True, exist_ok=True)
        Path(args.verdict).write_text(line + "\n")
    return 0 if passed else 1


def print_statement(api, account, limit, cursor):
    """Print a page of account's statement; 0 if the bank gave it, 1 with its error if not."""
    reply = api.history(account, limit, cursor)
    if reply.status != 200:
        return failed(reply)
    print(f"statement of {account}, newest first")
    print(f"{'seq':>6}  {'at (UTC)':<24}  {'kind':<12}  {'amount':>14}  {'balance':>14}  {'counterparty':<14}  key")
    for entry in reply.body["entries"]:
        print(f"{entry['seq']:>6}  {entry['at']:<24}  {entry['kind']:<12}  {entry['amount']:>14}  "
              f"{entry['balance']:>14}  {entry['counterparty'] or '':<14}  {entry['idempotency_key'] or ''}")
    if not reply.body["entries"]:
        print("(no entries)")
    if reply.body["next_cursor"]:
        print(f"older entries: python -m client history {account} --limit {limit} --cursor {reply.body['next_cursor']}")
    return 0


def print_accounts(api, limit, cursor):
    """Print a page of the client's own accounts; 0 if the bank gave it, 1 with its error if not."""
    reply = api.accounts(limit, cursor)
    if reply.status != 200:
        return failed(reply)
    print(f"{'account':<64}  {'balance':>14}")
    for listed in reply.body["accounts"]:
        print(f"{listed['account']:<64}  {listed['balance']:>14}")
    if not reply.body["accounts"]:
        print("(no accounts)")
    if reply.body["next_cursor"]:
        print(f"more: python -m client accounts --limit {limit} --cursor {reply.body['next_cursor']}")
    return 0


def open_account(api, account):
    """Open account for the client; 0 if the bank opened it, 1 with its error if not."""
    reply = api.open(account)
    if reply.status != 201:
        return failed(reply)
    print(f"opened {reply.body['account']} for {reply.body['owner']}: balance {reply.body['balance']}")
    return 0


def verdict(command, tour, report):
    """The Verdict of what the tour and the check found, in a few words."""
    found = []
    if tour is not None:
        found.append(f"{tour.checks} features" if not tour.failures else f"{tour.failures} of {tour.checks} "
                                                                        "features FAILED")
    if report is not None:
        found.append(f"{len(report.events)} operations checked")
        found.append(f"{len(report.violations)} VIOLATIONS" if report.violations else "no violation")
    passed = not (tour and tour.failures) and not (report and report.violations)
    return Verdict(passed, f"{command} {'passed' if passed else 'FAILED'}: {', '.join(found)}")


def _at_least(minimum, why=""):
    """An argparse type: a whole number no smaller than minimum."""
    def whole_number(text):
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}" + (f", {why}" if why else ""))
        return value
    return whole_number


if __name__ == "__main__":
    sys.exit(main())

"""python -m client tour | check | demo | history — exercise and verify the running bank, or print a statement."""
import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from client.check import BankCheck
from client.infra.bank_api import BankApi, wait_until_healthy
from client.tour import Tour
from shared.settings import exit_on_settings_error, load_client_settings


class Verdict(NamedTuple):
    passed: bool
    line: str                   # one line that says what was checked and whether it passed


def main(argv=None):
    settings = exit_on_settings_error(load_client_settings)
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__)
    parser.add_argument("--urls", default=",".join(settings.business_urls),
                        help="business server URLs, comma separated (BUSINESS_URLS)")
    parser.add_argument("--token", default=settings.token, help="client bearer token (CLIENT_TOKEN)")
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
    tour = report = None
    if args.command in ("tour", "demo"):
        tour = Tour(apis, sys.stdout)
        tour.run()
    if args.command in ("check", "demo"):
        report = BankCheck(apis, args.workers, args.accounts, args.operations, args.duration, args.seed).run()
    passed, line = verdict(args.command, tour, report)
    print(line, flush=True)
    if args.verdict:
        Path(args.verdict).parent.mkdir(parents=True, exist_ok=True)
        Path(args.verdict).write_text(line + "\n")
    return 0 if passed else 1


def print_statement(api, account, limit, cursor):
    """Print a page of account's statement; 0 if the bank gave it, 1 with its error if not."""
    reply = api.history(account, limit, cursor)
    if reply.status != 200:
        print(f"client: {reply.status or 'no answer'} {reply.error}: {reply.body.get('message', '')}", file=sys.stderr)
        return 1
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

"""python -m client holds: place, capture, release, show and list holds, as the client whose token it sends."""
from client.answers import failed


def add_holds_command(commands):
    """The `holds` subcommand and its actions, on an argparse subparsers object."""
    holds = commands.add_parser("holds", help="place, capture, release, show or list holds")
    actions = holds.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="an account's held holds, soonest expiring first")
    listing.add_argument("account")
    place = actions.add_parser("place", help="set an amount of ORIGIN aside for TARGET")
    place.add_argument("origin")
    place.add_argument("target")
    place.add_argument("amount", help='a decimal such as "25.00"')
    place.add_argument("--expires-in", type=int, default=None, help="seconds until the bank releases it itself")
    capture = actions.add_parser("capture", help="move a hold's amount (or AMOUNT of it) to its target")
    capture.add_argument("hold")
    capture.add_argument("amount", nargs="?", default=None)
    for name, text in (("release", "give a hold's amount back to its origin"), ("show", "a hold and its state")):
        actions.add_parser(name, help=text).add_argument("hold")


def run_holds(api, args):
    """Do what the holds command asks and print it; 0 if the bank did it, 1 with its error if not."""
    if args.action == "list":
        reply = api.holds(args.account)
        if reply.status != 200:
            return failed(reply)
        print(f"held holds of {args.account}, soonest expiring first")
        for hold in reply.body["holds"]:
            _print_hold(hold)
        if not reply.body["holds"]:
            print("(none held)")
        return 0
    if args.action == "place":
        reply = api.place_hold(args.origin, args.target, args.amount, args.expires_in)
    elif args.action == "capture":
        reply = api.capture(args.hold, args.amount)
    elif args.action == "release":
        reply = api.release(args.hold)
    else:
        reply = api.hold(args.hold)
    if reply.status not in (200, 201):
        return failed(reply)
    _print_hold(reply.body)
    if "available" in reply.body:
        print(f"  {reply.body['origin']}: balance {reply.body['balance']}, available {reply.body['available']}")
    return 0


def _print_hold(hold):
    captured = f" (captured {hold['captured']})" if "captured" in hold else ""
    closed = f", closed {hold['closed_at']}" if hold.get("closed_at") else ""
    print(f"{hold['id']}  {hold['origin']} -> {hold['target']}  {hold['amount']}  {hold['state']}{captured}  "
          f"expires {hold['expires_at']}{closed}")

"""What the client's one-shot commands print of the bank's refusal."""
import sys


def failed(reply):
    """Print the bank's refusal (or that none answered) to stderr; the command's exit status, 1."""
    print(f"client: {reply.status or 'no answer'} {reply.error}: {reply.body.get('message', '')}", file=sys.stderr)
    return 1

"""Whom the check runs as: clients who own accounts and pay into each other's, an adversary who tries to take or
read what is not its own, and an operator who reads every statement as recorded."""
from typing import NamedTuple

DEFAULT_ADVERSARY = "mallory"


class CheckClients(NamedTuple):
    clients: dict               # name -> bearer token: at least two, each owning some of the check's accounts
    adversary: tuple            # (name, bearer token) of a client that owns one account and tries the others'
    operator: str               # an operator's bearer token

    @classmethod
    def from_tokens(cls, client_tokens, operator_token, adversary=DEFAULT_ADVERSARY):
        """From {name: token} (CLIENT_TOKENS) and an operator's token; ValueError says what is missing."""
        if adversary not in client_tokens:
            raise ValueError(f"the check's adversary {adversary!r} is not one of the clients "
                             f"({', '.join(client_tokens) or 'none'}: CLIENT_TOKENS)")
        clients = {name: token for name, token in client_tokens.items() if name != adversary}
        if len(clients) < 2:
            raise ValueError("the check needs two clients besides the adversary, to pay into each other's accounts")
        if not operator_token:
            raise ValueError("the check needs an operator's token (OPERATOR_TOKEN) to read every statement")
        return cls(clients, (adversary, client_tokens[adversary]), operator_token)

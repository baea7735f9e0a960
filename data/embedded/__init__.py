"""The embedded store: the bank in one data server's memory, made durable by its journal and history file."""

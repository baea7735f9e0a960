"""The data server: balances in memory, leased and fenced locks, a durable journal."""

"""The benchmark's chart: throughput and p99 latency against concurrent clients, one line per phase, and dashed
the PostgreSQL peer's."""

CLIENTS = (1, 8, 32, 128)


def chart(operations, path, peer=()):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
    lines = [(mode, [r for r in operations if r["mode"] == mode], "-")
             for mode in ("baseline", "deposit", "hot", "transfer", "balance")]
    lines += [(f"peer {mode}", [r for r in peer if r["mode"] == mode], "--") for mode in ("deposit", "hot", "transfer")]
    for label, rows, style in lines:
        if not rows:
            continue
        clients = [r["clients"] for r in rows]
        throughput.plot(clients, [r["ops_per_s"] for r in rows], style, marker="o", label=label)
        latency.plot(clients, [r["p99_ms"] for r in rows], style, marker="o", label=label)
    for axes, title, unit in ((throughput, "Throughput", "operations per second"), (latency, "p99 latency", "ms")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
        axes.set_xlabel("concurrent clients")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)

"""The benchmark's chart: throughput and p99 latency against concurrent clients, one line per phase."""

CLIENTS = (1, 8, 32, 128)


def chart(operations, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode in ("baseline", "deposit", "hot", "transfer", "balance"):
        rows = [r for r in operations if r["mode"] == mode]
        clients = [r["clients"] for r in rows]
        throughput.plot(clients, [r["ops_per_s"] for r in rows], marker="o", label=mode)
        latency.plot(clients, [r["p99_ms"] for r in rows], marker="o", label=mode)
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

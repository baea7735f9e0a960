"""py-spy on a running server while a load runs: where its Python CPU goes (samples of the thread that holds the
GIL), by function, own time and with callees."""
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PY_SPY = str(Path(sys.executable).with_name("py-spy"))
# Frames of this project's own code (a profile's rows worth reading), by the file they are in.
OWN_CODE = ("data/", "business/", "shared/")


def profile_while(pids, seconds, load):
    """Sample pids with py-spy for `seconds` while load() runs; load's result and the profile's summary."""
    with tempfile.TemporaryDirectory(prefix="bank-profile-") as folder:
        outputs = [Path(folder) / f"{pid}.txt" for pid in pids]
        samplers = [subprocess.Popen([PY_SPY, "record", "--pid", str(pid), "--duration", str(seconds), "--rate",
                                      "200", "--gil", "--format", "raw", "--output", str(output), "--nonblocking"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    for pid, output in zip(pids, outputs)]
        try:
            result = load()
        finally:
            for sampler in samplers:
                sampler.wait(seconds + 30)
        stacks = [line for output in outputs if output.exists() for line in output.read_text().splitlines()]
    return result, summarise(stacks)


def summarise(raw_lines, most=12):
    """Raw py-spy stacks ("frame;frame;… count") as the functions with the largest shares of all samples:
    {"own": [(function, share)], "inclusive": [(function, share)]}, inclusive counting only this project's code."""
    own, inclusive, total = collections.Counter(), collections.Counter(), 0
    for line in raw_lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames, samples = stack.split(";"), int(count)
        total += samples
        own[_function(frames[-1])] += samples
        for function in {_function(frame) for frame in frames if any(part in frame for part in OWN_CODE)}:
            inclusive[function] += samples
    total = max(total, 1)
    return {"samples": total,
            "own": [(name, n / total) for name, n in own.most_common(most)],
            "inclusive": [(name, n / total) for name, n in inclusive.most_common(most)]}


def _function(frame):
    """"name (path/to/file.py:12)" as "name (file.py)", the line left out so that a function counts once."""
    name, _, where = frame.partition(" (")
    return f"{name} ({os.path.basename(where.rsplit(':', 1)[0])})" if where else name

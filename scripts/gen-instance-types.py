#!/usr/bin/env python3
"""Generate Kiln's instance-type catalog, crates/kiln-types/src/instance_types.tsv.

The source is moto's dump of EC2's DescribeInstanceTypes
(moto/ec2/resources/instance_types.json.gz, one record per instance type, current and
previous generation). moto is used for its data only; no moto code is copied.

    scripts/gen-instance-types.py [DUMP] [--out FILE] [--check]

DUMP defaults to the copy in the project's venv (.venv/lib/python3*/site-packages/moto/...),
then to the installed moto package. --check compares instead of writing and exits 1 when
the checked-in file is stale.

The output has one line per type, tab-separated, sorted by family then size (nano, micro,
small, medium, large, xlarge, 2xlarge, 3xlarge, ... by number, then metal, metal-12xl,
metal-24xl, ...), after two `#` comment lines saying where it came from and the columns.
Absent values (no published clock speed, no hypervisor on bare metal) are `-`; booleans are
`true`/`false`; lists are comma-separated.

Skipped: the mac* types (mac1.metal, mac2*.metal, mac-m4*.metal ...), whose architectures
(`x86_64_mac`, `arm64_mac`) Kiln cannot represent. Every other type is kept. Anything else
the dump holds that Kiln cannot represent (an unknown architecture, size, hypervisor ...)
stops the script with a message rather than being dropped silently.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "crates", "kiln-types", "src", "instance_types.tsv")
DUMP_IN_PACKAGE = os.path.join("moto", "ec2", "resources", "instance_types.json.gz")

COLUMNS = [
    "name",
    "vcpus",
    "cores",
    "threads_per_core",
    "memory_mib",
    "architectures",
    "clock_ghz",
    "network_performance",
    "max_network_interfaces",
    "ipv4_per_interface",
    "ipv6_per_interface",
    "ebs_optimized",
    "hypervisor",
    "burstable",
    "free_tier_eligible",
    "boot_modes",
    "current_generation",
    "instance_storage_gb",
]

ARCHITECTURES = ["i386", "x86_64", "arm64"]  # kiln_types::Architecture, in its order
MAC_ARCHITECTURES = {"x86_64_mac", "arm64_mac"}
BOOT_MODES = ["legacy-bios", "uefi"]
EBS_OPTIMIZED = {"unsupported", "supported", "default"}
HYPERVISORS = {"xen", "nitro"}
SMALL_SIZES = ["nano", "micro", "small", "medium", "large", "xlarge"]


def fail(msg: str) -> None:
    sys.exit(f"gen-instance-types: {msg}")


def size_key(name: str, size: str) -> tuple[int, int]:
    """EC2's size order: nano ... xlarge, then Nxlarge by N, then the metal variants."""
    if size in SMALL_SIZES:
        return (0, SMALL_SIZES.index(size))
    m = re.fullmatch(r"([1-9][0-9]*)xlarge", size)
    if m:
        return (0, len(SMALL_SIZES) - 1 + int(m.group(1)))
    if size == "metal":
        return (1, 0)
    m = re.fullmatch(r"metal-([1-9][0-9]*)xl", size)
    if m:
        return (1, int(m.group(1)))
    fail(f"{name}: unknown size {size!r}: teach size_key (and the Rust sort test) about it")
    raise AssertionError  # unreachable


def find_dump() -> str:
    found = sorted(glob.glob(os.path.join(REPO, ".venv", "lib", "python3*", "site-packages", DUMP_IN_PACKAGE)))
    if found:
        return found[-1]
    try:
        import moto  # type: ignore
    except ImportError:
        fail("no moto in .venv nor installed; pass the path of instance_types.json.gz")
    return os.path.join(os.path.dirname(os.path.dirname(moto.__file__)), DUMP_IN_PACKAGE)


def moto_version(dump: str) -> str:
    """moto's version from the dist-info beside the package, if the dump is inside one."""
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(dump))))
    if os.path.basename(package) == "moto":
        infos = glob.glob(os.path.join(os.path.dirname(package), "moto-*.dist-info"))
        if len(infos) == 1:
            return "moto " + os.path.basename(infos[0])[len("moto-") : -len(".dist-info")]
    return "moto"


def text(name: str, what: str, v) -> str:
    if not isinstance(v, str) or not v or any(c in v for c in "\t\r\n") or v.strip() != v or v == "-":
        fail(f"{name}: {what} {v!r} cannot be written in a TSV cell")
    return v


def count(name: str, what: str, v) -> str:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        fail(f"{name}: {what} {v!r} is not a count")
    return str(v)


def flag(name: str, what: str, v) -> str:
    if not isinstance(v, bool):
        fail(f"{name}: {what} {v!r} is not a boolean")
    return "true" if v else "false"


def row(t: dict) -> list[str]:
    name = text("?", "InstanceType", t.get("InstanceType"))
    if not re.fullmatch(r"[a-z0-9-]+\.[a-z0-9-]+", name):
        fail(f"{name}: not shaped family.size")
    try:
        vcpu = t["VCpuInfo"]
        proc = t["ProcessorInfo"]
        net = t["NetworkInfo"]
        vcpus, cores, threads = vcpu["DefaultVCpus"], vcpu["DefaultCores"], vcpu["DefaultThreadsPerCore"]
        if vcpus != cores * threads:
            fail(f"{name}: {vcpus} vCPUs != {cores} cores x {threads} threads")

        archs = proc["SupportedArchitectures"]
        unknown = [a for a in archs if a not in ARCHITECTURES]
        if unknown or not archs or len(set(archs)) != len(archs):
            fail(f"{name}: architectures {archs!r} are not Kiln's")
        archs = [a for a in ARCHITECTURES if a in archs]

        clock = proc.get("SustainedClockSpeedInGhz")
        if clock is not None and not (isinstance(clock, (int, float)) and 0 < clock < 100):
            fail(f"{name}: sustained clock speed {clock!r}")

        ipv4, ipv6 = net["Ipv4AddressesPerInterface"], net["Ipv6AddressesPerInterface"]
        if net["Ipv6Supported"] != (ipv6 > 0):
            fail(f"{name}: Ipv6Supported {net['Ipv6Supported']} but {ipv6} IPv6 addresses per interface")

        ebs = t["EbsInfo"]["EbsOptimizedSupport"]
        if ebs not in EBS_OPTIMIZED:
            fail(f"{name}: EbsOptimizedSupport {ebs!r}")

        # Bare-metal types have no hypervisor; DescribeInstanceTypes omits the field.
        hypervisor = t.get("Hypervisor")
        if hypervisor is not None and hypervisor not in HYPERVISORS:
            fail(f"{name}: hypervisor {hypervisor!r}")
        if t["BareMetal"] != (hypervisor is None):
            fail(f"{name}: BareMetal {t['BareMetal']} with hypervisor {hypervisor!r}")

        boot = t["SupportedBootModes"]
        if not boot or any(b not in BOOT_MODES for b in boot) or len(set(boot)) != len(boot):
            fail(f"{name}: boot modes {boot!r}")
        boot = [b for b in BOOT_MODES if b in boot]

        storage = t.get("InstanceStorageInfo", {}).get("TotalSizeInGB", 0)
        if t["InstanceStorageSupported"] != (storage > 0):
            fail(f"{name}: InstanceStorageSupported {t['InstanceStorageSupported']} with {storage} GB")

        return [
            name,
            count(name, "vCPUs", vcpus),
            count(name, "cores", cores),
            count(name, "threads per core", threads),
            count(name, "memory", t["MemoryInfo"]["SizeInMiB"]),
            ",".join(archs),
            "-" if clock is None else repr(float(clock)),
            text(name, "network performance", net["NetworkPerformance"]),
            count(name, "network interfaces", net["MaximumNetworkInterfaces"]),
            count(name, "IPv4 addresses per interface", ipv4),
            count(name, "IPv6 addresses per interface", ipv6),
            ebs,
            hypervisor or "-",
            flag(name, "BurstablePerformanceSupported", t["BurstablePerformanceSupported"]),
            flag(name, "FreeTierEligible", t["FreeTierEligible"]),
            ",".join(boot),
            flag(name, "CurrentGeneration", t["CurrentGeneration"]),
            count(name, "instance storage", storage),
        ]
    except KeyError as e:
        fail(f"{name}: no {e.args[0]} in the dump")
        raise AssertionError  # unreachable


def generate(dump: str) -> tuple[str, list[str]]:
    with gzip.open(dump, "rt", encoding="utf-8") as f:
        data = json.load(f)
    records = list(data.values()) if isinstance(data, dict) else data
    rows, skipped = [], []
    for t in records:
        archs = t.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
        if any(a in MAC_ARCHITECTURES for a in archs):
            skipped.append(t["InstanceType"])
            continue
        rows.append(row(t))
    names = [r[0] for r in rows]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        fail(f"duplicate types {dupes}")

    def key(r: list[str]) -> tuple[str, tuple[int, int]]:
        family, size = r[0].split(".")
        return (family, size_key(r[0], size))

    rows.sort(key=key)
    header = [
        f"# Kiln's instance-type catalog: {len(rows)} types from {moto_version(dump)}'s dump of EC2 "
        "DescribeInstanceTypes (ec2/resources/instance_types.json.gz), written by "
        "scripts/gen-instance-types.py; do not edit by hand. mac* types left out (architectures "
        "x86_64_mac/arm64_mac). '-' = absent; lists comma-separated.",
        "# " + "\t".join(COLUMNS),
    ]
    body = "\n".join(header + ["\t".join(r) for r in rows]) + "\n"
    return body, sorted(skipped)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump", nargs="?", help="instance_types.json.gz (default: moto's, from .venv)")
    ap.add_argument("--out", default=OUT, help="the TSV to write (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="exit 1 if --out differs instead of writing it")
    args = ap.parse_args()

    dump = args.dump or find_dump()
    if not os.path.isfile(dump):
        fail(f"no dump at {dump}")
    body, skipped = generate(dump)
    n = body.count("\n") - 2
    if args.check:
        try:
            with open(args.out, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != body:
            sys.exit(f"{args.out} is stale: run scripts/gen-instance-types.py")
        print(f"{args.out}: up to date ({n} types)", file=sys.stderr)
        return
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(body)
    print(f"wrote {n} types to {args.out} from {dump}", file=sys.stderr)
    print(f"skipped {len(skipped)} mac types: {' '.join(skipped)}", file=sys.stderr)


if __name__ == "__main__":
    main()

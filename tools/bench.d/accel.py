# SPDX-License-Identifier: LGPL-2.1-or-later
"""The accelerator of a tools/bench run, decided once: ferry-vm
--probe-accel times a tiny guest loop on KVM against the same loop run
natively and prints one line (FERRY_ACCEL=none|kvm overrides its verdict
and is named on the line). ferry-vm then gets --accel <use>; QEMU gets
-accel kvm only where use=kvm, TCG otherwise."""

import re
import subprocess


def _fields(line):
    out = {k: v.strip('"') for k, v in
           re.findall(r'(\w+)=("[^"]*"|\S+)', line)}
    out["verdict"] = line.split()[0] if line.split() else ""
    return out


def probe(vm):
    """{line, verdict, use, qemu, found, ferry_why, qemu_why}: the probe's
    line and fields, QEMU's accelerator, what the probe found and each
    engine's choice with it, in words; raises
    RuntimeError when the probe fails or says something unexpected."""
    try:
        r = subprocess.run([vm, "--probe-accel"], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"{vm} --probe-accel: {e}") from e
    line = r.stdout.strip().splitlines()[0] if r.stdout.strip() else ""
    f = _fields(line)
    if r.returncode != 0 or f.get("use") not in ("kvm", "none"):
        raise RuntimeError(f"ferry-vm --probe-accel (exit {r.returncode}) "
                           f"said: {line or r.stderr.strip()[:200]}")
    v, use = f["verdict"], f["use"]
    if v == "kvm":
        found = (f"KVM runs guest code at native speed here "
                 f"({f.get('kvm_mips')} M instr/s against "
                 f"{f.get('host_mips')} on the host)")
    elif v == "kvm-emulated":
        found = (f"KVM here emulates guest code ({f.get('kvm_mips')} M "
                 f"instr/s against {f.get('host_mips')} on the host)")
    else:
        found = f"no usable KVM here ({f.get('reason', 'no /dev/kvm')})"
    if "forced" in f:
        found = f"FERRY_ACCEL={use} overrides the probe; {found}"
    qemu = "kvm" if use == "kvm" else "tcg"
    how = ("the guest on KVM" if use == "kvm" else
           "the guest as native threads over the same RAM")
    return dict(line=line, verdict=v, use=use, qemu=qemu, found=found,
                ferry_why=f"--accel {use}, {how} ({found})",
                qemu_why=f"-accel {qemu} ({found})")

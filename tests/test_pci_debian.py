"""Debian's own kernel on `--virtio pci`: what Linux does with the PCIe host
bridge and the virtio-pci devices, and what the guest then gets from them.

One chrono session of `chrono run debian --virtio pci --net user` (the disk
is the guest's own): pci-host-generic enumerates bus 0 and assigns the BARs,
virtio-pci binds the disk (/dev/vda, written and read back past the page
cache), the network (10.0.2.15 by DHCP, a download from the host) and the
entropy device, each interrupting through its INTx line (PLIC 33..35).  A
savevm there, a change, a loadvm: the guest is back as it was and works on;
`chrono run --from` brings the same snapshot up in a new process.  QEMU
booting the same files with `-device virtio-*-pci` shows the same devices in
/sys.  A recording of such a session replays exactly, with the JIT and with
the interpreter.

Marked `network` (the guest comes from the shared test cache, as in
test_net_debian.py).
"""
from __future__ import annotations

import re
import shutil

import pytest

from nethelp import LiveChrono
from test_guest_debian import debian, xdg_cache  # noqa: F401 - fixtures
from test_net_debian import site  # noqa: F401 - fixture: a file of random bytes on http.server
from tracehelp import chrono

pytestmark = pytest.mark.network

READY = "chrono-debian: shell ready"
LIST_PCI = ("for d in /sys/bus/pci/devices/*; do echo ${d##*/} $(cat $d/vendor $d/device "
            "$d/class) $(basename $(readlink $d/driver) 2>/dev/null); done")
# What QEMU shows for `-device virtio-blk-pci -device virtio-net-pci -device
# virtio-rng-pci` (non-transitional: disable-legacy=on) on its virt machine.
EXPECTED_PCI = [
    "0000:00:00.0 0x1b36 0x0008 0x060000",
    "0000:00:01.0 0x1af4 0x1042 0x010000 virtio-pci",
    "0000:00:02.0 0x1af4 0x1041 0x020000 virtio-pci",
    "0000:00:03.0 0x1af4 0x1044 0x00ff00 virtio-pci",
]
DISK_ROUND_TRIP = ("dd if=/dev/urandom of=/mnt/pci.bin bs=64k count=16 2>/dev/null && "
                   "sha256sum /mnt/pci.bin && sync && echo 3 > /proc/sys/vm/drop_caches && "
                   "sha256sum /mnt/pci.bin")


def _download(port: int) -> str:
    return f"rm -f /tmp/blob; wget -q -O /tmp/blob http://10.0.2.2:{port}/blob && sha256sum /tmp/blob"


@pytest.fixture(scope="module")
def session(debian, xdg_cache, site, tmp_path_factory):
    server, _ = site
    work = tmp_path_factory.mktemp("pci-session")
    live = LiveChrono(["run", "debian", "--virtio", "pci", "--net", "user",
                       "--store", work / "store"], cwd=work, env={"XDG_CACHE_HOME": str(xdg_cache)})
    try:
        live.wait_for(READY)
        result = {
            "boot": live.out,
            "pci": live.command(LIST_PCI),
            "vda": live.command("readlink /sys/block/vda"),
            "disk": live.command(DISK_ROUND_TRIP),
            "ifconfig": live.command("ifconfig eth0"),
            "download": live.command(_download(server.port)),
            "interrupts": live.command("cat /proc/interrupts"),
        }
        live.save_change_load("pci", "rm /mnt/pci.bin && echo later > /mnt/later.txt && sync")
        result["restored_disk"] = live.command("ls /mnt/later.txt; sha256sum /mnt/pci.bin")
        result["restored_download"] = live.command(_download(server.port))
        result["status"] = live.finish()
        result["stderr"] = live.err
    finally:
        live.kill()
    result["work"] = work
    return result


def _sums(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line.endswith("/mnt/pci.bin")]


def test_linux_enumerates_bus_0_and_binds_virtio_pci_to_each_device(session):
    assert session["pci"].split("\n")[:4] == EXPECTED_PCI, session["pci"]
    assert "pci-host-generic 30000000.pci: ECAM at [mem 0x30000000-0x3fffffff] for [bus 00-ff]" \
        in session["boot"]
    # Linux sized and placed the BARs itself (no linux,pci-probe-only), in the 64-bit window.
    assigned = re.findall(r"pci 0000:00:0(\d)\.0: BAR 4 \[mem (0x[0-9a-f]+)-0x[0-9a-f]+ 64bit\]: "
                          r"assigned", session["boot"])
    assert [slot for slot, _ in assigned] == ["1", "2", "3"], session["boot"]
    assert all(0x4_0000_0000 <= int(base, 16) < 0x8_0000_0000 for _, base in assigned)


def test_the_disk_is_vda_on_pci_and_reads_back_what_was_written(session):
    assert "0000:00:01.0/virtio" in session["vda"] and session["vda"].strip().endswith("/block/vda")
    sums = _sums(session["disk"])
    assert len(sums) == 2 and sums[0] == sums[1], session["disk"]


def test_the_network_takes_10_0_2_15_by_dhcp_and_downloads_from_the_host(session, site):
    _, digest = site
    assert "lease of 10.0.2.15 obtained from 10.0.2.2" in session["boot"]
    assert "inet addr:10.0.2.15" in session["ifconfig"]
    assert session["download"].split() == [digest, "/tmp/blob"], session["download"]


def test_each_device_interrupts_on_its_swizzled_intx_line(session):
    """Slot S, INTA: PLIC source 32 + S (the device tree's interrupt-map)."""
    counts = {}
    for line in session["interrupts"].splitlines():
        m = re.match(r"\s*\d+:\s+(\d+)\s+SiFive PLIC\s+(\d+)\s", line)
        if m:
            counts[int(m.group(2))] = int(m.group(1))
    assert counts.get(33, 0) > 0 and counts.get(34, 0) > 0 and counts.get(35, 0) > 0, \
        session["interrupts"]
    assert "random: crng init done" in session["boot"]      # the entropy device answered


def test_after_loadvm_the_guest_is_as_saved_and_works_on(session, site):
    _, digest = site
    out = session["restored_disk"]
    assert "No such file" in out and _sums(out) == _sums(session["disk"])[:1], out
    assert session["restored_download"].split() == [digest, "/tmp/blob"]
    assert session["status"] == 0, session["stderr"]


def test_run_from_the_snapshot_in_a_new_process_keeps_the_pci_devices(session, site, xdg_cache):
    server, digest = site
    live = LiveChrono(["run", "--from", "pci", "--net", "user", "--store",
                       session["work"] / "store"], cwd=session["work"],
                      env={"XDG_CACHE_HOME": str(xdg_cache)})
    try:
        live.type("\n")
        listed = live.command(LIST_PCI)
        disk = live.command("sha256sum /mnt/pci.bin")
        download = live.command(_download(server.port))
        assert live.finish() == 0, live.err
    finally:
        live.kill()
    assert listed.split("\n")[:4] == EXPECTED_PCI
    assert _sums(disk) == _sums(session["disk"])[:1]
    assert download.split() == [digest, "/tmp/blob"]


def test_qemu_shows_the_same_devices_for_its_virtio_pci_devices(debian, tmp_path):
    """The outside reference: QEMU's virt with the same three devices on PCI."""
    from test_guest_debian import READY_MARKER, QemuConsole
    m = debian.manifest
    disk = tmp_path / "disk.img"
    shutil.copyfile(debian.path / m.disk, disk)
    qemu = QemuConsole(debian.path, m, disk, devices=[
        "-device", "virtio-blk-pci,drive=d0,disable-legacy=on",
        "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,disable-legacy=on,romfile=",
        "-device", "virtio-rng-pci,disable-legacy=on"])
    try:
        qemu.expect(READY_MARKER + "\n", timeout=600)
        qemu.expect("# ")
        listed = qemu.run(LIST_PCI)
        vda = qemu.run("readlink /sys/block/vda")
    finally:
        qemu.close()
    assert listed.strip().split("\n")[:4] == EXPECTED_PCI, listed
    assert "0000:00:01.0/virtio" in vda


# ---- record / replay ------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded(debian, xdg_cache, site, tmp_path_factory):
    server, digest = site
    work = tmp_path_factory.mktemp("pci-record")
    script = (f"{_download(server.port)}\n{DISK_ROUND_TRIP}\n{LIST_PCI}\npoweroff\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(xdg_cache))
        proc = chrono(work, "record", "debian", "--virtio", "pci", "--net", "user",
                      "--name", "pci", "--store", work / "store", script=script, timeout=900)
    return {"work": work, "proc": proc, "digest": digest}


def test_a_recording_with_pci_devices_saw_the_session(recorded):
    proc = recorded["proc"]
    assert proc.returncode == 0, proc.stderr
    assert f"{recorded['digest']}  /tmp/blob" in proc.stdout
    assert "0000:00:02.0 0x1af4 0x1041 0x020000 virtio-pci" in proc.stdout


@pytest.mark.parametrize("jit", ["1", "0"])
def test_it_replays_exactly_with_the_jit_and_with_the_interpreter(recorded, jit):
    """The replay checks every keyframe, digest and frame against the recording:
    the interpreter (CHRONO_JIT=0) agrees with the JIT that recorded it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHRONO_JIT", jit)
        proc = chrono(recorded["work"], "replay", "pci", "--store", recorded["work"] / "store",
                      timeout=1200)
    assert proc.returncode == 0, proc.stderr
    assert "replay of pci matched the recording" in proc.stderr
    assert f"{recorded['digest']}  /tmp/blob" in proc.stdout

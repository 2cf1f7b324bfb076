"""The full Debian guest (`chrono guest fetch debian-full`): Debian 13 with systemd on an
ext4 root disk, booted on chrono to root's autologin shell on the serial console.

The guest takes a long time to build (debootstrap's second stage runs inside chrono),
so these tests use one that is already built: the test cache's
($CHRONO_TEST_CACHE/xdg/chrono), else the user's (~/.cache/chrono); they skip, saying
how to build it, when there is none.  CHRONO_TEST_BUILD_FULL=1 builds it into the
test cache instead (marked network: it downloads about 60 MB of packages).

The boot is driven in-process through the library (chrono.guests.guestrun): a
systemd boot's getty flushes input typed before it starts, so commands are typed
only once the shell prompt is on the console.  The fast boot from the fetch's
`booted` snapshot goes through the CLI with a piped script, as a user would.
"""
import hashlib
import os
import re
import shutil
import subprocess
import time

import pytest

from chrono.core.launch import launch
from chrono.guests import fetch_guest
from chrono.guests.cache import cache_root, guests_dir
from chrono.guests.catalog import RECIPES
from chrono.guests.debian_full import NAME, READY_MARKER
from chrono.guests.guestrun import run_script
from chrono.guests.manifest import GuestManifest
from chrono.errors import ImageError
from test_guest_debian import xdg_cache  # noqa: F401 - fixture

pytestmark = pytest.mark.network

from chronocmd import CHRONO
BOOT_STEPS = 500_000_000_000


@pytest.fixture(scope="session")
def full_guest(xdg_cache):
    """(XDG cache root holding the guest, its folder, its manifest)."""
    test_root = xdg_cache / "chrono"
    if os.environ.get("CHRONO_TEST_BUILD_FULL") == "1":
        result = fetch_guest(NAME, root=test_root)
        return xdg_cache, result.path, result.manifest
    for xdg in (xdg_cache, cache_root().parent):
        folder = guests_dir(xdg / "chrono") / NAME
        try:
            manifest = GuestManifest.load(folder)
        except ImageError:
            continue
        if manifest.recipe == RECIPES[NAME].version:
            return xdg, folder, manifest
    pytest.skip(f"the {NAME} guest is not built: run `chrono guest fetch {NAME}` (as root; "
                f"about 6 minutes) or set CHRONO_TEST_BUILD_FULL=1 to build it into the "
                f"test cache")


def framed(n: int, command: str) -> bytes:
    """A command line whose output is framed by markers its typed echo cannot match."""
    return f"echo @B$(({n}))@; {command}; echo @E$(({n}))@\n".encode()


def output_of(text: str, n: int) -> str:
    found = re.search(rf"@B{n}@\n(.*?)@E{n}@\n", text, re.S)
    assert found, f"no output framed @B{n}@..@E{n}@; the console ends with:\n{text[-3000:]}"
    return found.group(1)


COMMANDS = [
    "systemctl is-system-running",
    "python3 -c 'print(6*7)'",
    "apt-get --version | head -n 1",
    "cat /etc/hostname",
    "findmnt -n -o SOURCE,FSTYPE,OPTIONS /",
    "systemctl --failed --no-legend --plain",
    "id -un; tty",
    "systemd-detect-virt",
    "cat /sys/firmware/qemu_fw_cfg/rev; ls /sys/firmware/qemu_fw_cfg/by_name/etc",
]


@pytest.fixture(scope="module")
def booted(full_guest):
    """One boot from the images to the autologin shell, the commands typed there."""
    _, folder, manifest = full_guest
    guest = launch(manifest.spec(folder))
    steps, expect = [], READY_MARKER
    for n, command in enumerate(COMMANDS, 1):
        steps.append((expect, framed(n, command)))
        expect = f"@E{n}@\n"
    steps.append((expect, b""))
    started = time.monotonic()
    text = run_script(guest, steps, max_steps=BOOT_STEPS)
    return {"text": text, "seconds": time.monotonic() - started}


def test_boots_to_root_autologin_shell_on_ttys0(booted):
    text = booted["text"]
    assert "chrono-debian: root=/dev/vda mounted rw on /newroot; switching to /sbin/init" in text
    assert re.search(r"systemd\[1\]: .*|Welcome to Debian GNU/Linux 13", text), text[-3000:]
    assert "chrono login: root (automatic login)" in text, text[-3000:]
    assert output_of(text, 7).split() == ["root", "/dev/ttyS0"]
    print(f"boot to the shell and {len(COMMANDS)} commands: {booted['seconds']:.1f} s")


def test_systemd_reports_the_system_running_with_no_failed_units(booted):
    text = booted["text"]
    assert output_of(text, 6).strip() == "", output_of(text, 6)
    assert output_of(text, 1).strip() == "running"


def test_python3_runs(booted):
    assert output_of(booted["text"], 2).strip() == "42"


def test_apt_is_installed(booted):
    assert re.fullmatch(r"apt 3\.\S+ \(riscv64\)", output_of(booted["text"], 3).strip())


def test_hostname_is_chrono(booted):
    assert output_of(booted["text"], 4).strip() == "chrono"


def test_root_is_ext4_on_vda_mounted_read_write(booted):
    source, fstype, options = output_of(booted["text"], 5).split()
    assert (source, fstype) == ("/dev/vda", "ext4")
    assert options.split(",")[0] == "rw"


def test_systemd_recognises_the_machine_as_qemu_through_its_fw_cfg_device(booted):
    """The fw_cfg device tree node is how systemd-detect-virt tells QEMU's virt
    machine; Linux's qemu_fw_cfg driver (loaded by udev) reads the device itself:
    revision 3 (traditional and DMA interfaces) and QEMU's default files."""
    assert output_of(booted["text"], 8).strip() == "qemu"
    assert output_of(booted["text"], 9).split() == ["3", "boot-fail-wait"]


def test_the_full_system_boots_on_virtio_pci(full_guest):
    """`--virtio pci`: the same image through the PCIe host bridge, as QEMU users
    boot it with -device virtio-blk-pci/virtio-net-pci; systemd comes up whole and
    the root disk is the virtio-pci one (the network on PCI: test_pci_debian.py)."""
    import dataclasses
    _, folder, manifest = full_guest
    guest = launch(dataclasses.replace(manifest.spec(folder), virtio="pci"))
    commands = ["systemctl is-system-running --wait",
                "ls /sys/bus/pci/devices",
                "readlink -f /sys/block/vda/device | grep -o '0000:00:0[0-9].0'"]
    steps, expect = [], READY_MARKER
    for n, command in enumerate(commands, 1):
        steps.append((expect, framed(n, command)))
        expect = f"@E{n}@\n"
    steps.append((expect, b""))
    text = run_script(guest, steps, max_steps=BOOT_STEPS)
    assert output_of(text, 1).strip() == "running"
    assert output_of(text, 2).split() == ["0000:00:00.0", "0000:00:01.0", "0000:00:03.0"]
    assert output_of(text, 3).split()[-1] == "0000:00:01.0"


def test_fast_boot_from_the_fetchs_booted_snapshot(full_guest, tmp_path):
    """`chrono run debian-full --from booted`: the machine saved by the fetch at the
    shell, restored in a new process; a command answers, and poweroff goes through
    systemd to status 0."""
    xdg, folder, _ = full_guest
    script = "echo @R$((6*7))@; systemctl is-system-running\npoweroff\n"
    start = time.monotonic()
    proc = subprocess.run(CHRONO + ["run", NAME, "--from", "booted"], input=script.encode(),
                          capture_output=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "XDG_CACHE_HOME": str(xdg)})
    elapsed = time.monotonic() - start
    out = proc.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, (out[-3000:], err)
    assert re.search(r"restored booted in ([0-9.]+) ms", err), err
    assert "@R42@\nrunning\n" in out, out[-3000:]
    assert "reboot: Power down" in out
    print(f"--from booted, a command and a systemd poweroff: {elapsed:.1f} s")


def test_second_fetch_reuses_the_guest_at_once(full_guest):
    xdg, folder, _ = full_guest
    start = time.monotonic()
    proc = subprocess.run(CHRONO + ["guest", "fetch", NAME], capture_output=True, text=True,
                          env={**os.environ, "XDG_CACHE_HOME": str(xdg)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"guest {NAME} is already cached in {folder}" in proc.stdout
    assert time.monotonic() - start < 10


def test_a_fetch_saves_booted_again_when_the_cached_one_cannot_be_restored(full_guest, tmp_path):
    """A chrono with another state layout cannot restore the `booted` an older one
    saved; fetch then boots the cached image again and saves `booted` anew (here:
    a copy of the guest whose store is gone), and `--from booted` works."""
    _, folder, _ = full_guest
    root = tmp_path / "xdg" / "chrono"
    copy = guests_dir(root) / NAME
    copy.mkdir(parents=True)
    for item in folder.iterdir():
        if item.is_file():
            subprocess.run(["cp", "--sparse=always", str(item), str(copy / item.name)], check=True)
    proc = subprocess.run(CHRONO + ["guest", "fetch", NAME], capture_output=True, text=True,
                          env={**os.environ, "XDG_CACHE_HOME": str(root.parent)}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "its saved snapshots were made again for this chrono" in proc.stdout
    assert "saving it again" in proc.stderr
    proc = subprocess.run(CHRONO + ["run", NAME, "--from", "booted"],
                          input=b"echo @R$((6*7))@\npoweroff\n", capture_output=True,
                          timeout=600, env={**os.environ, "XDG_CACHE_HOME": str(root.parent)})
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"@R42@" in proc.stdout


def test_the_full_system_on_user_networking_takes_a_lease_downloads_and_serves_ssh(
        full_guest, tmp_path):
    """`chrono run debian-full --net user,hostfwd=...:22`: systemd-networkd gets
    10.0.2.15 by DHCP from slirp; python3 in the guest downloads a file from a
    `python3 -m http.server` on the host's 127.0.0.1 through 10.0.2.2 (a plain
    socket: python3-minimal has no http.client) and its SHA-256 matches; the host's
    ssh logs in to the guest's sshd through the forwarded port, with a key the test
    installs, and runs a command."""
    from nethelp import HttpServer, LiveChrono, free_port

    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs OpenSSH's client on the host (apt-get install openssh-client)")
    xdg, _, _ = full_guest
    www = tmp_path / "www"
    www.mkdir()
    data = os.urandom(1 << 20)
    (www / "blob").write_bytes(data)
    server = HttpServer(www)
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh_port = free_port()
    chrono = LiveChrono(["run", NAME, "--net", f"user,hostfwd=tcp:127.0.0.1:{ssh_port}-:22"],
                        cwd=tmp_path, env={"XDG_CACHE_HOME": str(xdg)})
    try:
        chrono.wait_for(READY_MARKER, timeout=900)
        address = chrono.command("for i in $(seq 60); do ip -4 -o addr | grep -q 10.0.2.15 "
                                 "&& break; sleep 1; done; ip -color=never -4 -o addr show scope global")
        assert "inet 10.0.2.15/24" in address, address
        # python3-minimal has no http.client (urllib.request needs it): HTTP/1.0 by hand.
        digest = chrono.command(
            "python3 -c \"import hashlib, socket; "
            f"s = socket.create_connection(('10.0.2.2', {server.port}), timeout=60); "
            "s.sendall(b'GET /blob HTTP/1.0\\r\\n\\r\\n'); "
            "reply = s.makefile('rb').read(); "
            "print(hashlib.sha256(reply.split(b'\\r\\n\\r\\n', 1)[1]).hexdigest())\"")
        assert digest.strip() == hashlib.sha256(data).hexdigest()
        public = (tmp_path / "key.pub").read_text().strip()
        chrono.command(f"install -d -m 700 /root/.ssh && echo '{public}' > "
                       f"/root/.ssh/authorized_keys && systemctl is-active ssh")
        login = subprocess.run(
            ["ssh", "-i", str(key), "-p", str(ssh_port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=120", "root@127.0.0.1", "echo $((6*7)); hostname"],
            capture_output=True, text=True, timeout=300)
        assert login.returncode == 0, login.stderr
        assert login.stdout.split() == ["42", "chrono"]
        assert chrono.finish("poweroff\n", timeout=300) == 0
    finally:
        chrono.kill()
        server.stop()


@pytest.mark.skipif(shutil.which("gdb-multiarch") is None, reason="needs gdb-multiarch")
def test_rewinding_a_kernel_panic_of_the_full_system_in_gdb(full_guest, tmp_path):
    """As tests/test_gdb_debian.py on the busybox guest: the systemd system, restored
    from the fetch's `booted` snapshot (a copy of the guest's store, so the test
    leaves it as it was), is recorded through `echo c > /proc/sysrq-trigger`; gdb
    goes back from the end to the write() system call, the user-mode ecall, and
    with a watchpoint on the "c" to the user-mode store that put it there."""
    from test_gdb_debian import REWIND_THE_PANIC, assert_rewound_to_the_system_call_and_the_store
    from test_gdb_replay import gdb

    _, folder, _ = full_guest
    shutil.copytree(folder / "store", tmp_path / "store")
    proc = subprocess.run(CHRONO + ["record", "--from", "booted", "--store", str(tmp_path / "store"),
                                    "--name", "g", "--max-insns", "400000000"],
                          input=b"echo c > /proc/sysrq-trigger\n", capture_output=True,
                          timeout=900, cwd=tmp_path)
    assert proc.returncode == 124, proc.stderr[-2000:]          # --max-insns ended it
    assert b"Kernel panic - not syncing: sysrq triggered crash" in proc.stdout
    assert_rewound_to_the_system_call_and_the_store(gdb(tmp_path, *REWIND_THE_PANIC))

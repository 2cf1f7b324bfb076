"""`--virtio pci` is part of the machine: snapshots keep it, a machine built
from one has it, a machine with the other transport refuses it clearly, and
old snapshots (the state layout before the PCIe bridge and the 96-source
PLIC) are refused with the usual message."""
from __future__ import annotations

import subprocess

import pytest

from chrono.core.launch import GuestSpec, launch
from chrono.errors import SnapshotMismatchError
from chrono.store.capture import Snapshots, config_problem, guest_from_snapshot, machine_config
from chrono.store.store import Store
from chronocmd import CHRONO


def _saved(tmp_path, virtio: str) -> Store:
    store = Store.open(tmp_path / "store", create=True)
    snaps = Snapshots(store, launch(GuestSpec(virtio=virtio, net=True)))
    snaps.save(virtio)
    snaps.close()
    return store


def test_the_configuration_names_the_transport_and_the_devices_on_it():
    pci = machine_config(launch(GuestSpec(virtio="pci", net=True)))
    assert pci["virtio"] == "pci"
    assert pci["devices"][5:] == ["pci-host-ecam-generic", "virtio-pci-blk", "virtio-pci-rng",
                                  "virtio-pci-net"]
    mmio = machine_config(launch(GuestSpec()))
    assert mmio["virtio"] == "mmio"
    assert mmio["devices"][5:] == ["pci-host-ecam-generic", "virtio-mmio-blk", "virtio-mmio-rng"]
    assert config_problem(pci) is None and config_problem(mmio) is None


def test_a_machine_built_from_a_pci_snapshot_has_its_devices_on_pci(tmp_path):
    store = _saved(tmp_path, "pci")
    guest, snaps = guest_from_snapshot(store, "pci")
    try:
        assert guest.machine.virtio == "pci" and guest.config.virtio == "pci"
        assert guest.machine.has_net
    finally:
        snaps.close()
        store.close()


def test_loading_a_pci_snapshot_into_an_mmio_machine_is_refused_naming_the_transport(tmp_path):
    store = _saved(tmp_path, "pci")
    snaps = Snapshots(store, launch(GuestSpec(net=True)))
    try:
        with pytest.raises(SnapshotMismatchError) as e:
            snaps.load("pci")
    finally:
        snaps.close()
        store.close()
    assert "another virtio transport (--virtio) ('pci', this one has 'mmio')" in e.value.message
    assert "chrono run --from pci" in e.value.message


def test_a_snapshot_from_before_the_pcie_bridge_is_refused_as_another_versions(tmp_path):
    """What an older chrono wrote: no "virtio" key, and a smaller state (32 PLIC
    sources, no PCI functions): refused before anything is built."""
    old = machine_config(launch(GuestSpec()))
    del old["virtio"]
    old["state_size"] -= 200
    problem = config_problem(old)
    assert "it was saved by another version of chrono" in problem, problem


def test_a_state_of_the_previous_version_is_refused_by_the_core():
    from chrono.core.machine import Machine
    from chrono.errors import ChronoError
    m = Machine(16 << 20)
    state = bytearray(m.save_state())
    version = int.from_bytes(state[4:8], "little")          # the header's format version
    state[4:8] = (version - 1).to_bytes(4, "little")
    with pytest.raises(ChronoError, match=f"not a chrono CPU/device state of version {version}"):
        m.load_state(bytes(state))


def _chrono(*args, cwd):
    return subprocess.run([*CHRONO, *args], capture_output=True, text=True, cwd=cwd, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_a_bad_transport_is_one_clear_line(tmp_path):
    proc = _chrono("run", "--virtio", "isa", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "--virtio 'isa': not a virtio transport; use mmio or pci"), proc.stderr


def test_from_a_snapshot_the_transport_is_the_snapshots(tmp_path):
    proc = _chrono("run", "--from", "x", "--virtio", "pci", "--store", tmp_path / "s", cwd=tmp_path)
    assert proc.returncode != 0 and "--virtio" in proc.stderr and "drop" in proc.stderr, proc.stderr


def test_record_takes_the_option_too(tmp_path):
    proc = _chrono("record", "--help", cwd=tmp_path)
    assert "--virtio mmio|pci" in proc.stdout

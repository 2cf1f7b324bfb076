"""Real firmware on chrono: Debian's OpenSBI (fw_jump and fw_dynamic) boots,
hands over to an S-mode payload of ours, and serves its SBI calls (console,
timer, system reset) — the path every Linux boot takes.

CI installs Debian's `opensbi` package; these tests fail (not skip) without it.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from chronocmd import CHRONO

OPENSBI = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic")
GCC = "riscv64-unknown-elf-gcc"

# An S-mode payload at 0x80200000: print through the SBI console, arm the SBI
# timer, sleep in WFI until the (delegated) supervisor timer interrupt, print,
# then power off through SBI system reset.
PAYLOAD = r"""
    .section .text
    .globl _start
_start:
    la sp, stack_top
    mv s0, a0                   /* hart id */
    mv s1, a1                   /* device tree */
    la a0, hello
    call puts
    la t0, on_trap
    csrw stvec, t0
    li t0, 1 << 5               /* STIE */
    csrs sie, t0
    rdtime a0
    li t0, 1000000              /* 0.1 s at 10 MHz */
    add a0, a0, t0
    li a7, 0x54494D45           /* SBI TIME: set_timer */
    li a6, 0
    ecall
    csrsi sstatus, 2            /* SIE */
1:  wfi
    j 1b

    .balign 4                   /* stvec's BASE field is 4-byte aligned */
on_trap:
    csrr t0, scause
    li t1, (1 << 63) | 5        /* supervisor timer interrupt */
    bne t0, t1, bad
    la a0, tick
    call puts
    li a7, 0x53525354           /* SBI SRST: shutdown, no reason */
    li a6, 0
    li a0, 0
    li a1, 0
    ecall
bad:
    la a0, unexpected
    call puts
    j .

puts:                           /* a0 = NUL-terminated string, SBI legacy putchar */
    mv t2, a0
2:  lbu a0, 0(t2)
    beqz a0, 3f
    li a7, 1
    ecall
    addi t2, t2, 1
    j 2b
3:  ret

    .section .rodata
hello: .string "hello from S-mode\n"
tick: .string "tick from the SBI timer\n"
unexpected: .string "unexpected trap\n"

    .section .bss
    .balign 16
    .space 4096
stack_top:
"""


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> Path:
    if shutil.which(GCC) is None:
        pytest.fail(f"{GCC} not found: apt-get install gcc-riscv64-unknown-elf (.ci/run does)")
    d = tmp_path_factory.mktemp("payload")
    src = d / "payload.S"
    src.write_text(PAYLOAD)
    out = d / "payload.elf"
    subprocess.run([GCC, "-march=rv64imac_zicsr_zifencei", "-mabi=lp64", "-nostdlib",
                    "-nostartfiles", "-Wl,-Ttext=0x80200000", "-o", str(out), str(src)],
                   check=True)
    return out


@pytest.mark.parametrize("firmware", ["fw_jump.bin", "fw_dynamic.bin"])
def test_opensbi_boots_an_s_mode_payload_and_serves_sbi_calls(payload, firmware):
    bios = OPENSBI / firmware
    if not bios.is_file():
        pytest.fail(f"{bios} not found: apt-get install opensbi (.ci/run does)")
    proc = subprocess.run(
        [*CHRONO, "run", "--bios", str(bios), "--kernel", str(payload),
         "--max-insns", "200000000"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    out = proc.stdout.decode(errors="replace")
    assert "OpenSBI v" in out
    assert "Platform Name" in out and "chrono,virt" in out
    assert "Domain0 Next Mode" in out and "S-mode" in out
    assert "hello from S-mode" in out
    assert "tick from the SBI timer" in out
    assert "unexpected trap" not in out
    assert proc.returncode == 0, (proc.returncode, out[-2000:], proc.stderr)

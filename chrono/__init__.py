"""chrono: whole-system record/replay, snapshots and time travel for RISC-V guests."""

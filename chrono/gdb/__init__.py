"""A gdb remote stub (RSP over TCP) for recordings (`chrono debug`) and live guests."""

"""Drive the demo guest in QEMU's virt machine: serial console over pipes,
QMP over a unix socket (for stop/migrate/cont)."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

PROMPT = b"demo> "


class Guest:
    def __init__(self, elf, disk=None, legacy=False, incoming=None, icount=False,
                 extra=()):
        self.tmp = tempfile.mkdtemp(prefix="demo-qemu-")
        self.qmp_path = os.path.join(self.tmp, "qmp.sock")
        cmd = ["qemu-system-riscv64", "-M", "virt", "-bios", "none", "-kernel", elf,
               "-m", "128M", "-display", "none", "-serial", "stdio", "-monitor", "none",
               "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if not legacy:
            cmd += ["-global", "virtio-mmio.force-legacy=false"]
        if disk:
            cmd += ["-drive", "file=%s,format=raw,if=none,id=d0" % disk,
                    "-device", "virtio-blk-device,drive=d0"]
        if icount:
            cmd += ["-icount", "shift=0"]
        if incoming:
            cmd += ["-incoming", "exec:cat %s" % incoming]
        cmd += list(extra)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.buf = b""
        self.pos = 0            # consumed up to here
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.qmp = None

    def _read(self):
        while True:
            data = self.proc.stdout.read1(4096)
            if not data:
                break
            with self.lock:
                self.buf += data

    # ---- console ----
    def expect(self, pattern, timeout=10.0):
        """Wait until bytes `pattern` (or a compiled regex) appear after the
        consumed position; return the text up to and including it."""
        deadline = time.time() + timeout
        while True:
            with self.lock:
                hay = self.buf[self.pos:]
            if isinstance(pattern, bytes):
                i = hay.find(pattern)
                end = i + len(pattern) if i >= 0 else -1
            else:
                m = pattern.search(hay)
                end = m.end() if m else -1
            if end >= 0:
                self.pos += end
                return hay[:end].decode("latin-1")
            if time.time() > deadline:
                raise TimeoutError("timed out waiting for %r; got %r" % (pattern, hay[-2000:]))
            if self.proc.poll() is not None and not self.reader.is_alive():
                raise EOFError("QEMU exited (%s) waiting for %r; got %r"
                               % (self.proc.returncode, pattern, hay[-2000:]))
            time.sleep(0.005)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def boot(self, timeout=10.0):
        return self.expect(PROMPT, timeout)

    def cmd(self, line, timeout=30.0):
        """Type a command, return its output (without the echo line and prompt)."""
        self.send(line + "\n")
        out = self.expect(PROMPT, timeout)
        out = out[:-len(PROMPT)].replace("\r\n", "\n")
        first_nl = out.find("\n")
        return out[first_nl + 1:] if first_nl >= 0 else ""

    def wait_exit(self, timeout=20.0):
        rc = self.proc.wait(timeout)
        self.reader.join(2)
        self._cleanup()
        return rc

    def _cleanup(self):
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def rest(self):
        with self.lock:
            return self.buf[self.pos:].decode("latin-1").replace("\r\n", "\n")

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        hz = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / hz     # utime + stime

    # ---- QMP ----
    def _qmp_connect(self):
        deadline = time.time() + 10
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.qmp_path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        self.qmp = s.makefile("rw")
        json.loads(self.qmp.readline())                 # greeting
        self.qmp_cmd("qmp_capabilities")

    def qmp_cmd(self, name, **args):
        if self.qmp is None:
            self._qmp_connect()
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.qmp.write(json.dumps(msg) + "\n")
        self.qmp.flush()
        while True:
            reply = json.loads(self.qmp.readline())
            if "return" in reply or "error" in reply:
                if "error" in reply:
                    raise RuntimeError("QMP %s: %s" % (name, reply["error"]))
                return reply["return"]

    def save_ram_state(self, path):
        """RAM + device state only (no disk contents): a migration to a file."""
        self.qmp_cmd("stop")
        self.qmp_cmd("migrate", uri="exec:cat > %s" % path)
        while True:
            st = self.qmp_cmd("query-migrate")
            if st.get("status") == "completed":
                break
            if st.get("status") in ("failed", "cancelled"):
                raise RuntimeError("migration failed: %r" % st)
            time.sleep(0.05)
        self.qmp_cmd("cont")

    def resume_incoming(self, timeout=10.0):
        """After -incoming: wait for the state to load, then run (the state
        was saved while stopped, so QEMU keeps the VM paused)."""
        deadline = time.time() + timeout
        while self.qmp_cmd("query-migrate").get("status") != "completed":
            if time.time() > deadline:
                raise TimeoutError("incoming migration did not complete")
            time.sleep(0.05)
        if not self.qmp_cmd("query-status")["running"]:
            self.qmp_cmd("cont")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._cleanup()

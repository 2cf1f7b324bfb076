"""chrono's commands inside gdb-multiarch: goto, when, last-write, savevm, loadvm.

gdb runs this file (`chrono debug` passes it with -x; by hand: `source
PATH`); chrono itself never imports it.  Each command sends `monitor ...` to
chrono's stub.  A command that moves the machine (goto, loadvm) then drops
gdb's cached registers, frames and memory, which gdb would otherwise keep
from the last stop: without that, gdb shows the old registers and its next
`stepi` plans from the old pc.  A monitor reply starting with "error: " is
raised as a gdb error, so scripts (`-batch -ex ...`) stop on it.
"""
import gdb

ERROR = "error: "


class ChronoCommand(gdb.Command):
    """Send `monitor NAME ARGS` to chrono."""

    moves = False           # does the command change where the machine is?

    def __init__(self, name):
        super().__init__(name, gdb.COMMAND_RUNNING if self.moves else gdb.COMMAND_STATUS)
        self.name = name

    def invoke(self, argument, from_tty):
        self.dont_repeat()
        reply = gdb.execute(f"monitor {self.name} {argument}".rstrip(), to_string=True)
        if reply.startswith(ERROR):
            raise gdb.GdbError(reply[len(ERROR):].strip())
        if self.moves:
            gdb.execute("maintenance flush register-cache", to_string=True)
            gdb.execute("maintenance flush dcache", to_string=True)
        gdb.write(reply)
        if self.moves:
            gdb.execute("frame")


def define(name, doc, moves=False):
    command = type(name.replace("-", "_"), (ChronoCommand,), {"__doc__": doc, "moves": moves})
    command(name)


define("goto", "Go to POSITION (instructions into the recording), forward or back.\n"
       "Usage: goto POSITION", moves=True)
define("when", "Show the current position in the recording and the pc.")
define("last-write", "Show who last wrote ADDR (SIZE bytes, default 1) before here:\n"
       "the position, pc and instruction, or device DMA.\nUsage: last-write ADDR [SIZE]")
define("savevm", "Save the machine here as snapshot NAME.\nUsage: savevm NAME")
define("loadvm", "Go to where snapshot NAME was saved.\nUsage: loadvm NAME", moves=True)

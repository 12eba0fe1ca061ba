"""Run a device ring kernel on the emulated device: a process of its own over shared memory.

The mailbox memory is a shared-memory file (``memfd_create`` on Linux, else an unlinked
temporary file), reserved in full up front and mapped by Python and by the kernel's process,
``pdc-emulated-host`` (see ``_host_program.py``), which loads the kernel's cached shared
library and runs its loop. The kernel sees offsets into its own mapping, never Python's
addresses. This gives the emulated device a GPU's failure model: a handler that faults ends
its own process only, and the kernel is ``FAILED`` with a :class:`DeviceFaultError` naming
the signal (and the handler line, read from the library's debug information with
``addr2line`` where it is installed); Python and every other kernel go on. When the kernel
ends, its process exits and the operating system unloads its library.

Two pipes connect the processes: the kernel writes a byte to the *notify* pipe when it has
progress for a host that said it waits (``host_wait``), and Python watches the pipe with
``loop.add_reader``; the pipe also reaches end of file when the process ends, however it
ends. The kernel's process watches the *alive* pipe, whose write end only Python holds, and
exits when Python goes away.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DeviceFaultError
from ._host_program import host_program
from ._links import link_arena
from ._memory import (
    CONTROL_BYTES,
    ERR_EXCEPTION,
    ERR_SIGNAL,
    ERR_TRAP,
    FAULT_FRAMES,
    NO_MESSAGE,
    WORD,
)

__all__ = ["EmulatedLauncher", "reserve_shared_memory"]

_SIGNAL_CODES: dict[tuple[int, int], str] = {
    # (signal, si_code) -> what it means (si_code values are the Linux ones)
    (signal.SIGFPE, 1): "integer divide by zero",
    (signal.SIGFPE, 2): "integer overflow",
    (signal.SIGFPE, 3): "floating-point divide by zero",
    (signal.SIGSEGV, 1): "address not mapped",
    (signal.SIGSEGV, 2): "invalid permissions for the address",
    (signal.SIGBUS, 1): "invalid address alignment",
    (signal.SIGBUS, 2): "nonexistent physical address",
    (signal.SIGILL, 1): "illegal opcode",
}
_ADDRESS_SIGNALS = (signal.SIGSEGV, signal.SIGBUS)
_LINE = re.compile(r"(?P<file>[^\s:]+)\.(?P<part>handle|prelude):(?P<line>\d+)")


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reserve_shared_memory(name: str, size: int) -> int:
    """A file descriptor of ``size`` bytes of shared memory, all of it reserved now.

    Reserving up front (``posix_fallocate``) makes a size the machine cannot hold fail here,
    with an ``OSError``, rather than as ``SIGBUS`` on first touch. Sizes beyond the available
    memory are refused before anything is reserved.
    """
    available = _available_memory()
    if available is not None and size > available:
        raise MemoryError(
            f"{size:,} bytes of mailbox memory exceed the {available:,} bytes available"
        )
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(f"pdc-{name}"[:200], os.MFD_CLOEXEC)
    else:
        fd, path = tempfile.mkstemp(prefix="pdc-mailbox-")
        os.unlink(path)
    try:
        os.ftruncate(fd, size)
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


class EmulatedLauncher:
    """One kernel instance on the emulated device: its shared memory and its process."""

    device = "emulated"
    #: The kernel is given offsets into its mailbox memory: its process adds its own base.
    base_address = 0

    def __init__(self, kernel_id: str, size: int) -> None:
        self.kernel_id = kernel_id
        self.size = size
        self._fd = reserve_shared_memory(kernel_id, size)
        try:
            self._map: mmap.mmap | None = mmap.mmap(self._fd, size)
        except BaseException:
            os.close(self._fd)
            raise
        self.memory: Any = np.frombuffer(self._map, np.uint8)
        self._proc: subprocess.Popen[bytes] | None = None
        self._library: Path | None = None
        self.notify_fd = -1  # read end of the notify pipe (watched by the kernel)
        self._alive_fd = -1  # write end of the alive pipe (closing it ends the process)
        self.killed = False

    def start(self, library: Path, args: tuple[int, ...], threads: int) -> None:
        """Start the kernel's process on ``library``; ``args`` are the loop's arguments."""
        program = host_program()
        arena = link_arena()  # every kernel maps the device's link arena (see _links.py)
        notify_r, notify_w = os.pipe()
        alive_r, alive_w = os.pipe()
        os.set_blocking(notify_r, False)
        argv = [
            str(program),
            str(library),
            str(self._fd),
            str(self.size),
            str(notify_w),
            str(alive_r),
            str(threads),
            *(str(a) for a in args[1:]),
            str(arena.fd),
            str(arena.size),
        ]
        try:
            self._proc = subprocess.Popen(
                argv,
                pass_fds=(self._fd, notify_w, alive_r, arena.fd),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            os.close(notify_r)
            os.close(alive_w)
            raise
        finally:
            os.close(notify_w)
            os.close(alive_r)
            os.close(self._fd)  # the mapping and the child keep the memory
            self._fd = -1
        self._library = library
        self.notify_fd = notify_r
        self._alive_fd = alive_w

    @property
    def pid(self) -> int | None:
        """The process id of the kernel's process (``None`` before it starts)."""
        return None if self._proc is None else self._proc.pid

    def running(self) -> bool:
        """Whether the kernel's process is still running (it is reaped once it ends)."""
        return self._proc is not None and self._proc.poll() is None

    def reap(self) -> None:
        """Wait for a process whose notify pipe has ended (it is exiting) to be gone.

        The pipe ends while the process is still being torn down, a few microseconds before
        it can be reaped; one that holds on beyond a second is ended.
        """
        if self._proc is None:
            return
        try:
            self._proc.wait(1.0)
        except subprocess.TimeoutExpired:
            self.kill()
            self._proc.wait()

    def kill(self) -> None:
        """End the kernel's process at once (a handler that never returns)."""
        if self.running():
            assert self._proc is not None
            self.killed = True
            self._proc.kill()

    def fault(self) -> DeviceFaultError | None:
        """The failure of a process that ended abnormally, else ``None``."""
        if self._proc is None or self.running() or self.memory is None:
            return None
        rc = self._proc.returncode
        ctl = self.memory[:CONTROL_BYTES].view(np.uint64)
        error = int(ctl[WORD["error"]])
        if error == ERR_TRAP:
            what = "trapped: the handler called __trap()"
        elif error == ERR_EXCEPTION:
            what = "failed: the handler threw a C++ exception"
        elif error == ERR_SIGNAL:
            what = self._signal_text(ctl)
        elif self.killed:
            return None  # the kernel reports why it was stopped
        elif rc == 0:
            return None
        elif rc < 0:
            what = f"died: its process was killed by {_signal_name(-rc)}"
        elif rc > 128:
            what = f"faulted with {_signal_name(rc - 128)}"
        else:
            what = (
                f"could not run: its process (pdc-emulated-host) exited with code {rc}; "
                "its standard error says why"
            )
        message = int(ctl[WORD["fault_message"]])
        if error and message != NO_MESSAGE:
            what += f" while handling message {message} (counted from 0 since launch)"
        return DeviceFaultError(self.kernel_id, what, cuda_error=None, context_usable=True)

    def _signal_text(self, ctl: Any) -> str:
        sig = int(ctl[WORD["fault_signal"]])
        code = int(ctl[WORD["fault_code"]])
        text = f"faulted with {_signal_name(sig)}"
        meaning = _SIGNAL_CODES.get((sig, code))
        if sig == signal.SIGABRT:
            meaning = "abort() was called"
        if sig in _ADDRESS_SIGNALS:
            addr = f"address {int(ctl[WORD['fault_addr']]):#x}"
            meaning = f"{meaning}: {addr}" if meaning else addr
        if meaning:
            text += f" ({meaning})"
        frames = [int(ctl[WORD[f"fault_frame{i}"]]) for i in range(FAULT_FRAMES)]
        where = _source_line(self._library, [f for f in frames if f])
        return f"{text} {where}" if where else text

    def context_usable(self) -> bool:
        """The emulated device survives any kernel's failure."""
        return True

    def release(self) -> None:
        """Let go of the memory and the pipes once the process has ended (else keep them)."""
        if self.running():
            return
        for fd in (self.notify_fd, self._alive_fd):
            if fd >= 0:
                os.close(fd)
        self.notify_fd = self._alive_fd = -1
        # The mapping is unmapped when the last view of it goes (the rings drop theirs first).
        self.memory = None
        self._map = None


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _source_line(library: Path | None, offsets: list[int]) -> str:
    """``at handle line N`` for the first offset inside the user's code, else ``""``.

    Reads the kernel library's debug information with ``addr2line`` (binutils), when
    installed; inlined frames are listed innermost first, so the handler's own line wins.
    """
    tool = shutil.which("addr2line")
    if library is None or not offsets or tool is None:
        return ""
    try:
        out = subprocess.run(
            [tool, "-i", "-e", str(library), *(f"{o:#x}" for o in offsets)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""  # no line then: the signal alone still names the fault
    m = _LINE.search(out)
    if m is None:
        return ""
    return f"at {m['part']} line {m['line']}"

"""``DeviceKernel``: one running device ring kernel (CUDA or emulated) behind the runtime.

It offers the same surface as :class:`~pydotcompute.backends.host.HostKernel`. The loop
runs on the device and is launched once per lifetime; the host side writes the inbox ring,
reads the outbox ring and rings the doorbell (tail and command).

Waiting, only while somebody waits (a receiver, a ``call``, a blocked sender, staged
messages to feed): first the host endpoint spins on the outbox tail for a short window with
the GIL released (``$PYDOTCOMPUTE_DEVICE_SPIN_US``), when the device has work in flight; a
reply within the window completes ``receive`` / ``call`` without a trip through the event
loop. Then the kernel *parks*:

* on the emulated device it sets ``host_wait`` and the loop watches the notify pipe
  (``loop.add_reader``): the device writes to it at its next progress, and the pipe ends when
  the kernel's process ends (a fault is noticed at once, with nothing polling);
* a GPU cannot signal the host, so a *pump* task polls the rings: it yields with
  ``asyncio.sleep(0)`` for the first millisecond after the last progress, then ticks every
  millisecond.

With nobody waiting nothing spins, polls or ticks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypeGuard

import numpy as np

from ...errors import (
    DeviceFaultError,
    InvalidArgumentError,
    KernelFailedError,
    KernelStateError,
    MessageTypeError,
    OperationTimeoutError,
)
from ...ring._options import Backpressure
from ...ring._spec import RingKernelSpec
from ...ring._state import ACCEPTING, KernelState, check
from ...telemetry import KernelMetrics, KernelTelemetry
from .._base import KernelBase
from ..host import LaunchResult, TerminateResult
from ._codegen import GeneratedSource, generate
from ._compile import Build, build_cuda, build_emulated
from ._definition import DeviceDefinition
from ._inbox import DeviceInbox
from ._links import DeviceLink
from ._memory import (
    CMD_ACTIVE,
    CMD_PARK,
    CMD_TERMINATE,
    CONTROL_BYTES,
    STATUS_NAMES,
    STATUS_PARKED,
    STATUS_STARTING,
    WORD,
    MailboxLayout,
    ring_slots,
)
from ._native import NativeEndpoint, PythonEndpoint, endpoint, spin_ns
from ._outbox import DeviceOutbox
from ._records import RecordCodec
from ._waiting import DeviceWaits

__all__ = ["DeviceKernel"]

log = logging.getLogger("pydotcompute")
S = KernelState

START_TIMEOUT_S = 60.0  # a cold CUDA start (context, module load) can take seconds
KILL_WAIT_S = 5.0  # how long a killed emulated kernel's process may take to end
EMULATED_MAX_THREADS = 4  # parallel blocks on the emulated device use at most this many
_COUNTERS = ("processed", "heartbeat", "idle_polls", "busy_ns", "full_waits")


class DeviceKernel(KernelBase):
    """One device ring kernel: its rings, the launched loop, lifecycle and telemetry."""

    backend = "device"

    def __init__(self, spec: RingKernelSpec, loop: asyncio.AbstractEventLoop, target: str) -> None:
        opts = spec.options
        d: DeviceDefinition = spec.device
        in_l, out_l, _ = d.layouts
        self.kernel_id = spec.kernel_id
        self.spec = spec
        self.options = opts
        self.input_type = opts.input_type
        self.target = target
        self.device = "emulated" if target == "emulated" else "cuda"
        self.metrics = KernelMetrics()
        self.outbox = DeviceOutbox(
            self.kernel_id,
            opts.outbox_capacity,
            loop,
            RecordCodec(out_l),
            self.metrics,
            self._kick,
            self._spin,
        )
        self.inbox = DeviceInbox(
            self.kernel_id,
            opts.inbox_capacity,
            opts.backpressure,
            loop,
            RecordCodec(in_l),
            self._kick,
            self._after_write,
            self.outbox._expect,
        )
        self.state = S.CREATED
        self.accepting = False
        self.error: BaseException | None = None
        self.generated: GeneratedSource | None = None
        self.build: Build | None = None
        self._loop = loop
        self._launcher: Any = None
        self._ctl: Any = None
        self._endpoint: NativeEndpoint | PythonEndpoint | None = None
        self._waits = DeviceWaits(self.kernel_id, loop, self.inbox, self.outbox, self._check_health)
        # The hot paths call the waits directly (one Python frame less per message).
        self.outbox._spin = self._waits.spin
        self.inbox._after_write = self._waits.after_write
        self._lock = asyncio.Lock()
        self._run_state = S.LAUNCHED
        self._counters_before = dict.fromkeys(_COUNTERS, 0)
        self._threads = 1
        self._stuck: list[Any] = []  # launchers that never exited: their memory is kept
        self._state_slot: np.ndarray | None = None  # the State slot in the mailbox memory
        self._last_state: bytes | None = None  # the state the last loop stored on exit
        self._stopping = False  # the loop was asked to end (terminate, relaunch)
        self.link_out: DeviceLink | None = None  # this loop's device link to its target
        self.link_in: DeviceLink | None = None  # a device link into this loop
        self.router: Any = None  # set by the runtime's router (it delivers what links leave)

    def __repr__(self) -> str:
        return f"<DeviceKernel {self.kernel_id!r} {self.device} {self.state.value}>"

    # ---------------------------------------------------------------- build and start
    def _compile(self, gen: GeneratedSource, d: DeviceDefinition) -> Build:
        if self.target == "emulated":
            return build_emulated(gen, d)
        from ..._cuda import cuda_status

        arch = cuda_status().compute_capability or "90"
        return build_cuda(gen, d, arch)

    def _new_launcher(self, layout: MailboxLayout) -> Any:
        """Allocate the mailbox memory; a size that cannot be allocated is a clear error."""
        try:
            if self.target == "emulated":
                from ._emulated import EmulatedLauncher

                return EmulatedLauncher(self.kernel_id, layout.size)
            from ._cuda_launch import CudaLauncher

            return CudaLauncher(self.kernel_id, layout.size)
        except (MemoryError, OSError, OverflowError, ValueError) as exc:
            raise InvalidArgumentError(
                f"device ring kernel {self.kernel_id!r}: queue_size "
                f"{self.options.inbox_capacity} (inbox) / {self.options.outbox_capacity} "
                f"(outbox) needs {layout.size:,} bytes of mailbox memory "
                f"({layout.in_slots:,} + {layout.out_slots:,} slots), which cannot be "
                f"allocated ({exc}); launch it with a smaller queue_size"
            ) from exc

    async def _build(self, spec: RingKernelSpec) -> tuple[GeneratedSource, Build]:
        """Generate and compile (or load from the cache) the source of ``spec``."""
        d: DeviceDefinition = spec.device
        gen = generate(self.kernel_id, d)
        build = await self._loop.run_in_executor(None, self._compile, gen, d)
        return gen, build

    async def _start(
        self,
        spec: RingKernelSpec,
        built: tuple[GeneratedSource, Build] | None = None,
        state: bytes | None = None,
    ) -> LaunchResult:
        """Build (unless ``built`` is given), allocate the rings and start the loop.

        ``state`` is the bytes of a ``State`` to start with (a relaunch keeping its state).
        """
        d: DeviceDefinition = spec.device
        gen, build = built if built is not None else await self._build(spec)
        in_c, out_c = self.inbox.codec, self.outbox.codec
        state_l = _state_layout(d)
        layout = MailboxLayout.for_capacities(
            in_c.itemsize,
            out_c.itemsize,
            self.inbox.window,
            self.outbox.capacity,
            0 if state_l is None else state_l.itemsize,
        )
        spin = spin_ns()  # a bad $PYDOTCOMPUTE_DEVICE_SPIN_US is refused before allocating
        launcher = self._new_launcher(layout)
        mem = launcher.memory
        self._state_slot = None
        if state_l is not None:
            self._state_slot = mem[layout.state_offset : layout.state_offset + state_l.itemsize]
            if state is not None:
                self._state_slot[:] = np.frombuffer(state, np.uint8)
        ctl = memoryview(mem[:CONTROL_BYTES]).cast("Q")
        try:
            ep = endpoint(int(mem.ctypes.data), ctl, spin=spin, require=self.target == "emulated")
        except BaseException:
            ctl.release()
            launcher.release()
            raise
        in_end = layout.in_offset + layout.in_slots * in_c.itemsize
        out_end = layout.out_offset + layout.out_slots * out_c.itemsize
        stamps = [0] * ring_slots(layout.in_slots + layout.out_slots + 1)
        self.inbox.attach(ep, mem[layout.in_offset : in_end].view(in_c.dtype), stamps)
        self.outbox.attach(ep, mem[layout.out_offset : out_end].view(out_c.dtype), stamps)
        base = launcher.base_address
        threads = d.block_size
        if self.target == "emulated":
            threads = min(threads, EMULATED_MAX_THREADS)
        args = (
            base,
            base + layout.in_offset,
            base + layout.out_offset,
            layout.in_slots - 1,
            layout.out_slots - 1,
            self.outbox.capacity,
        )
        self._launcher, self._ctl, self._endpoint, self._threads = launcher, ctl, ep, threads
        self._stopping = False
        self.generated, self.build, self.device = gen, build, launcher.device
        try:
            await self._run_start(launcher, build, args, threads)
        except BaseException:
            self._stop_tracking()
            raise
        self._waits.attach(launcher, ep)
        started = await self._waits.until(
            lambda: ctl[WORD["status"]] != STATUS_STARTING, START_TIMEOUT_S
        )
        if not started:
            fault = launcher.fault() or DeviceFaultError(
                self.kernel_id,
                f"did not start within {START_TIMEOUT_S} s",
                cuda_error=None,
                context_usable=launcher.context_usable(),
            )
            self._stop_tracking()
            raise fault
        return LaunchResult(
            self.kernel_id, self.backend, self.device, S.LAUNCHED, build.cache_hit, build.compile_s
        )

    async def _run_start(
        self, launcher: Any, build: Build, args: tuple[int, ...], threads: int
    ) -> None:
        """Start the loop off the event loop (a CUDA module load can take seconds)."""
        fut = self._loop.run_in_executor(None, launcher.start, build.path, args, threads)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await asyncio.shield(fut)
        except TimeoutError:
            self._stuck.append(launcher)  # it may start later: its memory is never freed
            fut.add_done_callback(lambda _: self._abandon(launcher))
            raise DeviceFaultError(
                self.kernel_id,
                f"did not start: launching it did not return within {START_TIMEOUT_S} s (a "
                "GPU busy with kernels that never yield, or CUDA_LAUNCH_BLOCKING=1?)",
                cuda_error=None,
                context_usable=True,
            ) from None

    def _abandon(self, launcher: Any) -> None:
        """Stop a loop whose launch returned after the kernel gave up on it."""
        if hasattr(launcher, "kill"):
            # The emulated device: end the late process and let go of everything.
            launcher.kill()
            launcher.reap()
            self._stuck.remove(launcher)
            launcher.release()
            return
        ctl = memoryview(launcher.memory[:CONTROL_BYTES]).cast("Q")
        ctl[WORD["doorbell"]] = CMD_TERMINATE  # a GPU loop: ask it to end; its memory is kept
        ctl.release()

    # ---------------------------------------------------------------- lifecycle verbs
    async def launch(self) -> LaunchResult:
        """Build the kernel, allocate its rings and start the loop, parked until activated."""
        async with self._lock:
            check(self.kernel_id, self.state, "launch")
            result = await self._start(self.spec)
            self.metrics.launches += 1
            self._set_state(S.LAUNCHED)
            return result

    def launch_result(self) -> LaunchResult:
        """Describe where the kernel runs and how its build went."""
        b = self.build
        return LaunchResult(
            self.kernel_id,
            self.backend,
            self.device,
            self.state,
            None if b is None else b.cache_hit,
            None if b is None else b.compile_s,
        )

    async def activate(self) -> None:
        """Let the loop take messages (the doorbell's command turns active)."""
        async with self._lock:
            self._check_health()
            check(self.kernel_id, self.state, "activate")
            self.inbox.command(CMD_ACTIVE)
            self.inbox.open = True
            self._set_state(S.ACTIVE)
            self._kick()

    async def deactivate(self) -> None:
        """Park the loop; sends are staged on the host and nothing is lost."""
        async with self._lock:
            self._check_health()
            check(self.kernel_id, self.state, "deactivate")
            self.inbox.command(CMD_PARK)
            self.inbox.open = False
            self._set_state(S.DEACTIVATED)

    async def terminate(
        self, timeout: float | None = 5.0, drain: bool = False, *, if_alive: bool = False
    ) -> TerminateResult | None:
        """Ask the loop to exit, wait for it, then free the rings.

        With ``drain`` the loop first takes everything queued (within ``timeout``).

        Raises
        ------
        OperationTimeoutError
            The loop did not exit within ``timeout``; the kernel is then ``FAILED``. An
            emulated kernel's process is ended; a GPU kernel keeps running and its memory is
            kept (freeing it under a running kernel would fault). Reported once: ending the
            runtime later does not raise it again.
        """
        async with self._lock:
            if if_alive and self.state is S.TERMINATED:
                return None
            start = time.perf_counter()
            if if_alive and self.state is S.FAILED and self._launcher in self._stuck:
                # Reported by the terminate that timed out; shutdown only closes it.
                discarded = self._close("terminated")
                return TerminateResult(
                    self.kernel_id, False, discarded, time.perf_counter() - start
                )
            self._check_health()
            check(self.kernel_id, self.state, "terminate")
            was = self.state
            self._set_state(S.TERMINATING)
            graceful = True
            if self._launcher is not None and self._launcher.running():
                if drain and was is not S.FAILED:
                    graceful = await self._drain(timeout)
                spent = time.perf_counter() - start
                left = None if timeout is None else max(0.0, timeout - spent)
                await self._stop_loop(left, timeout)
            try:
                # The loop has ended: its side of a device link is final (dead letters follow).
                await self._close_links()
            finally:
                discarded = self._close("terminated")
            result = TerminateResult(
                self.kernel_id, graceful, discarded, time.perf_counter() - start
            )
            self.metrics.event(
                f"terminated ({'graceful' if graceful else 'forced'}, {discarded} discarded)"
            )
            return result

    async def _drain(self, timeout: float | None) -> bool:
        self.inbox.open = True
        self.inbox.command(CMD_ACTIVE)
        self._kick()
        return await self._waits.until(lambda: len(self.inbox) == 0, timeout)

    async def _stop_loop(self, timeout: float | None, asked: float | None) -> None:
        """Ring the terminate command and wait for the loop to end, or fail the kernel."""
        launcher = self._launcher
        self._stopping = True  # the loop's end is expected from now on, not a failure
        self.inbox.command(CMD_TERMINATE)
        ended = await self._waits.until(lambda: not launcher.running(), timeout)
        if ended:
            fault = launcher.fault()
            if fault is not None and self.error is None:
                self.metrics.failed(fault)
                self.error = fault
            return
        if hasattr(launcher, "kill"):
            # The emulated device is a process: end it, so nothing keeps running.
            launcher.kill()
            await self._waits.until(lambda: not launcher.running(), KILL_WAIT_S)
            what = "its process was ended"
        else:
            what = (
                "it keeps running and its mailbox memory is kept, since freeing it under a "
                "running kernel would fault"
            )
        err = DeviceFaultError(
            self.kernel_id,
            f"did not exit within {asked} s of being asked to (a handler that never "
            f"returns?); {what}",
            cuda_error=None,
            context_usable=launcher.context_usable(),
        )
        if launcher.running():
            self._stuck.append(launcher)
        self._fail(err)
        raise OperationTimeoutError(
            f"ring kernel {self.kernel_id!r} did not exit within {asked} s; it is FAILED "
            "(see the cause)"
        ) from err

    def _release(self) -> None:
        self._stop_tracking()

    def _stop_tracking(self) -> None:
        """Keep the device counters, move unread replies to the host, release the memory."""
        ctl = self._ctl
        if ctl is not None:
            for name in _COUNTERS:
                self._counters_before[name] += ctl[WORD[name]]
        if self._state_slot is not None:  # what the loop stored when it exited
            self._last_state = self._state_slot.tobytes()
            self._state_slot = None
        self._waits.detach()
        self.outbox.detach()
        self.inbox.detach()
        self._ctl = self._endpoint = None
        ctl = None
        if self._launcher is not None and self._launcher not in self._stuck:
            self._launcher.release()
        self._launcher = None

    async def relaunch(self, spec: RingKernelSpec | None, timeout: float | None) -> LaunchResult:
        """Replace the loop (same id), keeping queued messages and telemetry history.

        Messages the old loop had not taken are moved back to the host and go first.
        """
        async with self._lock:
            self._check_health()
            check(self.kernel_id, self.state, "relaunch")
            if spec is not None:
                self._check_compatible(spec)
            # Build first: a source that does not compile leaves the running loop untouched.
            built = await self._build(spec if spec is not None else self.spec)
            target = self._run_state
            if self._launcher is not None and self._launcher.running():
                await self._stop_loop(timeout, timeout)
            await self._close_links()  # the router links the new loop again (resume)
            back = self.inbox.take_back()
            self._stop_tracking()
            self.inbox.restage(back)
            kept = self._kept_state(spec if spec is not None else self.spec)
            if spec is not None:
                self.spec = spec
            self.error = None
            self.outbox.reopen()
            self.metrics.redeploys += 1
            self.metrics.event("redeployed")
            await self._start(self.spec, built, kept)
            self.metrics.launches += 1
            if target is S.ACTIVE:
                self.inbox.command(CMD_ACTIVE)
                self.inbox.open = True
            else:
                self.inbox.open = False
            self._set_state(target)
            self._kick()
            return self.launch_result()

    def _check_compatible(self, spec: RingKernelSpec) -> None:
        if spec.kind != "device" or spec.device is None:
            raise KernelStateError(
                f"ring kernel {self.kernel_id!r} is a device kernel; relaunch it with a "
                "device spec (ring_kernel(..., cuda=SOURCE)), not a host body"
            )
        old: DeviceDefinition = self.spec.device
        new: DeviceDefinition = spec.device
        if (new.input_type, new.output_type) != (old.input_type, old.output_type):
            raise KernelStateError(
                f"relaunch of device ring kernel {self.kernel_id!r} must keep its message "
                f"types ({old.input_type.__name__} -> {old.output_type.__name__}); launch "
                "a new kernel id for other types"
            )

    # ---------------------------------------------------------------- failures
    def _check_health(self) -> None:
        """Notice a loop that ended without being asked to."""
        launcher = self._launcher
        if launcher is None or self.state not in ACCEPTING or self._stopping:
            return
        if launcher.running():
            return
        self._fail(
            launcher.fault()
            or DeviceFaultError(
                self.kernel_id,
                "stopped without being asked to",
                cuda_error=None,
                context_usable=launcher.context_usable(),
            )
        )

    def _fail(self, err: DeviceFaultError) -> None:
        self.metrics.failed(err)
        self.error = err
        log.warning("ring kernel %r failed: %s", self.kernel_id, err)
        self.outbox.service()
        if self._launcher is not None and not self._launcher.running():
            back = self.inbox.take_back()
            self._stop_tracking()
            self.inbox.restage(back)  # kept on the host (after letting go of the dead ring)
        self._set_state(S.FAILED)
        kid = self.kernel_id

        def make_error() -> BaseException:
            return KernelFailedError.caused_by(kid, err)

        self.inbox.refuse_waiters(make_error)
        self.outbox.fail(make_error)
        if self.link_out is not None or self.link_in is not None:
            # What the links hold goes through the host (or into dead letters), not lost.
            self._loop.create_task(self._close_links(), name=f"{kid} device links closing")

    # ---------------------------------------------------------------- device links
    def _linkable(self) -> bool:
        """Whether this loop can take a device link now: its loop runs (emulated or CUDA,
        sequential or parallel)."""
        return (
            self._launcher is not None
            and self._launcher.running()
            and self.state in (S.LAUNCHED, S.ACTIVE, S.DEACTIVATED)
        )

    def device_target(self, route: Any, kernels: dict[str, Any]) -> DeviceKernel | None:
        """The kernel a device link would serve ``route`` with, or ``None`` (through the host).

        A device link needs exactly one target, a device kernel on the same device (the
        emulated device, or the same GPU) with the same message layout, a ``block`` inbox,
        and no other device link into it. Fan-out, fan-in beyond one device link into a
        kernel, other policies and links across devices go through the host.
        """
        if route is None or len(route.targets) != 1 or not self._linkable():
            return None
        t = kernels.get(route.targets[0])
        if (
            not isinstance(t, DeviceKernel)
            or t is self
            or t.device != self.device
            or not t._linkable()
            or t.options.backpressure is not Backpressure.BLOCK
            or t.inbox.codec.dtype != self.outbox.codec.dtype
            or (t.link_in is not None and t.link_in is not self.link_out)
        ):
            return None
        return t

    def update_link(self, route: Any, kernels: dict[str, Any]) -> asyncio.Task[None] | None:
        """Serve ``route`` with a device link when it can be one; returns the switch's task.

        The task closes the link that no longer fits (what it holds is delivered through
        the host) and opens the new one; ``runtime.link`` / ``unlink`` wait for it.
        """
        want = self.device_target(route, kernels)
        have = self.link_out
        if have is not None and have.down is want:
            return None
        if have is None and want is None:
            return None
        return self._loop.create_task(
            self._relink(want), name=f"ring kernel {self.kernel_id} device link"
        )

    async def _relink(self, want: DeviceKernel | None) -> None:
        async with self._lock:
            if self.link_out is not None:
                await self._close_link(self.link_out)
            if want is not None and self._linkable() and want._linkable() and want.link_in is None:
                try:
                    link = DeviceLink(self, want)
                except MemoryError as exc:
                    # The link stays served by the host's route (the forwarder relays it).
                    what = f"device link to {want.kernel_id!r} goes through the host: {exc}"
                    log.warning("ring kernel %r: %s", self.kernel_id, what)
                    self.metrics.event(what)
                    return
                self.link_out = want.link_in = link
                await link.open()
                self.metrics.event(f"device link to {want.kernel_id!r} opened")

    async def _close_links(self) -> None:
        """Close the device links into and out of this loop (it is about to stop)."""
        for link in (self.link_out, self.link_in):
            if link is not None:
                await self._close_link(link)

    async def _close_link(self, link: DeviceLink) -> None:
        if link.closed:
            return
        if link.up.link_out is link:
            link.up.link_out = None
        if link.down.link_in is link:
            link.down.link_in = None
        left = await link.close()
        link.up.metrics.event(f"device link to {link.down.kernel_id!r} closed")
        router = link.up.router
        for msg in left:  # delivered through the host, or dead letters
            if router is not None:
                await router.deliver(link.down.kernel_id, msg, None, link.up.kernel_id)
            else:
                link.down.inbox.restage([msg])

    # ---------------------------------------------------------------- waiting
    def _kick(self) -> None:
        self._waits.kick()

    def _spin(self) -> bool:
        return self._waits.spin()

    def _after_write(self) -> None:
        self._waits.after_write()

    # ---------------------------------------------------------------- telemetry
    def device_counters(self) -> dict[str, int]:
        """The counters the device wrote into its control block (all launches added up)."""
        ctl = self._ctl
        out = dict(self._counters_before)
        if ctl is not None:
            for name in _COUNTERS:
                out[name] += ctl[WORD[name]]
        return out

    def telemetry(self) -> KernelTelemetry:
        """A frozen snapshot: host-side figures merged with the device's own counters."""
        self._check_health()
        m = self.metrics
        dev = self.device_counters()
        m.processed = dev["processed"]
        ctl = self._ctl
        status = STATUS_NAMES.get(ctl[WORD["status"]], "?") if ctl is not None else "stopped"
        d: DeviceDefinition = self.spec.device
        b = self.build
        extra = {
            "device_status": status,
            "mode": d.mode,
            "threads": self._threads,
            "heartbeat": dev["heartbeat"],
            "idle_polls": dev["idle_polls"],
            "busy_s": dev["busy_ns"] / 1e9,
            "outbox_full_waits": dev["full_waits"],
            "sleeping": bool(ctl[WORD["sleeping"]]) if ctl is not None else False,
            "process_id": getattr(self._launcher, "pid", None),
            "staged": self.inbox.staged,
            "ring_window": self.inbox.window,
            "cache_hit": None if b is None else b.cache_hit,
            "compile_s": None if b is None else b.compile_s,
            "compiler": None if b is None else b.compiler,
            # Device-to-device links: the kernel a link ring joins this one to (each way),
            # and the messages in the outgoing ring now.
            # A link shows once its loops were told to switch (runtime.link waits for that).
            "device_link_to": self.link_out.down.kernel_id if _open(self.link_out) else None,
            "device_link_from": self.link_in.up.kernel_id if _open(self.link_in) else None,
            "device_link_depth": self.link_out.depth() if _open(self.link_out) else 0,
        }
        if isinstance(self.error, DeviceFaultError):
            extra["context_usable"] = self.error.context_usable
            extra["cuda_error"] = self.error.cuda_error
        return self._telemetry(processed=dev["processed"], restarts=0, extra=extra)

    # ---------------------------------------------------------------- state
    def _kept_state(self, new: RingKernelSpec) -> bytes | None:
        """The old loop's state, if ``new`` keeps its layout (else the new loop starts zeroed)."""
        old_l, new_l = _state_layout(self.spec.device), _state_layout(new.device)
        if old_l is None or new_l is None or old_l.dtype != new_l.dtype:
            if old_l is not None:
                self.metrics.event("state reset: the new State layout differs")
            return None
        return self._last_state

    def _stateful(self, verb: str) -> Any:
        layout = _state_layout(self.spec.device)
        if layout is None:
            d: DeviceDefinition = self.spec.device
            why = "a parallel kernel is stateless" if d.mode == "parallel" else "no state_type"
            raise KernelStateError(
                f"{verb} of device ring kernel {self.kernel_id!r}: it has no state ({why}); "
                "declare state_type= on a sequential kernel"
            )
        return layout

    async def _parked(self) -> None:
        """Wait until the loop has seen the park command (and stored its state)."""
        ctl = self._ctl
        parked = await self._waits.until(
            lambda: ctl[WORD["status"]] == STATUS_PARKED, START_TIMEOUT_S
        )
        if not parked:
            self._check_health()
            if self.error is not None:
                raise KernelFailedError.caused_by(self.kernel_id, self.error)
            raise OperationTimeoutError(
                f"device ring kernel {self.kernel_id!r} did not park within {START_TIMEOUT_S} "
                "s (a handler that never returns?); its state cannot be read safely"
            )

    async def read_state(self) -> np.void:
        """The kernel's ``State`` as a numpy record (a copy).

        An active loop is parked for the copy and resumed; after ``terminate`` it is the
        state the loop had when it exited.
        """
        layout = self._stateful("read_state")
        async with self._lock:
            slot = self._state_slot
            if slot is None or self._launcher is None:
                raw = self._last_state or bytes(layout.itemsize)
                return np.frombuffer(raw, layout.dtype)[0].copy()
            self._check_health()
            active = self.inbox.commanded == CMD_ACTIVE
            self.inbox.command(CMD_PARK)
            try:
                await self._parked()
                return np.frombuffer(slot.tobytes(), layout.dtype)[0].copy()
            finally:
                if active:
                    self.inbox.command(CMD_ACTIVE)
                    self._kick()

    async def write_state(self, value: Any) -> None:
        """Set the kernel's ``State`` while it is parked (LAUNCHED or DEACTIVATED).

        ``value`` is a ``State`` message or a numpy record (or one-element array) of its
        layout; the loop loads it when it is activated.
        """
        layout = self._stateful("write_state")
        async with self._lock:
            if self.state not in (S.LAUNCHED, S.DEACTIVATED) or self._state_slot is None:
                raise KernelStateError(
                    f"write_state of device ring kernel {self.kernel_id!r}: it is "
                    f"{self.state.value}; the state can be written only while it is parked "
                    f"(LAUNCHED or DEACTIVATED): await runtime.deactivate({self.kernel_id!r}) "
                    "first"
                )
            raw = _state_bytes(self.kernel_id, layout, value)
            self._check_health()
            await self._parked()
            self._state_slot[:] = np.frombuffer(raw, np.uint8)


def _open(link: DeviceLink | None) -> TypeGuard[DeviceLink]:
    """Whether ``link`` is in place: both loops switched to it (or were told and are busy)."""
    return link is not None and link.opened


def _state_layout(d: DeviceDefinition) -> Any:
    """The fixed layout of a sequential kernel's state (``None`` when it has none)."""
    state_l = d.layouts[2]
    return state_l if d.mode == "sequential" else None


def _state_bytes(kernel_id: str, layout: Any, value: Any) -> bytes:
    """The bytes of ``value`` in the state layout, or a clear error."""
    if isinstance(value, layout.message_type):
        return bytes(layout.to_array([value]).tobytes())
    if isinstance(value, (np.void, np.ndarray)) and value.dtype == layout.dtype and value.size == 1:
        return bytes(np.asarray(value).reshape(1).tobytes())
    t = layout.message_type.__name__
    got = value.dtype if isinstance(value, (np.void, np.ndarray)) else type(value).__name__
    raise MessageTypeError(
        f"write_state of device ring kernel {kernel_id!r}: expected a {t} or a numpy record "
        f"of its layout (fixed_layout({t}).dtype), got {got}"
    )

"""Generate the CUDA C++ source of a device ring kernel: structs, the handler, the loop.

The same text is compiled by NVRTC for a GPU and by the host C++ compiler for the emulated
device (``-DPDC_EMULATED`` swaps in the shim header). ``#line`` directives make compiler
errors in the user's code name ``<kernel>.handle`` / ``<kernel>.prelude`` with the user's own
line numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..._version import __version__
from ...messages._layout import FixedLayout
from ._definition import DeviceDefinition
from ._memory import control_c_source, link_c_source

__all__ = ["GENERATOR_VERSION", "GeneratedSource", "generate"]

GENERATOR_VERSION = "6"
KERNEL_SYMBOL = "pdc_ring_kernel"
SPIN_NS = 200_000  # an idle loop polls without sleeping this long, then sleeps or naps
MAX_NAP_NS = 100_000  # longest __nanosleep of an idle or parked loop
PREEMPTED_NS = 200_000  # a gap this long between two polls: the emulated device was preempted
SEQ_BATCH = 64  # messages a sequential loop takes before re-reading its command word
SEQ_BATCH_NS = 20_000  # ... or fewer, once a batch has run this long
PAR_ROUNDS = 32  # a parallel block takes up to PAR_ROUNDS * blockDim.x messages at once

_PLATFORM = """\
#if defined(PDC_EMULATED)
#include "pdc_emulated.h"  // CUDA names for the host C++ compiler (the emulated device)
#else
// NVRTC has no C library headers: the fixed-width integer types of the message structs.
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
static __device__ __forceinline__ unsigned long long pdc_now_ns()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
// The emulated device records which message is in flight (to name it when a handler faults);
// on a GPU the CUDA error says what happened.
#define PDC_TAKING(first, end)
#define PDC_HANDLING(index)
#endif
// NVRTC cannot evaluate offsetof in a constant expression, so field offsets are checked by
// the host compiler (the emulated device build, run in CI); CUDA lays out these structs by
// the same rules as the host ABI. Sizes are checked by both.
#if defined(PDC_EMULATED)
#define PDC_CHECK_OFFSET(type, member, offset) \\
    static_assert(offsetof(type, member) == offset, "offset of " #type "::" #member)
#else
#define PDC_CHECK_OFFSET(type, member, offset)
#endif"""

_PROTOCOL = f"""\
// Each control word has one writer. The loop polls one word, the doorbell (inbox tail and
// command), with an acquire load, and publishes indices with release stores: on a GPU these
// are ld.acquire.sys / st.release.sys (no full fence per poll); on the emulated device they
// are std::atomic acquire / release. Counters are plain stores, published once per batch.
#if defined(PDC_EMULATED)
static inline unsigned long long pdc_load_acquire(const unsigned long long* p)
{{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}}

static inline void pdc_store_release(unsigned long long* p, unsigned long long v)
{{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}}

static inline void pdc_store_relaxed(unsigned long long* p, unsigned long long v)
{{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}}

// The words of a device link ring: both ends are loops of the same device.
#define pdc_link_load pdc_load_acquire
#define pdc_link_store pdc_store_release

// A slot is read after the acquire load that made it visible: a plain copy.
template <typename T> static inline T pdc_read_slot(const T* slot)
{{
    return *slot;
}}
#else
static __device__ __forceinline__ unsigned long long pdc_load_acquire(const unsigned long long* p)
{{
    unsigned long long v;
#if __CUDA_ARCH__ >= 700
    asm volatile("ld.acquire.sys.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
#else
    v = *reinterpret_cast<const volatile unsigned long long*>(p);
    __threadfence_system();
#endif
    return v;
}}

static __device__ __forceinline__ void pdc_store_release(unsigned long long* p,
                                                         unsigned long long v)
{{
#if __CUDA_ARCH__ >= 700
    asm volatile("st.release.sys.u64 [%0], %1;" : : "l"(p), "l"(v) : "memory");
#else
    __threadfence_system();
    *reinterpret_cast<volatile unsigned long long*>(p) = v;
#endif
}}

static __device__ __forceinline__ void pdc_store_relaxed(unsigned long long* p,
                                                         unsigned long long v)
{{
    *reinterpret_cast<volatile unsigned long long*>(p) = v;
}}

// The words of a device link ring (global memory) are written and read only by two loops on
// the same GPU: device scope (ld.acquire.gpu / st.release.gpu) orders them; no system-scope
// fence is paid per message. The host reads a ring only after both loops acknowledged (with a
// system-scope release) that they let go of it.
static __device__ __forceinline__ unsigned long long pdc_link_load(const unsigned long long* p)
{{
    unsigned long long v;
#if __CUDA_ARCH__ >= 700
    asm volatile("ld.acquire.gpu.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
#else
    v = *reinterpret_cast<const volatile unsigned long long*>(p);
    __threadfence();
#endif
    return v;
}}

static __device__ __forceinline__ void pdc_link_store(unsigned long long* p, unsigned long long v)
{{
#if __CUDA_ARCH__ >= 700
    asm volatile("st.release.gpu.u64 [%0], %1;" : : "l"(p), "l"(v) : "memory");
#else
    __threadfence();
    *reinterpret_cast<volatile unsigned long long*>(p) = v;
#endif
}}

// Ring slots are read with volatile loads (never from a cache): the host rewrites a slot on
// every lap of the ring, and a cached copy of its previous contents must never be seen.
template <typename T> static __device__ __forceinline__ T pdc_read_slot(const T* slot)
{{
    T v;
    if constexpr (alignof(T) % 8 == 0) {{
        const volatile unsigned long long* s =
            reinterpret_cast<const volatile unsigned long long*>(slot);
        unsigned long long* d = reinterpret_cast<unsigned long long*>(&v);
        for (unsigned int i = 0; i < sizeof(T) / 8; ++i) {{
            d[i] = s[i];
        }}
    }} else if constexpr (alignof(T) % 4 == 0) {{
        const volatile unsigned int* s = reinterpret_cast<const volatile unsigned int*>(slot);
        unsigned int* d = reinterpret_cast<unsigned int*>(&v);
        for (unsigned int i = 0; i < sizeof(T) / 4; ++i) {{
            d[i] = s[i];
        }}
    }} else {{
        const volatile unsigned char* s = reinterpret_cast<const volatile unsigned char*>(slot);
        unsigned char* d = reinterpret_cast<unsigned char*>(&v);
        for (unsigned int i = 0; i < sizeof(T); ++i) {{
            d[i] = s[i];
        }}
    }}
    return v;
}}
#endif

// Counters the device publishes into the control block (it is their only writer), and the
// host_wait generation it last signalled (emulated device).
struct pdc_counters {{
    unsigned long long processed, idle_polls, busy_ns, full_waits, heartbeat, told;
}};

static __device__ __forceinline__ void pdc_publish(pdc_control* ctl, const pdc_counters& c)
{{
    pdc_store_relaxed(&ctl->processed, c.processed);
    pdc_store_relaxed(&ctl->idle_polls, c.idle_polls);
    pdc_store_relaxed(&ctl->busy_ns, c.busy_ns);
    pdc_store_relaxed(&ctl->full_waits, c.full_waits);
    pdc_store_relaxed(&ctl->heartbeat, c.heartbeat);
}}

// Tell the host about progress. The emulated device signals the host's wake-up pipe, once per
// host_wait generation, only while the host has said it waits; a GPU cannot signal the host,
// which polls instead (only while somebody waits).
#if defined(PDC_EMULATED)
static inline void pdc_notify_host(pdc_control* ctl, pdc_counters& c)
{{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);  // what was published, before reading host_wait
    const unsigned long long want = __atomic_load_n(&ctl->host_wait, __ATOMIC_ACQUIRE);
    if (want != 0 && want != c.told) {{
        c.told = want;
        pdc_emu::notify_host();
    }}
}}
#else
#define pdc_notify_host(ctl, c) ((void)0)
#endif

static __device__ __forceinline__ void pdc_set_status(pdc_control* ctl, pdc_counters& c,
                                                      unsigned long long& now,
                                                      unsigned long long next)
{{
    if (now != next) {{
        now = next;
        pdc_store_release(&ctl->status, next);
        pdc_notify_host(ctl, c);
    }}
}}

// Idle back-off: poll for {SPIN_NS} ns after the last message, then sleep. The emulated device
// sleeps in the OS (a futex on wake_seq) until the host rings; a GPU naps with doubling
// __nanosleep up to {MAX_NAP_NS} ns. Either way an idle or parked kernel costs almost nothing.
struct pdc_backoff {{
    bool idle;
    unsigned long long since, last;
    unsigned int nap;
}};

// A kernel's device links: its linked output (replies go to that ring instead of the outbox)
// and its linked input (a second inbox, written by the upstream kernel). The host writes a
// descriptor and then its generation; the loop switches between two messages (a parallel
// block: between two batches) and acknowledges the generation. A descriptor names a ring by
// its offset from base: the emulated device's link arena, mapped by each kernel's process;
// on a GPU base is 0 and the descriptor is the ring's device address.
struct pdc_links {{
    unsigned long long base;  // the device's link arena, as this kernel sees it
    pdc_link* out;
    unsigned long long out_gen, out_mask, out_tail, out_head;
    pdc_link* in;
    unsigned long long in_gen, in_mask, in_head;
}};

// Take a new link descriptor the host published; true when one was taken. The loops call it
// between two messages (a parallel block: two batches) when they have nothing to do and after
// each batch, never between the doorbell and the message it announces: on a GPU each call
// reads two words over PCIe, which stay off the path of a message's latency.
static __device__ __forceinline__ bool pdc_switch_links(pdc_control* ctl, pdc_counters& c,
                                                        pdc_links& links)
{{
    bool switched = false;
    const unsigned long long out_gen = pdc_load_acquire(&ctl->link_out_gen);
    if (out_gen != links.out_gen) {{
        switched = true;
        const unsigned long long ring = pdc_load_acquire(&ctl->link_out_ring);
        links.out = ring == 0 ? nullptr : reinterpret_cast<pdc_link*>(links.base + ring);
        links.out_mask = pdc_load_acquire(&ctl->link_out_mask);
        links.out_tail = links.out == nullptr ? 0 : pdc_link_load(&links.out->tail);
        links.out_head = links.out == nullptr ? 0 : pdc_link_load(&links.out->head);
        links.out_gen = out_gen;
        pdc_store_release(&ctl->link_out_ack, out_gen);  // system scope: the host waits on it
        pdc_notify_host(ctl, c);
    }}
    const unsigned long long in_gen = pdc_load_acquire(&ctl->link_in_gen);
    if (in_gen != links.in_gen) {{
        switched = true;
        const unsigned long long ring = pdc_load_acquire(&ctl->link_in_ring);
        links.in = ring == 0 ? nullptr : reinterpret_cast<pdc_link*>(links.base + ring);
        links.in_mask = pdc_load_acquire(&ctl->link_in_mask);
        links.in_head = links.in == nullptr ? 0 : pdc_link_load(&links.in->head);
        links.in_gen = in_gen;
        pdc_store_release(&ctl->link_in_ack, in_gen);
        pdc_notify_host(ctl, c);
    }}
    return switched;
}}

#if defined(PDC_EMULATED)
// sleeping = 1: idle, wake me when the doorbell (or a link generation) changes; 2: the
// outbox is full, wake me also when the host takes replies. The host bumps wake_seq when it
// sees either. With a linked input the loop also wakes when the upstream advances the link
// tail (it stores the tail, then wakes a downstream that says it sleeps). A loop waiting for
// room in its linked output naps instead (nothing wakes it).
static inline void pdc_sleep(pdc_control* ctl, pdc_backoff& b, unsigned long long bell,
                             bool full, unsigned long long out_head, const pdc_links* l)
{{
    const bool gens_same =
        l == nullptr || (__atomic_load_n(&ctl->link_out_gen, __ATOMIC_SEQ_CST) == l->out_gen &&
                         __atomic_load_n(&ctl->link_in_gen, __ATOMIC_SEQ_CST) == l->in_gen);
    if (full && l != nullptr && l->out != nullptr) {{
        // The linked output is full: sleep until the downstream takes some (it wakes a
        // sleeping upstream after each batch) or the host rings.
        pdc_link* out = l->out;
        const unsigned long long seq = __atomic_load_n(&ctl->wake_seq, __ATOMIC_SEQ_CST);
        __atomic_store_n(&ctl->sleeping, 1ull, __ATOMIC_SEQ_CST);
        __atomic_store_n(&out->up_sleeping, 1ull, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&ctl->doorbell, __ATOMIC_SEQ_CST) == bell && gens_same &&
            __atomic_load_n(&out->head, __ATOMIC_SEQ_CST) == l->out_head) {{
            pdc_emu::wait_while_both(&ctl->wake_seq, seq, &out->head, l->out_head);
        }}
        __atomic_store_n(&out->up_sleeping, 0ull, __ATOMIC_SEQ_CST);
        __atomic_store_n(&ctl->sleeping, 0ull, __ATOMIC_SEQ_CST);
        return;
    }}
    // The link tail matters only to a loop that would take from the link now: active, and
    // not waiting for room in its outbox (else a pending link message would keep it awake).
    pdc_link* in = l != nullptr && !full && (bell & PDC_CMD_MASK) == PDC_CMD_ACTIVE ? l->in
                                                                                   : nullptr;
    const unsigned long long seq = __atomic_load_n(&ctl->wake_seq, __ATOMIC_SEQ_CST);
    __atomic_store_n(&ctl->sleeping, full ? 2ull : 1ull, __ATOMIC_SEQ_CST);
    const unsigned long long seen = in != nullptr ? l->in_head : 0;
    if (in != nullptr) {{
        __atomic_store_n(&in->sleeping, 1ull, __ATOMIC_SEQ_CST);
    }}
    if (__atomic_load_n(&ctl->doorbell, __ATOMIC_SEQ_CST) == bell &&
        (!full || __atomic_load_n(&ctl->out_head, __ATOMIC_SEQ_CST) == out_head) &&
        gens_same &&
        (in == nullptr || __atomic_load_n(&in->tail, __ATOMIC_SEQ_CST) == seen)) {{
        if (in != nullptr) {{
            pdc_emu::wait_while_both(&ctl->wake_seq, seq, &in->tail, seen);
        }} else {{
            pdc_emu::wait_while(&ctl->wake_seq, seq);
        }}
    }}
    if (in != nullptr) {{
        __atomic_store_n(&in->sleeping, 0ull, __ATOMIC_SEQ_CST);
    }}
    __atomic_store_n(&ctl->sleeping, 0ull, __ATOMIC_SEQ_CST);
}}

// After a batch taken from the linked input: wake the upstream if it sleeps on a full ring.
static inline void pdc_link_taken(pdc_link* in)
{{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);  // the head stores, before reading up_sleeping
    if (__atomic_load_n(&in->up_sleeping, __ATOMIC_SEQ_CST) != 0) {{
        pdc_emu::wake_all(&in->head);
    }}
}}

// Publish a reply written into the linked output, and wake the downstream if it sleeps.
static inline void pdc_link_publish(pdc_link* out, unsigned long long tail)
{{
    __atomic_store_n(&out->tail, tail, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&out->sleeping, __ATOMIC_SEQ_CST) != 0) {{
        pdc_emu::wake_all(&out->tail);
    }}
}}
#define pdc_relax() pdc_emu::relax()
// Caught up with the host: if the OS runs this process on the host's core, the host (spinning
// for the replies just published) gets the core now rather than at the end of a time slice.
#define pdc_caught_up() std::this_thread::yield()
#else
static __device__ __forceinline__ void pdc_sleep(pdc_control* ctl, pdc_backoff& b,
                                                 unsigned long long bell, bool full,
                                                 unsigned long long out_head,
                                                 const pdc_links* l)
{{
    __nanosleep(b.nap);
    b.nap = b.nap * 2 < {MAX_NAP_NS}u ? b.nap * 2 : {MAX_NAP_NS}u;
}}

// The loops poll the link words (no sleeping on a GPU): release stores are all it takes.
#define pdc_link_taken(in) ((void)0)
static __device__ __forceinline__ void pdc_link_publish(pdc_link* out, unsigned long long tail)
{{
    pdc_link_store(&out->tail, tail);
}}
#define pdc_relax() __nanosleep(32)
#define pdc_caught_up() ((void)0)
#endif

static __device__ __forceinline__ void pdc_idle(pdc_control* ctl, pdc_backoff& b,
                                                pdc_counters& c, unsigned long long bell,
                                                bool full, unsigned long long out_head,
                                                const pdc_links* l)
{{
    const unsigned long long now = pdc_now_ns();
    c.idle_polls += 1;
    if (!b.idle) {{
        b.idle = true;
        b.since = now;
        b.nap = 32;
        pdc_caught_up();
    }} else if (now - b.last > {PREEMPTED_NS}ull) {{
        b.since += now - b.last;  // the OS ran something else: that time was not spent polling
    }}
    b.last = now;
    if (now - b.since < {SPIN_NS}ull) {{
        pdc_relax();
        return;
    }}
    c.heartbeat += 1;
    pdc_publish(ctl, c);
    pdc_sleep(ctl, b, bell, full, out_head, l);
}}"""


@dataclass(frozen=True)
class GeneratedSource:
    """The generated source of one kernel and where the user's code sits in it."""

    text: str
    kernel_id: str
    file_stem: str  # "<kernel>" as written in #line directives

    @property
    def handle_file(self) -> str:
        """The file name compiler messages give for the handler SOURCE."""
        return f"{self.file_stem}.handle"

    @property
    def prelude_file(self) -> str:
        """The file name compiler messages give for the cuda_prelude."""
        return f"{self.file_stem}.prelude"


def _stem(kernel_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", kernel_id) or "kernel"


def _describe(role: str, layout: FixedLayout) -> str:
    fields = ", ".join(
        f"{name} {layout.dtype.fields[name][0]}"  # type: ignore[index]
        for name in layout.dtype.names or ()
        if name not in ("message_id", "priority", "correlation_id")
    )
    return f"// {role:<6} {layout.c_name} ({layout.itemsize} bytes): {fields or 'no fields'}"


def _structs(layouts: list[FixedLayout]) -> str:
    parts = ["#ifndef PDC_UUID_DEFINED", "#define PDC_UUID_DEFINED"]
    parts.append(
        "struct pdc_uuid {\n    unsigned char bytes[16];  // big-endian UUID; all zero means "
        '"none"\n};'
    )
    parts.append("#endif")
    seen: list[type] = []
    for layout in layouts:
        for t in [*layout.nested_types, layout.message_type]:
            if t not in seen:
                seen.append(t)
                parts.append(_checked(t.__pdc_message__.layout.c_struct()))  # type: ignore[attr-defined]
    return "\n".join(parts)


_OFFSET_ASSERT = re.compile(r'static_assert\(offsetof\((\w+), (\w+)\) == (\d+), "[^"]*"\);')


def _checked(c_text: str) -> str:
    """Route ``offsetof`` asserts through PDC_CHECK_OFFSET (NVRTC cannot evaluate them)."""
    return _OFFSET_ASSERT.sub(r"PDC_CHECK_OFFSET(\1, \2, \3);", c_text)


class _Lines:
    """Collects source lines; ``restore()`` emits a #line back to the generated file."""

    def __init__(self, file_name: str) -> None:
        self.lines: list[str] = []
        self.file_name = file_name

    def add(self, text: str) -> None:
        self.lines.extend(text.split("\n"))

    def user(self, file_name: str, code: str) -> None:
        self.lines.append(f'#line 1 "{file_name}"')
        self.lines.extend(code.rstrip("\n").split("\n"))
        self.restore()

    def restore(self) -> None:
        # The directive names the number of the line that follows it.
        self.lines.append(f'#line {len(self.lines) + 2} "{self.file_name}"')


def generate(kernel_id: str, d: DeviceDefinition) -> GeneratedSource:
    """Return the complete CUDA C++ source of the device ring kernel ``kernel_id``."""
    stem = _stem(kernel_id)
    in_l, out_l, state_l = d.layouts
    state_name = state_l.c_name if state_l is not None else "pdc_no_state"
    if d.mode == "sequential":
        mode_line = "sequential: one thread takes one message at a time; state persists"
    else:
        mode_line = (
            f"parallel: a block of {d.block_size} threads takes up to "
            f"{PAR_ROUNDS} x {d.block_size} messages at once; stateless"
        )
    out = _Lines(f"{stem}.cu")
    out.add(f"""\
// PyDotCompute device ring kernel {kernel_id!r}
// Generated by pydotcompute.backends.device, generator {GENERATOR_VERSION} (pydotcompute \
{__version__}).
// mode: {mode_line}
{_describe("input", in_l)}
{_describe("output", out_l)}
{_describe("state", state_l) if state_l is not None else "// state  none"}
// The loop polls the inbox ring, calls handle() per message and writes its reply to the
// outbox ring (sequential handlers may skip_reply()); the mailbox protocol is described in
// docs/articles/concepts/device-mailboxes.md.
// Built by NVRTC for CUDA, or by the host C++ compiler with -DPDC_EMULATED.

{_PLATFORM}

// ---- message layouts (offsets match the numpy dtypes, checked below) ----------------
{_structs([x for x in (in_l, out_l, state_l) if x is not None])}
""")
    if state_l is None:
        out.add("struct pdc_no_state {\n};\n")
    out.add(f"""\
// ---- control block and protocol -----------------------------------------------------
{_checked(control_c_source())}
{link_c_source()}

{_PROTOCOL}
""")
    if d.prelude.strip():
        out.add("// ---- cuda_prelude ----------------------------------------------------------")
        out.user(f"{stem}.prelude", d.prelude)
        out.add("")
    out.add("// ---- the handler (cuda=) ------------------------------------------------------")
    if d.mode == "sequential":
        # Parallel handlers write their reply to a fixed slot, so they cannot skip it; there
        # the name stays undefined and the compile error says why (see _compile.HINTS).
        out.add("// skip_reply(): this message gets no reply (the loop writes nothing for it).")
        out.add("#define skip_reply() (pdc_reply = false)")
    out.add(
        f"__device__ void handle(const {in_l.c_name}& msg, {out_l.c_name}& out, "
        f"{state_name}& state, bool& pdc_reply)\n{{"
    )
    out.user(f"{stem}.handle", d.source)
    out.add("}\n#undef skip_reply\n" if d.mode == "sequential" else "}\n")
    loop = _SEQUENTIAL if d.mode == "sequential" else _PARALLEL
    out.add(
        loop.format(
            sym=KERNEL_SYMBOL,
            In=in_l.c_name,
            Out=out_l.c_name,
            State=state_name,
            batch=SEQ_BATCH,
            batch_ns=SEQ_BATCH_NS,
            rounds=PAR_ROUNDS,
            # Parallel blocks: registers are allotted so that block_size threads fit an SM.
            bounds=f"__launch_bounds__({d.block_size}) " if d.mode == "parallel" else "",
        )
    )
    return GeneratedSource("\n".join(out.lines) + "\n", kernel_id, stem)


_HEAD = """\
// ---- the persistent loop ----------------------------------------------------------
extern "C" __global__ void {bounds}{sym}(
    unsigned long long control_addr,
    unsigned long long inbox_addr,
    unsigned long long outbox_addr,
    unsigned long long in_mask,
    unsigned long long out_mask,
    unsigned long long out_limit)
{{
    pdc_control* ctl = reinterpret_cast<pdc_control*>(control_addr);
    const {In}* inbox = reinterpret_cast<const {In}*>(inbox_addr);
    {Out}* outbox = reinterpret_cast<{Out}*>(outbox_addr);
"""

_REPLY = """\
            out.message_id = pdc_uuid();  // zero: the host gives the reply a fresh id
            out.correlation_id = msg.message_id;
            out.priority = msg.priority;"""

_SEQUENTIAL = (
    _HEAD
    + """\
    // The state lives in the loop while it is active and in its slot (after the outbox ring)
    // while it is parked: loaded on activation, stored back on parking and exit, so the host
    // can read and write it while parked and a relaunch can carry it over.
    {State}* state_slot = reinterpret_cast<{State}*>(
        (outbox_addr + (out_mask + 1ull) * sizeof({Out}) + 63ull) & ~63ull);
    {State} state = pdc_read_slot(state_slot);  // zero at the first launch
    bool was_active = false;
    unsigned long long head = pdc_load_acquire(&ctl->in_head);
    unsigned long long out_tail = pdc_load_acquire(&ctl->out_tail);
    unsigned long long out_head = pdc_load_acquire(&ctl->out_head);
    pdc_links links = pdc_links();
    links.base = pdc_load_acquire(&ctl->link_base);
    pdc_counters c = pdc_counters();
    pdc_backoff backoff = pdc_backoff();
    unsigned long long status = 0;
    pdc_set_status(ctl, c, status, PDC_STATUS_PARKED);
    for (;;) {{
        // One load says all the host has to say: the command and the inbox tail.
        const unsigned long long bell = pdc_load_acquire(&ctl->doorbell);
        const unsigned long long cmd = bell & PDC_CMD_MASK;
        if (cmd == PDC_CMD_TERMINATE) {{
            break;
        }}
        {Out}* const link_out = links.out == nullptr ? nullptr :
            reinterpret_cast<{Out}*>(reinterpret_cast<char*>(links.out) + sizeof(pdc_link));
        const {In}* const link_in = links.in == nullptr ? nullptr :
            reinterpret_cast<const {In}*>(reinterpret_cast<char*>(links.in) + sizeof(pdc_link));
        const bool active = cmd == PDC_CMD_ACTIVE;
        if (active != was_active) {{
            was_active = active;
            if (active) {{
                state = pdc_read_slot(state_slot);  // the host may have written it
            }} else {{
                *state_slot = state;  // published by the status store below
            }}
        }}
        pdc_set_status(ctl, c, status, active ? PDC_STATUS_ACTIVE : PDC_STATUS_PARKED);
        const unsigned long long tail = active ? bell >> PDC_CMD_BITS : head;
        const unsigned long long link_tail =
            active && link_in != nullptr ? pdc_link_load(&links.in->tail) : links.in_head;
        if (tail == head && link_tail == links.in_head) {{
            if (!pdc_switch_links(ctl, c, links)) {{  // nothing to do: a link switch?
                pdc_idle(ctl, backoff, c, bell, false, 0, &links);
            }}
            continue;
        }}
        const unsigned long long t0 = pdc_now_ns();
        const unsigned long long done = c.processed;
        const unsigned long long link_start = links.in_head;
        // Up to {batch} messages from the host's inbox, then up to {batch} from the link.
        const unsigned long long end = tail - head > {batch}ull ? head + {batch}ull : tail;
        const unsigned long long link_end = link_tail - links.in_head > {batch}ull ?
            links.in_head + {batch}ull : link_tail;
        bool outbox_full = false;
        while (head != end || links.in_head != link_end) {{
            if (link_out != nullptr) {{
                if (links.out_tail - links.out_head > links.out_mask) {{
                    links.out_head = pdc_link_load(&links.out->head);
                    if (links.out_tail - links.out_head > links.out_mask) {{
                        outbox_full = true;  // the downstream is behind: wait for it
                        break;
                    }}
                }}
            }} else if (out_tail - out_head >= out_limit) {{
                out_head = pdc_load_acquire(&ctl->out_head);
                if (out_tail - out_head >= out_limit) {{
                    outbox_full = true;  // wait for the host: a reply is never overwritten
                    break;
                }}
            }}
            const bool from_host = head != end;
            const {In} msg = from_host ? pdc_read_slot(&inbox[head & in_mask])
                                       : pdc_read_slot(&link_in[links.in_head & links.in_mask]);
            // Taken before the handler runs: the inbox depth the host sees excludes it, and a
            // fault from here on loses only this message (a GPU cannot say which one failed).
            if (from_host) {{
                PDC_TAKING(head, head + 1);
                head += 1;
                pdc_store_release(&ctl->in_head, head);
            }} else {{
                PDC_TAKING(~0ull, ~0ull);  // a link message: the host has no index for it
                links.in_head += 1;
                pdc_link_store(&links.in->head, links.in_head);
            }}
            {Out} out = {Out}();
            bool reply = true;
            handle(msg, out, state, reply);
            if (reply) {{
    """
    + _REPLY.replace("\n", "\n    ")
    + """
                if (link_out != nullptr) {{
                    out.message_id = msg.message_id;  // carried along the link (no host here)
                    link_out[links.out_tail & links.out_mask] = out;
                    links.out_tail += 1;
                    pdc_link_publish(links.out, links.out_tail);  // the downstream sees it
                }} else {{
                    outbox[out_tail & out_mask] = out;
                    out_tail += 1;
                    pdc_store_release(&ctl->out_tail, out_tail);  // the reply is visible
                }}
            }}
            c.processed += 1;
            if (pdc_now_ns() - t0 > {batch_ns}ull) {{
                break;  // a slow handler: publish now and look at the doorbell again
            }}
        }}
        if (links.in_head != link_start) {{
            pdc_link_taken(links.in);
        }}
        if (c.processed != done) {{
            c.busy_ns += pdc_now_ns() - t0;
            c.heartbeat += 1;
            pdc_publish(ctl, c);
            backoff.idle = false;
            pdc_notify_host(ctl, c);
        }}
        // Device links switch here, between two messages (see struct pdc_links).
        const bool switched = pdc_switch_links(ctl, c, links);
        if (outbox_full) {{
            c.full_waits += 1;
            pdc_notify_host(ctl, c);
            if (!switched) {{
                pdc_idle(ctl, backoff, c, bell, true, out_head, &links);
            }}
        }}
    }}
    if (was_active) {{
        *state_slot = state;
    }}
    pdc_publish(ctl, c);
    pdc_store_release(&ctl->status, PDC_STATUS_EXITED);
    pdc_notify_host(ctl, c);
}}
"""
)

_PARALLEL = (
    _HEAD
    + """\
    // Thread 0 picks each batch: its source (the host's inbox, or the linked input ring) and
    // where its replies go (the outbox, or the linked output ring), in the same order.
    __shared__ unsigned long long s_cmd, s_count, s_head, s_out, s_in_mask, s_out_mask;
    __shared__ const {In}* s_src;
    __shared__ {Out}* s_dst;
    __shared__ bool s_from_link, s_to_link;
    {State} state = {State}();  // stateless: nothing survives a message
    unsigned long long head = 0, out_tail = 0, out_head = 0, status = 0, t0 = 0;
    bool prefer_link = false;  // the two sources take turns, batch by batch
    pdc_counters c = pdc_counters();
    pdc_backoff backoff = pdc_backoff();
    pdc_links links = pdc_links();
    if (threadIdx.x == 0) {{
        head = pdc_load_acquire(&ctl->in_head);
        out_tail = pdc_load_acquire(&ctl->out_tail);
        out_head = pdc_load_acquire(&ctl->out_head);
        links.base = pdc_load_acquire(&ctl->link_base);
        pdc_set_status(ctl, c, status, PDC_STATUS_PARKED);
    }}
    for (;;) {{
        if (threadIdx.x == 0) {{
            // Thread 0 alone looks for work; the rest of the block waits at the barrier.
            unsigned long long cmd = 0, count = 0;
            bool take_link = false;
            for (;;) {{
                const unsigned long long bell = pdc_load_acquire(&ctl->doorbell);
                cmd = bell & PDC_CMD_MASK;
                if (cmd == PDC_CMD_TERMINATE) {{
                    break;
                }}
                const bool active = cmd == PDC_CMD_ACTIVE;
                pdc_set_status(ctl, c, status, active ? PDC_STATUS_ACTIVE : PDC_STATUS_PARKED);
                bool full = false;
                if (active) {{
                    const unsigned long long host_avail = (bell >> PDC_CMD_BITS) - head;
                    const unsigned long long link_avail =
                        links.in == nullptr ? 0 : pdc_link_load(&links.in->tail) - links.in_head;
                    const bool from_link =
                        link_avail != 0 && (host_avail == 0 || prefer_link);
                    const unsigned long long avail = from_link ? link_avail : host_avail;
                    if (avail != 0) {{
                        const unsigned long long most = {rounds}ull * blockDim.x;
                        const unsigned long long want = avail < most ? avail : most;
                        unsigned long long room = 0;
                        if (links.out != nullptr) {{
                            const unsigned long long size = links.out_mask + 1ull;
                            if (size - (links.out_tail - links.out_head) < want) {{
                                links.out_head = pdc_link_load(&links.out->head);
                            }}
                            room = size - (links.out_tail - links.out_head);
                        }} else {{
                            if (out_limit - (out_tail - out_head) < want) {{
                                out_head = pdc_load_acquire(&ctl->out_head);
                            }}
                            room = out_limit - (out_tail - out_head);
                        }}
                        if (room != 0) {{
                            count = want < room ? want : room;
                            take_link = from_link;
                            prefer_link = !from_link;
                            break;
                        }}
                        // The outbox (wait for the host) or the linked output (wait for the
                        // downstream) is full: a reply is never overwritten.
                        c.full_waits += 1;
                        full = true;
                        pdc_notify_host(ctl, c);
                    }}
                }}
                if (!pdc_switch_links(ctl, c, links)) {{  // no batch to take: a link switch?
                    pdc_idle(ctl, backoff, c, bell, full, out_head, &links);
                }}
            }}
            backoff.idle = false;
            s_cmd = cmd;
            s_count = count;
            s_from_link = take_link;
            if (take_link) {{
                s_src = reinterpret_cast<const {In}*>(
                    reinterpret_cast<const char*>(links.in) + sizeof(pdc_link));
                s_head = links.in_head;
                s_in_mask = links.in_mask;
                PDC_TAKING(~0ull, ~0ull);  // a link batch: the host has no index for it
            }} else {{
                s_src = inbox;
                s_head = head;
                s_in_mask = in_mask;
                PDC_TAKING(head, head + count);  // a fault loses this batch, nothing after it
            }}
            s_to_link = links.out != nullptr;
            if (s_to_link) {{
                s_dst = reinterpret_cast<{Out}*>(reinterpret_cast<char*>(links.out) +
                                                 sizeof(pdc_link));
                s_out = links.out_tail;
                s_out_mask = links.out_mask;
            }} else {{
                s_dst = outbox;
                s_out = out_tail;
                s_out_mask = out_mask;
            }}
            t0 = pdc_now_ns();
        }}
        __syncthreads();
        if (s_cmd == PDC_CMD_TERMINATE) {{
            break;
        }}
        // Message i of the batch replies into slot i after the destination's tail: replies
        // keep the order of the messages, whichever thread handles each.
        for (unsigned long long i = threadIdx.x; i < s_count; i += blockDim.x) {{
            const {In} msg = pdc_read_slot(&s_src[(s_head + i) & s_in_mask]);
            PDC_HANDLING(s_from_link ? ~0ull : s_head + i);
            {Out} out = {Out}();
            bool reply = true;
            handle(msg, out, state, reply);
"""
    + _REPLY
    + """
            if (s_to_link) {{
                out.message_id = msg.message_id;  // carried along the link (no host here)
            }}
            s_dst[(s_out + i) & s_out_mask] = out;
        }}
        __threadfence_system();  // once per batch: this thread's replies, before the barrier
        __syncthreads();
        if (threadIdx.x == 0) {{
            if (s_from_link) {{
                links.in_head += s_count;  // taken after the batch: the slots were read
                pdc_link_store(&links.in->head, links.in_head);
                pdc_link_taken(links.in);
            }} else {{
                head += s_count;
                pdc_store_release(&ctl->in_head, head);
            }}
            if (s_to_link) {{
                links.out_tail += s_count;
                pdc_link_publish(links.out, links.out_tail);  // the downstream sees them
            }} else {{
                out_tail += s_count;
                pdc_store_release(&ctl->out_tail, out_tail);
            }}
            c.processed += s_count;
            c.busy_ns += pdc_now_ns() - t0;
            c.heartbeat += 1;
            pdc_publish(ctl, c);
            pdc_notify_host(ctl, c);
            pdc_switch_links(ctl, c, links);  // between two batches
        }}
    }}
    if (threadIdx.x == 0) {{
        pdc_publish(ctl, c);
        pdc_store_release(&ctl->status, PDC_STATUS_EXITED);
        pdc_notify_host(ctl, c);
    }}
}}
"""
)

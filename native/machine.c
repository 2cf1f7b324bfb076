/* machine.c: creating a machine, the run loop and the host-facing API.
 *
 * The run loop alternates two things: between slices it takes pending
 * interrupts, notices stops and computes how far the next slice may go (the
 * budget, or the next timer deadline); cpu_run_slice() then executes without
 * looking at any of that.  A slice ends early whenever an instruction changes
 * something interrupts depend on (cpu_kick), so interrupts are taken at
 * exactly the instruction boundary they become deliverable: deterministic,
 * whatever the slicing.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include "machine.h"

struct machine *machine_new(const struct chrono_config *cfg)
{
    if (cfg->ram_size == 0 || cfg->ram_size % PAGE_SIZE || cfg->ram_size > (1ull << 40))
        return NULL;
    struct machine *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    m->ram_size = cfg->ram_size;
    /* Anonymous mapping: zero pages cost nothing until touched. */
    void *ram = mmap(NULL, cfg->ram_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    m->ram_dirty = calloc(cfg->ram_size / PAGE_SIZE, 1);
    m->ram_present = malloc(cfg->ram_size / PAGE_SIZE);
    m->code = calloc(cfg->ram_size / PAGE_SIZE, sizeof *m->code);
    m->code_list = malloc(cfg->ram_size / PAGE_SIZE * sizeof *m->code_list);
    bool blocks = block_cache_init(&m->blocks);
    bool fw_cfg = fw_cfg_init(m);
    if (ram == MAP_FAILED || !m->ram_dirty || !m->ram_present || !m->code || !m->code_list ||
        !blocks || !fw_cfg) {
        if (ram != MAP_FAILED) munmap(ram, cfg->ram_size);
        free(m->ram_dirty);
        free(m->ram_present);
        free(m->code);
        free(m->code_list);
        block_cache_free(&m->blocks);
        fw_cfg_free(m);
        free(m);
        return NULL;
    }
    m->ram = ram;
    jit_init(&m->jit, !cfg->no_jit, cfg->jit_threshold > UINT32_MAX ? UINT32_MAX : (uint32_t)cfg->jit_threshold);
    memset(m->ram_present, 1, cfg->ram_size / PAGE_SIZE);
    m->htif_page = cfg->htif_tohost ? cfg->htif_tohost & ~0xfffull : UINT64_MAX;
    m->stop_reason = -1;
    machine_reset(m, RAM_BASE, 0, 0, 0);
    capture_prepare_ram(m);
    return m;
}

void machine_free(struct machine *m)
{
    if (!m)
        return;
    munmap(m->ram, m->ram_size);
    free(m->ram_dirty);
    free(m->ram_present);
    free(m->code);
    free(m->code_list);
    block_cache_free(&m->blocks);
    jit_free(&m->jit);
    capture_free(m);
    free(m->disk_dirty);
    free(m->disk_written);
    net_free(m);
    fw_cfg_free(m);
    free(m);
}

const char *machine_error(struct machine *m) { return m->error; }

uint8_t *machine_ram(struct machine *m) { return m->ram; }
uint64_t machine_ram_size(struct machine *m) { return m->ram_size; }
uint8_t *machine_ram_dirty(struct machine *m) { return m->ram_dirty; }

void machine_clear_ram_dirty(struct machine *m)
{
    memset(m->ram_dirty, 0, m->ram_size / PAGE_SIZE);
    tlb_flush_writes(m);        /* the next store to each page re-marks it */
}

uint8_t *machine_ram_present(struct machine *m) { return m->ram_present; }

void machine_set_page_provider(struct machine *m, chrono_page_provider provider, void *ctx)
{
    m->page_provider = provider;
    m->page_provider_ctx = ctx;
}

void machine_invalidate_ram(struct machine *m)
{
    tlb_flush(m);
    m->host_wrote = true;
}

void machine_host_wrote(struct machine *m) { m->host_wrote = true; }

void machine_host_will_write(struct machine *m, int disk, uint64_t offset, uint64_t len)
{
    if (disk)
        disk_before_write(m, offset, len);
    else
        ram_before_write(m, RAM_BASE + offset, len);
}

void ram_materialize(struct machine *m, uint64_t page_index)
{
    /* Mark first: the provider may touch RAM through the API itself. */
    m->ram_present[page_index] = 1;
    m->code[page_index].gen = 0;
    if (!m->page_provider || m->page_provider(m->page_provider_ctx, page_index) != 0) {
        memset(m->ram + page_index * PAGE_SIZE, 0, PAGE_SIZE);
        snprintf(m->error, sizeof m->error, "RAM page %#llx could not be restored",
                 (unsigned long long)(RAM_BASE + page_index * PAGE_SIZE));
        machine_request_stop(m, CHRONO_STOP_FATAL, page_index);
    }
}

int machine_attach_disk(struct machine *m, uint8_t *data, uint64_t size)
{
    if (m->disk || size % 512)
        return -1;
    uint64_t blocks = (size + PAGE_SIZE - 1) / PAGE_SIZE;
    m->disk_dirty = calloc(blocks ? blocks : 1, 1);
    m->disk_written = calloc(blocks ? blocks : 1, 1);
    if (!m->disk_dirty || !m->disk_written)
        return -1;
    m->disk = data;
    m->disk_size = size;
    virtio_blk_reset(m);
    capture_prepare_disk(m);
    return 0;
}

uint8_t *machine_disk_dirty(struct machine *m) { return m->disk_dirty; }
uint8_t *machine_disk_written(struct machine *m) { return m->disk_written; }
uint64_t machine_disk_blocks(struct machine *m) { return (m->disk_size + PAGE_SIZE - 1) / PAGE_SIZE; }

void machine_clear_disk_dirty(struct machine *m)
{
    if (m->disk_dirty)
        memset(m->disk_dirty, 0, machine_disk_blocks(m));
}

void machine_reset(struct machine *m, uint64_t pc, uint64_t a0, uint64_t a1, uint64_t a2)
{
    memset(&m->hart, 0, sizeof m->hart);
    csr_reset(&m->hart);
    m->hart.pc = pc;
    m->hart.x[10] = a0;
    m->hart.x[11] = a1;
    m->hart.x[12] = a2;
    uart_reset(m);
    rtc_reset(m);
    clint_reset(m);
    plic_reset(m);
    virtio_blk_reset(m);
    virtio_rng_reset(m);
    virtio_net_reset(m);
    fw_cfg_reset(m);
    pci_reset(m);
    pmp_update(m);
    tlb_flush(m);
}

void cpu_kick(struct machine *m) { m->slice_end = 0; }

void machine_request_stop(struct machine *m, int reason, uint64_t code)
{
    if (m->stop_reason < 0) {
        m->stop_reason = reason;
        m->stop_code = code;
    }
    cpu_kick(m);
}

void console_put(struct machine *m, uint8_t byte)
{
    if (m->console_out_len < CONSOLE_OUT_SIZE) {
        m->console_out_steps[m->console_out_len] = m->hart.steps;
        m->console_out[m->console_out_len++] = byte;
    }
    if (m->console_out_len >= CONSOLE_OUT_HIGH)
        machine_request_stop(m, CHRONO_STOP_OUTPUT, 0);
}

static uint64_t vclock_of_tick(uint64_t tick)
{
    return tick > UINT64_MAX / STEPS_PER_TICK ? UINT64_MAX : tick * STEPS_PER_TICK;
}

/* Virtual clock of the next timer event (enabled timer interrupt or RTC
 * alarm), UINT64_MAX if none. */
static uint64_t next_timer_vclock(struct machine *m)
{
    struct hart *h = &m->hart;
    uint64_t deadline = UINT64_MAX;
    if (h->mie & MIP_MTIP)
        deadline = vclock_of_tick(m->clint.mtimecmp);
    if ((h->mie & MIP_STIP) && ((h->menvcfg >> 63) & 1)) {
        uint64_t s = vclock_of_tick(h->stimecmp);
        if (s < deadline) deadline = s;
    }
    /* The alarm changes device state whether or not its interrupt is
     * enabled, so it always bounds a slice: it fires at an exact step. */
    uint64_t alarm = rtc_alarm_vclock(m);
    if (alarm < deadline)
        deadline = alarm;
    return deadline;
}

void machine_run(struct machine *m, uint64_t max_steps, struct chrono_result *out)
{
    struct hart *h = &m->hart;
    uint64_t start = h->steps;
    uint64_t target = max_steps > UINT64_MAX - start ? UINT64_MAX : start + max_steps;

    m->stop_reason = -1;
    m->stop_code = 0;
    block_cache_recheck(m, m->host_wrote);
    m->host_wrote = false;
    m->bp_skip_steps = h->steps;
    m->bp_skip_pc = h->pc;
    m->watch_hit.kind = 0;
    out->deadline = UINT64_MAX;
    out->code = 0;

    for (;;) {
        if (m->stop_reason >= 0)
            break;
        if (m->console_out_len >= CONSOLE_OUT_HIGH) {
            m->stop_reason = CHRONO_STOP_OUTPUT;
            break;
        }
        if (h->steps >= target) {
            m->stop_reason = CHRONO_STOP_BUDGET;
            break;
        }
        rtc_tick(m);
        if (hart_pending_interrupts(m))
            h->wfi = 0;
        trap_check_interrupts(m);
        if (h->wfi) {
            m->stop_reason = CHRONO_STOP_IDLE;
            out->deadline = next_timer_vclock(m);
            break;
        }
        uint64_t end = target;
        uint64_t deadline = next_timer_vclock(m);
        if (deadline != UINT64_MAX && deadline > machine_vclock_now(m)) {
            uint64_t deadline_steps = deadline - h->idle_skipped;
            if (deadline_steps < end)
                end = deadline_steps;
        }
        cpu_run_slice(m, end);
    }
    out->reason = m->stop_reason;
    out->code = m->stop_code;
    out->executed = h->steps - start;
}

uint64_t machine_steps(struct machine *m) { return m->hart.steps; }
uint64_t machine_vclock(struct machine *m) { return machine_vclock_now(m); }
uint64_t machine_mtime(struct machine *m) { return machine_mtime_now(m); }
uint64_t machine_timebase_hz(void) { return TIMEBASE_HZ; }
uint64_t machine_steps_per_tick(void) { return STEPS_PER_TICK; }

void machine_skip_to(struct machine *m, uint64_t vclock)
{
    uint64_t now = machine_vclock_now(m);
    if (vclock > now && vclock != UINT64_MAX)
        m->hart.idle_skipped += vclock - now;
}

bool machine_at_breakpoint(struct machine *m, uint64_t pc)
{
    for (int i = 0; i < m->nbreakpoints; i++)
        if (m->breakpoints[i] == pc) return true;
    return false;
}

bool machine_stops_at_breakpoint(struct machine *m, uint64_t pc, uint64_t steps)
{
    if (!machine_at_breakpoint(m, pc))
        return false;
    if (m->bp_pass) {
        m->bp_hits.count++;
        m->bp_hits.last_steps = steps;
        m->bp_hits.last_pc = pc;
        return false;
    }
    return !(steps == m->bp_skip_steps && pc == m->bp_skip_pc);
}

void machine_pass_breakpoints(struct machine *m, int on)
{
    m->bp_pass = on != 0;
    if (on)
        memset(&m->bp_hits, 0, sizeof m->bp_hits);
}

void machine_breakpoint_hits(struct machine *m, struct chrono_breakpoint_hits *out)
{
    *out = m->bp_hits;
}

int machine_add_breakpoint(struct machine *m, uint64_t pc)
{
    for (int i = 0; i < m->nbreakpoints; i++)
        if (m->breakpoints[i] == pc) return 0;
    if (m->nbreakpoints == MAX_BREAKPOINTS) return -1;
    m->breakpoints[m->nbreakpoints++] = pc;
    block_cache_flush(&m->blocks);      /* blocks stop before breakpoints */
    return 0;
}

int machine_remove_breakpoint(struct machine *m, uint64_t pc)
{
    for (int i = 0; i < m->nbreakpoints; i++) {
        if (m->breakpoints[i] == pc) {
            m->breakpoints[i] = m->breakpoints[--m->nbreakpoints];
            block_cache_flush(&m->blocks);
            return 0;
        }
    }
    return -1;
}

void machine_get_xregs(struct machine *m, uint64_t out[32])
{
    memcpy(out, m->hart.x, sizeof m->hart.x);
}

uint64_t machine_get_reg(struct machine *m, int idx)
{
    if (idx >= 0 && idx < 32) return m->hart.x[idx];
    if (idx == 32) return m->hart.pc;
    if (idx == 33) return m->hart.priv;
    if (idx >= 34 && idx < 66) return m->hart.f[idx - 34];
    return 0;
}

void machine_set_reg(struct machine *m, int idx, uint64_t value)
{
    if (idx > 0 && idx < 32) m->hart.x[idx] = value;
    else if (idx == 32) m->hart.pc = value;
    else if (idx == 33 && (value == PRV_U || value == PRV_S || value == PRV_M)) {
        m->hart.priv = (uint8_t)value;
        tlb_flush(m);
    } else if (idx >= 34 && idx < 66) m->hart.f[idx - 34] = value;
}

int machine_get_csr(struct machine *m, int csr, uint64_t *value)
{
    /* A debugger sees every CSR as M-mode would, and the FP CSRs even while
     * mstatus.FS is Off (when an instruction could not read them). */
    uint32_t fcsr = m->hart.fcsr;
    switch (csr) {
    case 0x001: *value = fcsr & 0x1f; return 0;
    case 0x002: *value = (fcsr >> 5) & 7; return 0;
    case 0x003: *value = fcsr & 0xff; return 0;
    }
    uint8_t priv = m->hart.priv;
    m->hart.priv = PRV_M;
    bool ok = csr_read(m, csr, value);
    m->hart.priv = priv;
    return ok ? 0 : -1;
}

size_t machine_console_read_steps(struct machine *m, uint8_t *buf, uint64_t *steps, size_t len)
{
    size_t n = m->console_out_len < len ? m->console_out_len : len;
    size_t rest = m->console_out_len - n;
    memcpy(buf, m->console_out, n);
    memmove(m->console_out, m->console_out + n, rest);
    if (steps)
        memcpy(steps, m->console_out_steps, n * sizeof *steps);
    memmove(m->console_out_steps, m->console_out_steps + n, rest * sizeof *steps);
    m->console_out_len = rest;
    return n;
}

size_t machine_console_read(struct machine *m, uint8_t *buf, size_t len)
{
    return machine_console_read_steps(m, buf, NULL, len);
}

size_t machine_console_write(struct machine *m, const uint8_t *buf, size_t len)
{
    return uart_receive(m, buf, len);
}

int machine_console_ready(struct machine *m) { return uart_wants_input(m); }

size_t machine_console_returned(struct machine *m, uint8_t *buf, size_t len)
{
    size_t n = m->console_returned_len < len ? m->console_returned_len : len;
    memcpy(buf, m->console_returned, n);
    m->console_returned_len = 0;
    return n;
}

int machine_jit_enabled(struct machine *m) { return m->jit.enabled; }
uint64_t machine_jit_translated(struct machine *m) { return m->jit.translated; }

void machine_jit_stats(struct machine *m, struct chrono_jit_stats *out)
{
    const struct jit *j = &m->jit;
    out->translated = j->translated;
    out->declined = j->declined;
    out->guest_ops = j->guest_ops;
    out->code_bytes = j->code_bytes;
    out->cache_used = j->enabled ? j->cache.used : 0;
    out->cache_size = j->enabled ? j->cache.size : 0;
    out->flushes = j->enabled ? j->cache.flushes : 0;
}

const uint8_t *machine_jit_code(struct machine *m)
{
    return m->jit.enabled ? m->jit.cache.rx : NULL;
}

void machine_set_input_waiting(struct machine *m, int waiting) { m->input_waiting = waiting; }

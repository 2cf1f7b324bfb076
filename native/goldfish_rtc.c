/* goldfish_rtc.c: the Goldfish real-time clock (QEMU virt has one at 0x101000).
 *
 * Wall-clock time in nanoseconds = base + virtual clock (one step of the
 * virtual clock is one nanosecond: STEPS_PER_TICK / TIMEBASE_HZ = 1e-9 s).
 * base starts as the configured epoch, an input fixed when the machine is
 * created, and moves when the guest sets the time.  The host clock is never
 * read here, so the guest's `date` is deterministic.  One alarm, raised on
 * IRQ 11 when enabled.
 */
#include "machine.h"

_Static_assert(TIMEBASE_HZ * STEPS_PER_TICK == 1000000000ull, "one vclock step must be 1 ns");

enum { RTC_TIME_LOW = 0x00, RTC_TIME_HIGH = 0x04, RTC_ALARM_LOW = 0x08, RTC_ALARM_HIGH = 0x0c,
       RTC_IRQ_ENABLED = 0x10, RTC_CLEAR_ALARM = 0x14, RTC_ALARM_STATUS = 0x18,
       RTC_CLEAR_INTERRUPT = 0x1c };

static uint64_t rtc_now(struct machine *m)
{
    return m->rtc.base_ns + machine_vclock_now(m);
}

static void rtc_update_irq(struct machine *m)
{
    plic_set_level(m, RTC_IRQ, m->rtc.irq_pending && m->rtc.irq_enabled);
}

void rtc_reset(struct machine *m)
{
    m->rtc = (struct rtc_state){ 0 };
    /* The epoch names the wall-clock time at virtual clock 0. */
    m->rtc.base_ns = m->cfg.rtc_epoch_ns;
    rtc_update_irq(m);
}

void rtc_tick(struct machine *m)
{
    struct rtc_state *r = &m->rtc;
    if (r->alarm_armed && rtc_now(m) >= r->alarm_ns) {
        r->alarm_armed = 0;
        r->irq_pending = 1;
        rtc_update_irq(m);
    }
}

uint64_t rtc_alarm_vclock(struct machine *m)
{
    const struct rtc_state *r = &m->rtc;
    if (!r->alarm_armed)
        return UINT64_MAX;
    return r->alarm_ns > r->base_ns ? r->alarm_ns - r->base_ns : 0;
}

static bool rtc_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    struct rtc_state *r = &m->rtc;
    switch (offset) {
    case RTC_TIME_LOW: {
        uint64_t now = rtc_now(m);
        r->time_high_latch = (uint32_t)(now >> 32);     /* read low first, then high */
        *value = (uint32_t)now;
        return true;
    }
    case RTC_TIME_HIGH: *value = r->time_high_latch; return true;
    case RTC_ALARM_LOW: *value = (uint32_t)r->alarm_ns; return true;
    case RTC_ALARM_HIGH: *value = (uint32_t)(r->alarm_ns >> 32); return true;
    case RTC_IRQ_ENABLED: *value = r->irq_enabled; return true;
    case RTC_ALARM_STATUS: *value = r->alarm_armed; return true;
    default: *value = 0; return true;
    }
}

static bool rtc_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    struct rtc_state *r = &m->rtc;
    uint64_t now = rtc_now(m);
    switch (offset) {
    case RTC_TIME_LOW:                   /* set the time: move base, not the clock */
        r->base_ns += ((now & ~0xffffffffull) | (uint32_t)value) - now;
        break;
    case RTC_TIME_HIGH:
        r->base_ns += (((uint64_t)(uint32_t)value << 32) | (now & 0xffffffffull)) - now;
        break;
    case RTC_ALARM_LOW:                  /* writing the low half arms the alarm */
        r->alarm_ns = (r->alarm_ns & ~0xffffffffull) | (uint32_t)value;
        r->alarm_armed = 1;
        rtc_tick(m);
        cpu_kick(m);                     /* a new deadline for the run loop */
        break;
    case RTC_ALARM_HIGH:
        r->alarm_ns = (r->alarm_ns & 0xffffffffull) | ((uint64_t)(uint32_t)value << 32);
        break;
    case RTC_IRQ_ENABLED:
        r->irq_enabled = value & 1;
        rtc_update_irq(m);
        break;
    case RTC_CLEAR_ALARM:
        r->alarm_armed = 0;
        break;
    case RTC_CLEAR_INTERRUPT:
        r->irq_pending = 0;
        rtc_update_irq(m);
        break;
    default:
        break;
    }
    return true;
}

const struct mmio_device goldfish_rtc_device = {
    .base = RTC_BASE, .size = RTC_SIZE, .sizes = 4,
    .read = rtc_read, .write = rtc_write,
};

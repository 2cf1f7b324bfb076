/* devices.h: state of each board device (plain data, saved with memcpy) and
 * their bus handlers.  Addresses follow QEMU's virt machine. */
#ifndef CHRONO_DEVICES_H
#define CHRONO_DEVICES_H

#include <stdint.h>
#include <stdbool.h>

struct machine;

#define TEST_BASE 0x00100000ull
#define TEST_SIZE 0x1000ull
#define RTC_BASE 0x00101000ull
#define RTC_SIZE 0x1000ull
#define RTC_IRQ 11
#define CLINT_BASE 0x02000000ull
#define CLINT_SIZE 0x10000ull
#define PLIC_BASE 0x0c000000ull
#define PLIC_SIZE 0x600000ull
#define UART_BASE 0x10000000ull
#define UART_SIZE 0x100ull
#define UART_IRQ 10
#define VIRTIO_BASE 0x10001000ull       /* slot n at VIRTIO_BASE + n * 0x1000, IRQ 1 + n */
#define VIRTIO_SLOT_SIZE 0x1000ull
#define VIRTIO_SLOTS 8
#define VIRTIO_BLK_SLOT 7               /* where QEMU puts its first device */
#define VIRTIO_RNG_SLOT 6               /* always present: entropy from the host */
#define VIRTIO_NET_SLOT 5               /* present while a network is configured */
#define VIRTIO_QUEUES 2                 /* queues per device at most (virtio-net: receive, transmit) */
#define FW_CFG_BASE 0x10100000ull       /* QEMU's firmware configuration device */
#define FW_CFG_SIZE 0x18ull
#define PCIE_PIO_BASE 0x03000000ull     /* the PCIe host bridge (pci.c): I/O window */
#define PCIE_PIO_SIZE 0x10000ull
#define PCIE_ECAM_BASE 0x30000000ull    /* configuration space, 1 MiB per bus */
#define PCIE_ECAM_SIZE 0x10000000ull
#define PCIE_MMIO_BASE 0x40000000ull    /* 32-bit memory window */
#define PCIE_MMIO_SIZE 0x40000000ull
#define PCIE_HIGH_SIZE 0x400000000ull   /* 64-bit window: 16 GiB at the first multiple of its size past RAM */
#define PCIE_IRQ 32                     /* INTA..INTD: PLIC sources 32..35 */
#define PCI_SLOTS 4                     /* devices on bus 0 (one function each) */
#define PCI_BLK_SLOT 1                  /* 00:00.0 is the host bridge */
#define PCI_NET_SLOT 2
#define PCI_RNG_SLOT 3
#define RAM_BASE 0x80000000ull

#define PLIC_SOURCES 96                 /* as QEMU virt; source 0 is reserved */
#define PLIC_WORDS (PLIC_SOURCES / 32)  /* 32-bit words of a per-source bitmap */
#define PLIC_CONTEXTS 2                 /* hart 0: context 0 = M, context 1 = S */

/* A device on the bus: RAM never goes through this table. */
struct mmio_device {
    uint64_t base, size;
    uint8_t sizes;              /* bitmask of allowed access sizes: 1|2|4|8 */
    /* Return false for an access fault. */
    bool (*read)(struct machine *m, uint64_t offset, int size, uint64_t *value);
    bool (*write)(struct machine *m, uint64_t offset, int size, uint64_t value);
};

struct uart_state {
    uint8_t rx_fifo[16];
    uint8_t rx_head, rx_count;
    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm, msr;
    uint8_t thre_pending;       /* transmit-empty interrupt armed (cleared by IIR read / THR write) */
    uint8_t pad;
    uint16_t rx_from_host;      /* bit per FIFO slot: the byte came from the host (not loopback) */
    uint16_t empty_polls;       /* empty LSR reads in a row, nothing else between (saturating), see uart.c */
};

struct rtc_state {
    uint64_t base_ns;           /* wall-clock ns at virtual clock 0 (epoch + guest adjustments) */
    uint64_t alarm_ns;
    uint32_t time_high_latch;   /* TIME_HIGH as of the last TIME_LOW read */
    uint32_t irq_enabled;
    uint32_t alarm_armed;
    uint32_t irq_pending;
};

struct clint_state {
    uint64_t mtimecmp;
    uint32_t msip;
    uint32_t pad;
};

struct plic_state {
    uint32_t priority[PLIC_SOURCES];
    uint32_t pending[PLIC_WORDS];       /* bit per source */
    uint32_t claimed[PLIC_WORDS];       /* bit per source: claimed, not yet completed */
    uint32_t level[PLIC_WORDS];         /* current line level per source */
    uint32_t enable[PLIC_CONTEXTS][PLIC_WORDS];
    uint32_t threshold[PLIC_CONTEXTS];
};

/* One PCI function's configuration registers the guest writes (pci.c). */
struct pci_fn_state {
    uint32_t bar[6];                    /* base address registers, as written (address bits) */
    uint16_t command;
    uint8_t cache_line, int_line;       /* no effect: kept for the driver to read back */
    uint8_t cfg_cap_bar;                /* virtio's PCI_CFG capability window (virtio_pci.c) */
    uint8_t pad[3];
    uint32_t cfg_cap_offset, cfg_cap_length;
};

/* PCI bus 0: one function per slot (the same layout whatever is present). */
struct pci_state {
    struct pci_fn_state fn[PCI_SLOTS];
};

/* One virtqueue as the driver configured it (virtio 1.2 section 4.2.2). */
struct virtq_state {
    uint32_t num;
    uint32_t ready;
    uint64_t desc_addr, avail_addr, used_addr;
    uint16_t last_avail_idx;        /* next avail entry to consume; used.idx equals it */
    uint16_t notified_avail_idx;    /* virtio-rng: avail.idx as read at the last QueueNotify */
    uint16_t pad[2];
};

/* One virtio-mmio device's transport state and its queues (the block and
 * entropy devices use queue 0 only, the network device 0 and 1; see virtio.h). */
struct virtio_state {
    uint32_t status;
    uint32_t device_features_sel;
    uint32_t driver_features_sel;
    uint32_t driver_features[2];
    uint32_t queue_sel;
    uint32_t interrupt_status;
    uint32_t config_generation;
    struct virtq_state q[VIRTIO_QUEUES];
};

/* fw_cfg.c: what the guest has chosen; the items themselves are host-side. */
struct fw_cfg_state {
    uint16_t selector;
    uint16_t pad;
    uint32_t offset;                /* read position in the selected item */
    uint32_t dma_high;              /* DMA address, high half, written before the low one */
    uint32_t pad2;
};

/* Line-level interrupt input to the PLIC from a device (irq 1..PLIC_SOURCES-1). */
void plic_set_level(struct machine *m, int irq, int level);
/* Recompute the hart's MEIP/SEIP from the PLIC. */
void plic_update(struct machine *m);

void uart_reset(struct machine *m);
size_t uart_receive(struct machine *m, const uint8_t *buf, size_t len);
bool uart_wants_input(struct machine *m);
void clint_reset(struct machine *m);
void rtc_reset(struct machine *m);
/* Fire the RTC alarm if its time has come (called between slices). */
void rtc_tick(struct machine *m);
/* Virtual clock at which the armed alarm fires, UINT64_MAX if none. */
uint64_t rtc_alarm_vclock(struct machine *m);
void plic_reset(struct machine *m);
void virtio_blk_reset(struct machine *m);
void virtio_rng_reset(struct machine *m);
void virtio_net_reset(struct machine *m);
void fw_cfg_reset(struct machine *m);
void pci_reset(struct machine *m);
/* Recompute the four INTx lines from the functions on bus 0. */
void pci_update_intx(struct machine *m);

/* The bus table (bus.c registers these in address order). */
extern const struct mmio_device test_device, goldfish_rtc_device, clint_device, plic_device, uart_device,
    virtio_mmio_device,          /* all 8 virtio-mmio slots: network in 5, entropy in 6, block in 7 */
    fw_cfg_device, pcie_pio_device, pcie_ecam_device, pcie_mmio_device;
/* The 64-bit PCIe window, whose base depends on the RAM size (pci.c). */
uint64_t pcie_high_base(uint64_t ram_size);
bool pcie_high_read(struct machine *m, uint64_t offset, int size, uint64_t *value);
bool pcie_high_write(struct machine *m, uint64_t offset, int size, uint64_t value);

#endif

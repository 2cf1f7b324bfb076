/* pci.h: what a function on the PCIe host bridge's bus 0 (pci.c) provides.
 * pci.c owns the standard type 0 header (PCI Local Bus 3.0 ch. 6, PCIe 6.0
 * 7.5.1): identity, Command/Status, BAR sizing and decoding, the interrupt
 * pin and its INTx line.  A function brings its capabilities (config space
 * from 0x40) and what its one BAR holds. */
#ifndef CHRONO_PCI_H
#define CHRONO_PCI_H

#include "machine.h"

#define PCI_CMD_MEMORY 0x0002u          /* decode the memory BARs */
#define PCI_CMD_INTX_DISABLE 0x0400u
#define PCI_CAP_START 0x40              /* capabilities live from here to 0xff */

struct pci_function {
    uint16_t vendor, device, subsystem_vendor, subsystem;
    uint32_t class_code;                /* base class << 16 | subclass << 8 | prog-if */
    uint8_t revision;
    uint8_t int_pin;                    /* 1 = INTA#, 0 = no interrupt */
    uint8_t cap_ptr;                    /* first capability, 0 = none */
    int bar;                            /* its one BAR: 64-bit memory, at BARs bar, bar+1; -1: none */
    uint64_t bar_size;                  /* a power of two */
    const void *ctx;                    /* what the callbacks serve (virtio_pci.c: a virtio_dev) */
    bool (*present)(struct machine *m, const struct pci_function *f);
    /* INTx asserted (before the Command register's Interrupt Disable). */
    bool (*irq)(struct machine *m, const struct pci_function *f);
    /* Config space at reg >= PCI_CAP_START (size 1, 2, 4, naturally aligned). */
    uint32_t (*cap_read)(struct machine *m, const struct pci_function *f, int slot,
                         uint32_t reg, int size);
    void (*cap_write)(struct machine *m, const struct pci_function *f, int slot,
                      uint32_t reg, int size, uint32_t value);
    /* The BAR's contents, offset from its start. */
    uint64_t (*bar_read)(struct machine *m, const struct pci_function *f, uint64_t off, int size);
    void (*bar_write)(struct machine *m, const struct pci_function *f, uint64_t off, int size,
                      uint64_t value);
};

/* virtio_pci.c: the function serving the virtio device in `slot`, or NULL. */
const struct pci_function *virtio_pci_function(int slot);

#endif

/* shell.c: boot sequence, the idle-friendly input loop, line editing and the
 * command table. */
#include "demo.h"

#define LINE_MAX 1024

/* ---- waiting for input ----
 *
 * Between keystrokes the hart sleeps in WFI with mstatus.MIE = 0: a pending
 * and enabled interrupt (mie.MEIE for the PLIC, which has only the UART's
 * receive interrupt enabled; mie.MTIE only while a cache flush is scheduled)
 * ends the WFI without trapping.  After waking, the PLIC is claimed and
 * completed so nothing stays pending.  With no flush scheduled, mtimecmp is
 * all-ones: nothing at all can wake the hart except input. */
static int getchar_idle(void)
{
    for (;;) {
        int c = uart_getc_nonblock();
        if (c >= 0)
            return c;
        if (cache_flush_due()) {
            cache_flush();
            continue;
        }
        plic_ack_all();             /* drop anything stale before sleeping */
        if (uart_rx_ready())
            continue;
        wfi();
        plic_ack_all();
    }
}

/* ---- line editing ---- */

static char line[LINE_MAX];
static int last_was_cr;

/* Returns the line length, or -1 if the line was cancelled (Ctrl-C). */
static int read_line(void)
{
    int n = 0;
    int esc = 0;            /* 1 after ESC, 2 inside an ESC [ ... sequence */
    for (;;) {
        int c = getchar_idle();
        int was_cr = last_was_cr;
        last_was_cr = (c == '\r');
        if (c == '\n' && was_cr)
            continue;       /* CR LF is one Enter */
        if (esc == 1) {
            esc = (c == '[' || c == 'O') ? 2 : 0;
            continue;
        }
        if (esc == 2) {
            if (c >= 0x40 && c <= 0x7e)
                esc = 0;
            continue;
        }
        switch (c) {
        case '\r':
        case '\n':
            kputc('\n');
            line[n] = 0;
            return n;
        case 0x7f:
        case 0x08:
            if (n > 0) {
                n--;
                kputs("\b \b");
            }
            break;
        case 0x03:          /* Ctrl-C */
            kputs("^C\n");
            return -1;
        case 0x15:          /* Ctrl-U: erase the line */
            while (n > 0) {
                n--;
                kputs("\b \b");
            }
            break;
        case 0x1b:
            esc = 1;
            break;
        default:
            if (c >= 0x20 && c < 0x7f && n < LINE_MAX - 1) {
                line[n++] = (char)c;
                uart_putc((char)c);
            }
            break;
        }
    }
}

/* ---- commands ---- */

static char *skip_spaces(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Split off the first word of *rest (NUL-terminating it); *rest moves to the
 * text after the following spaces. */
static char *next_word(char **rest)
{
    char *s = skip_spaces(*rest);
    char *w = s;
    while (*s && *s != ' ' && *s != '\t')
        s++;
    if (*s)
        *s++ = 0;
    *rest = skip_spaces(s);
    return w;
}

static void cmd_help(char *args);

static void cmd_echo(char *args)
{
    kputs(args);
    kputc('\n');
}

static void cmd_uptime(char *args)
{
    (void)args;
    kputs("up ");
    print_seconds(mtime());
    kputs(" s\n");
}

static void cmd_bench(char *args)
{
    uint64_t units = BENCH_DEFAULT_UNITS;
    char *w = next_word(&args);
    if (*w) {
        if (parse_u64(w, &units) < 0 || units == 0 || units > 1000000 || *args) {
            kputs("usage: bench [N]   (N = 1..1000000 units of ~10M instructions; default 100)\n");
            return;
        }
    }
    bench_run(units);
}

static void cmd_ls(char *args)
{
    (void)args;
    fs_ls();
}

static int one_name(char *args, const char *usage, char **name)
{
    *name = next_word(&args);
    if (!**name || *args) {
        kprintf("usage: %s\n", usage);
        return 0;
    }
    return 1;
}

static void cmd_cat(char *args)
{
    char *name;
    if (one_name(args, "cat NAME", &name))
        fs_cat(name);
}

static void cmd_write(char *args)
{
    char *name = next_word(&args);
    if (!*name) {
        kputs("usage: write NAME TEXT\n");
        return;
    }
    fs_write(name, args);
}

static void cmd_rm(char *args)
{
    char *name;
    if (one_name(args, "rm NAME", &name))
        fs_rm(name);
}

static void cmd_sync(char *args)
{
    (void)args;
    if (!vblk_present()) {
        kputs("no disk\n");
        return;
    }
    int n = cache_flush();
    if (n < 0)
        kputs("sync: write error\n");
    else
        kprintf("synced %d block%s\n", n, n == 1 ? "" : "s");
}

static void cmd_fsck(char *args)
{
    (void)args;
    fs_fsck();
}

static void cmd_crash(char *args)
{
    (void)args;
    cache_crash();
}

static void cmd_poweroff(char *args)
{
    (void)args;
    if (vblk_present()) {
        int n = cache_flush();
        if (n < 0)
            kputs("poweroff: sync failed\n");
        else
            kprintf("synced %d block%s\n", n, n == 1 ? "" : "s");
    }
    kputs("Powering off.\n");
    poweroff();
}

struct command {
    const char *name;
    const char *args;
    const char *help;
    void (*fn)(char *args);
};

static const struct command commands[] = {
    {"help", "", "list commands", cmd_help},
    {"echo", "TEXT", "print TEXT", cmd_echo},
    {"uptime", "", "virtual time since boot (from mtime)", cmd_uptime},
    {"bench", "[N]", "integer CPU benchmark: N units of ~10M instructions (default 100)", cmd_bench},
    {"ls", "", "list files with their sizes", cmd_ls},
    {"cat", "NAME", "print a file", cmd_cat},
    {"write", "NAME TEXT", "create or replace file NAME containing TEXT and a newline", cmd_write},
    {"rm", "NAME", "remove a file", cmd_rm},
    {"sync", "", "write all dirty cached blocks to the disk", cmd_sync},
    {"fsck", "", "sync, then check the on-disk file system", cmd_fsck},
    {"crash", "", "corrupt a pointer and dereference it (fatal trap, exit code 1)", cmd_crash},
    {"poweroff", "", "sync and power off", cmd_poweroff},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void cmd_help(char *args)
{
    (void)args;
    kputs("Commands:\n");
    for (unsigned i = 0; i < NCOMMANDS; i++) {
        int w = (int)strlen(commands[i].name) + 1 + (int)strlen(commands[i].args);
        kprintf("  %s %s%*s  %s\n", commands[i].name, commands[i].args, 16 - w, "",
                commands[i].help);
    }
}

static void execute(char *cmdline)
{
    char *rest = cmdline;
    char *word = next_word(&rest);
    if (!*word)
        return;
    for (unsigned i = 0; i < NCOMMANDS; i++) {
        if (strcmp(word, commands[i].name) == 0) {
            commands[i].fn(rest);
            return;
        }
    }
    kprintf("unknown command '%s' (type 'help' for a list of commands)\n", word);
}

void shell_run(void)
{
    for (;;) {
        kputs("demo> ");
        if (read_line() < 0)
            continue;
        execute(line);
    }
}

/* ---- boot ---- */

void main(unsigned long hartid, unsigned long dtb);
void main(unsigned long hartid, unsigned long dtb)
{
    (void)hartid;
    (void)dtb;          /* the memory map is fixed (QEMU virt); no device tree parsing */

    uart_init();
    timer_disarm();
    plic_init();
    csr_write(mie, MIE_MEIE);       /* wake-up sources only; mstatus.MIE stays 0 */

    kputs("\nchrono demo guest 1.0 (RV64IMAC, M-mode, single hart)\n");
    cache_init();
    if (vblk_init() == 0)
        fs_mount();
    kputs("Type 'help' for a list of commands.\n");
    shell_run();
}

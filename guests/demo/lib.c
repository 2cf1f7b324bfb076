/* lib.c: the little bit of libc the guest needs, and a tiny printf. */
#include "demo.h"

void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if ((((uintptr_t)d | (uintptr_t)s | n) & 7) == 0) {
        uint64_t *dq = (uint64_t *)d;
        const uint64_t *sq = (const uint64_t *)s;
        for (size_t i = 0; i < n / 8; i++)
            dq[i] = sq[i];
        return dst;
    }
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d == s || n == 0)
        return dst;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        d += n;
        s += n;
        while (n--)
            *--d = *--s;
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    if ((((uintptr_t)d | n) & 7) == 0) {
        uint64_t v = (uint8_t)c;
        v |= v << 8;
        v |= v << 16;
        v |= v << 32;
        uint64_t *dq = (uint64_t *)d;
        for (size_t i = 0; i < n / 8; i++)
            dq[i] = v;
        return dst;
    }
    while (n--)
        *d++ = (uint8_t)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (uint8_t)*a - (uint8_t)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i])
            return (uint8_t)a[i] - (uint8_t)b[i];
        if (!a[i])
            return 0;
    }
    return 0;
}

int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* ---- console output ---- */

void kputc(char c)
{
    if (c == '\n')
        uart_putc('\r');
    uart_putc(c);
}

void kputs(const char *s)
{
    while (*s)
        kputc(*s++);
}

static void put_padded(const char *s, size_t len, int width, int left, char pad)
{
    int fill = width > (int)len ? width - (int)len : 0;
    if (!left)
        while (fill-- > 0)
            kputc(pad);
    for (size_t i = 0; i < len; i++)
        kputc(s[i]);
    if (left)
        while (fill-- > 0)
            kputc(' ');
}

/* Supports %c %s %d %i %u %x %X %p %%, flags '-' and '0', a width (or *), and the
 * length modifiers l, ll and z. */
void kvprintf(const char *fmt, va_list ap)
{
    char buf[24];
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            kputc(*fmt);
            continue;
        }
        fmt++;
        int left = 0, width = 0, lng = 0;
        char pad = ' ';
        for (;; fmt++) {
            if (*fmt == '-')
                left = 1;
            else if (*fmt == '0')
                pad = '0';
            else
                break;
        }
        if (*fmt == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                left = 1;
                width = -width;
            }
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') {
            lng = 1;
            fmt++;
        }
        if (left)
            pad = ' ';
        char conv = *fmt;
        if (!conv)
            break;
        switch (conv) {
        case 'c':
            buf[0] = (char)va_arg(ap, int);
            put_padded(buf, 1, width, left, ' ');
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            put_padded(s, strlen(s), width, left, ' ');
            break;
        }
        case 'd':
        case 'i':
        case 'u':
        case 'x':
        case 'X':
        case 'p': {
            uint64_t v;
            int neg = 0;
            if (conv == 'p') {
                v = (uintptr_t)va_arg(ap, void *);
                conv = 'x';
                kputs("0x");
            } else if (conv == 'd' || conv == 'i') {
                int64_t sv = lng ? va_arg(ap, long) : va_arg(ap, int);
                if (sv < 0) {
                    neg = 1;
                    v = (uint64_t)0 - (uint64_t)sv;
                } else {
                    v = (uint64_t)sv;
                }
            } else {
                v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
            }
            unsigned base = (conv == 'x' || conv == 'X') ? 16 : 10;
            const char *digits = conv == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
            char *p = buf + sizeof(buf);
            size_t len = 0;
            do {
                *--p = digits[v % base];
                v /= base;
                len++;
            } while (v);
            if (neg) {
                if (pad == '0') {
                    kputc('-');
                    if (width > 0)
                        width--;
                } else {
                    *--p = '-';
                    len++;
                }
            }
            put_padded(p, len, width, left, pad);
            break;
        }
        case '%':
            kputc('%');
            break;
        default:
            kputc('%');
            kputc(conv);
            break;
        }
    }
}

void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}

void print_seconds(uint64_t ticks)
{
    uint64_t ms = ticks / (TIMEBASE_HZ / 1000);
    kprintf("%lu.%03lu", (unsigned long)(ms / 1000), (unsigned long)(ms % 1000));
}

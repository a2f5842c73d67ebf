// Fills 8 MiB, then changes one page of it per syscall, computing a while
// between calls: a debugged replay's checkpoints differ from one another
// by a few pages. mark() is called at two iterations, done() at the end,
// for breakpoints to go back to.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SIZE (8u << 20)
#define ROUNDS 200

unsigned char *mem;
static volatile unsigned long sink;

__attribute__((noinline)) void mark(int i) {
    asm volatile("" ::"r"(i) : "memory");
}

__attribute__((noinline)) void done(int n) {
    printf("changed %d pages\n", n);
}

int main(void) {
    mem = malloc(SIZE);
    if (!mem)
        return 1;
    memset(mem, 'Z', SIZE);
    for (int i = 0; i < ROUNDS; i++) {
        mem[(size_t)i * 4096] = (unsigned char)i;
        if (i == 50 || i == 150)
            mark(i);
        // About a millisecond natively: checkpoints are at least 2 ms apart.
        for (volatile int k = 0; k < 500000; k++)
            sink += k;
        getppid();
    }
    done(ROUNDS);
    return 0;
}

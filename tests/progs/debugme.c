/* A program to debug: a global and a static array written in a loop, a
 * call chain, output through write(2), and (with "crash") a null pointer
 * write. Built without optimisation so that gdb sees every local. */
#pragma GCC optimize("O0")
#include <string.h>
#include <unistd.h>
#include <stdio.h>

int counter;
static int squares[10];

int square(int x)
{
    int result = x * x;
    return result;
}

void fill(int n)
{
    for (int i = 0; i < n; i++) {
        squares[i] = square(i);
        counter += 1;
    }
}

static void crash(void)
{
    volatile int *nowhere = 0;
    *nowhere = 42;
}

int main(int argc, char **argv)
{
    int n = 6;
    fill(n);
    int sum = 0;
    for (int i = 0; i < n; i++)
        sum += squares[i];
    char line[64];
    int len = snprintf(line, sizeof line, "sum of squares below %d: %d\n", n, sum);
    write(1, line, len);
    if (argc > 1 && strcmp(argv[1], "crash") == 0)
        crash();
    return counter;
}

/* For the debugging benchmark: `mark` is called once before and once
 * after argv[1] thousand getppid syscalls, then `tick` argv[2] thousand
 * times in a loop (a conditional breakpoint's target), then argv[3] MiB
 * are written (checkpoint memory). Built without optimisation so that gdb
 * sees `i`. */
#pragma GCC optimize("O0")
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

volatile long sink;

void mark(int k) { sink = k; }

void tick(long i) { sink += i; }

int main(int argc, char **argv)
{
	long calls = (argc > 1 ? atol(argv[1]) : 100) * 1000;
	long ticks = (argc > 2 ? atol(argv[2]) : 100) * 1000;
	long mib = argc > 3 ? atol(argv[3]) : 0;
	mark(0);
	for (long i = 0; i < calls; i++)
		syscall(SYS_getppid);
	mark(1);
	for (long i = 0; i < ticks; i++)
		tick(i);
	mark(2);
	if (mib > 0) {
		char *p = malloc(mib << 20);
		memset(p, 1, mib << 20);
		sink = p[mib << 19];
		getppid();
	}
	mark(3);
	return 0;
}

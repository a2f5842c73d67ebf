/* A program that scribbles over the exitless ring's page (the request
 * slot, the trampoline's flags and bitmap: not its code) and posts
 * requests of its own there, with pointers outside its memory, huge
 * lengths and numbers the ring does not serve, giving up on its own clock.
 * Between rounds it makes ordinary calls, which must keep their Linux
 * answers. Prints only those answers: the same natively (where the page
 * is not there: run without an argument) and recorded. */
#include <fcntl.h>
#include <sys/syscall.h>
#include "warptest.h"

#define PAGE 0x7ffffffff000ull
#define SLOT(off) ((volatile uint64_t *)(PAGE + (off)))
#define STATE ((volatile uint32_t *)(PAGE + 0x800))

static uint64_t seed = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
	return xorshift64(&seed);
}

static void post(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2)
{
	*SLOT(0x810) = nr;
	SLOT(0x818)[0] = a0;
	SLOT(0x818)[1] = a1;
	SLOT(0x818)[2] = a2;
	SLOT(0x818)[3] = next();
	*STATE = 1; /* POSTED */
	for (long i = 0; i < 2000000 && *STATE == 1; i++)
		__builtin_ia32_pause();
	__sync_bool_compare_and_swap(STATE, 1, 4); /* cancel if unclaimed */
	for (long i = 0; i < 2000000 && *STATE == 2; i++)
		__builtin_ia32_pause();
	*STATE = 0;
}

/* With an argument (recorded only: natively the page is not there). */
int main(int argc, char **argv)
{
	(void)argv;
	int ring = argc > 1;
	int zero = open("/dev/zero", O_RDONLY);
	char buf[64];
	for (int round = 0; round < 50; round++) {
		if (ring) {
			switch (round % 5) {
			case 0: post(0, zero, 0xdead0000ull, 16); break;           /* unmapped buffer */
			case 1: post(0, zero, PAGE + 0x100, 16); break;            /* the ring page itself */
			case 2: post(1, 1, (uint64_t)buf, 1ull << 40); break;      /* huge length */
			case 3: post(next() % 600, next(), next(), next()); break; /* anything */
			case 4: post(0, 1020, (uint64_t)buf, 8); break;            /* the broker's descriptors */
			}
			/* Garbage over the slot's words and the bitmap (never the code). */
			for (int w = 0; w < 8; w++)
				SLOT(0x810)[w] = next();
			for (int w = 0; w < 8; w++)
				SLOT(0x900)[w] = next();
			*(volatile uint32_t *)(PAGE + 0x804) = next() & 1; /* the poller's word */
		}
		long r = read(zero, buf, sizeof buf);
		long w = write(1, "round\n", 6);
		long bad = read(zero, (void *)0xdead0000ull, 8);
		printf("%d: read %ld write %ld bad %ld %s\n", round, r, w, bad, bad < 0 ? errname(errno) : "");
	}
	printf("done\n");
	return 0;
}

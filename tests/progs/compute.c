/* Computes for a while without a syscall (argv[1] million rounds of an
 * LCG), then prints the result: a replay of it is long and silent. */
#include "warptest.h"

int main(int argc, char **argv)
{
	unsigned long rounds = (argc > 1 ? strtoul(argv[1], NULL, 10) : 100) * 1000000ul;
	volatile uint64_t x = 1;
	for (unsigned long i = 0; i < rounds; i++)
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	printf("%llx\n", (unsigned long long)x);
	puts("EXIT-SUCCESS");
	return 0;
}

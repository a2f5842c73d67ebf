/* A compute loop with no syscalls in it: what recording costs when the
 * program does not talk to the outside (ideally nothing). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 400000000L;
	volatile unsigned long long x = 1;
	for (long i = 0; i < n; i++)
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	printf("%llu\n", (unsigned long long)x);
	return 0;
}

/* Four threads compute without syscalls, then join: the work a program
 * spreads over threads (on the one vCPU they take turns). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static long rounds;

static void *work(void *arg)
{
	volatile uint64_t x = (uint64_t)(long)arg;
	for (long i = 0; i < rounds; i++)
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	return (void *)(uintptr_t)x;
}

int main(int argc, char **argv)
{
	rounds = (argc > 1 ? atol(argv[1]) : 100000000) / 4;
	pthread_t t[4];
	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, work, (void *)i);
	uint64_t sum = 0;
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(t[i], &r);
		sum += (uintptr_t)r;
	}
	printf("%llx\n", (unsigned long long)sum);
	return 0;
}

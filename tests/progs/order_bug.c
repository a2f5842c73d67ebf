/* A planted order-dependent bug: main assumes that its helper thread has
 * run by the time main has computed for a while. Under the default
 * schedule that holds (main's time slice ends first and the helper
 * finishes within its own); under `warpctl record --chaos` a long slice
 * for main, or a short one for the helper, makes main look first. */
#include <pthread.h>
#include "warptest.h"

static volatile int ready;

static void compute(long n)
{
	volatile uint64_t x = 1;
	for (long i = 0; i < n; i++)
		x = x * 6364136223846793005ull + 1;
}

static void *helper(void *arg)
{
	(void)arg;
	compute(2000000);
	ready = 1;
	return NULL;
}

int main(void)
{
	pthread_t t;
	CHECK(pthread_create(&t, NULL, helper, NULL) == 0);
	compute(20000000);
	if (!ready) {
		puts("bug: the helper had not run yet");
		return 1;
	}
	CHECK(pthread_join(t, NULL) == 0);
	puts("ok: the helper ran first");
	return 0;
}

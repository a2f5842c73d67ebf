/* Priority-inheritance mutexes (FUTEX_LOCK_PI, FUTEX_UNLOCK_PI,
 * FUTEX_TRYLOCK_PI): four threads contend for a counter (each yields
 * inside the lock, so the others block in the kernel and the lock is
 * handed over); trylock of a held lock; a timed lock that times out; a
 * robust PI mutex whose owner exits while another thread waits for it. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include "warptest.h"

static pthread_mutex_t lock;
static long counter;

static void *adder(void *arg)
{
	(void)arg;
	for (int i = 0; i < 500; i++) {
		CHECK(pthread_mutex_lock(&lock) == 0);
		counter++;
		if (i % 25 == 0)
			sched_yield();
		CHECK(pthread_mutex_unlock(&lock) == 0);
	}
	return NULL;
}

static void init_pi(pthread_mutex_t *m, int robust)
{
	pthread_mutexattr_t a;
	CHECK(pthread_mutexattr_init(&a) == 0);
	CHECK(pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT) == 0);
	if (robust)
		CHECK(pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0);
	CHECK(pthread_mutex_init(m, &a) == 0);
	CHECK(pthread_mutexattr_destroy(&a) == 0);
}

static int try_result, timed_result;

static void *contender(void *arg)
{
	(void)arg;
	try_result = pthread_mutex_trylock(&lock);
	struct timespec until = ms_from_now(CLOCK_REALTIME, 20);
	timed_result = pthread_mutex_timedlock(&lock, &until);
	return NULL;
}

static pthread_mutex_t robust;
static volatile int owner_has_it;
static int robust_result;

static void *dying_owner(void *arg)
{
	(void)arg;
	CHECK(pthread_mutex_lock(&robust) == 0);
	owner_has_it = 1;
	struct timespec nap = { 0, 50 * 1000 * 1000 };
	nanosleep(&nap, NULL);
	return NULL; /* exits holding it */
}

static void *robust_waiter(void *arg)
{
	(void)arg;
	robust_result = pthread_mutex_lock(&robust);
	if (robust_result == EOWNERDEAD) {
		CHECK(pthread_mutex_consistent(&robust) == 0);
		CHECK(pthread_mutex_unlock(&robust) == 0);
	}
	return NULL;
}

int main(void)
{
	init_pi(&lock, 0);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&t[i], NULL, adder, NULL) == 0);
	for (int i = 0; i < 4; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	printf("PI mutex counter: %ld (expected 2000)\n", counter);

	CHECK(pthread_mutex_lock(&lock) == 0);
	pthread_t c;
	CHECK(pthread_create(&c, NULL, contender, NULL) == 0);
	CHECK(pthread_join(c, NULL) == 0);
	CHECK(pthread_mutex_unlock(&lock) == 0);
	printf("held elsewhere: trylock %s, timedlock %s\n", errname(try_result), errname(timed_result));

	init_pi(&robust, 1);
	pthread_t o, w;
	CHECK(pthread_create(&o, NULL, dying_owner, NULL) == 0);
	while (!owner_has_it)
		sched_yield();
	CHECK(pthread_create(&w, NULL, robust_waiter, NULL) == 0);
	CHECK(pthread_join(o, NULL) == 0);
	CHECK(pthread_join(w, NULL) == 0);
	printf("robust PI owner died while another waited: %s\n", robust_result == EOWNERDEAD ? "EOWNERDEAD" : errname(robust_result));
	return 0;
}

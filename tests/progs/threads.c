/* Threads synchronised through futexes: workers add to a mutex-protected
 * counter; a baton passed with a condition variable makes them print in a
 * fixed order; thread-local storage is each thread's own; pthread_join
 * waits for each (CLONE_CHILD_CLEARTID). The output is the same natively
 * and recorded, and the replay follows the recorded schedule. */
#include <pthread.h>
#include <sys/syscall.h>
#include "warptest.h"

#define THREADS 4
#define ROUNDS 2000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_changed = PTHREAD_COND_INITIALIZER;
static long counter;
static int turn;
static __thread int mine;
static pid_t tids[THREADS];

static void *worker(void *arg)
{
	int n = (int)(long)arg;
	mine = n * 100;
	tids[n] = (pid_t)syscall(SYS_gettid);
	for (int i = 0; i < ROUNDS; i++) {
		CHECK(pthread_mutex_lock(&lock) == 0);
		counter++;
		CHECK(pthread_mutex_unlock(&lock) == 0);
		if (i % 500 == 0)
			sched_yield();
	}
	CHECK(pthread_mutex_lock(&lock) == 0);
	while (turn != n)
		CHECK(pthread_cond_wait(&turn_changed, &lock) == 0);
	printf("thread %d: tls %d, own tid %s\n", n, mine, tids[n] != getpid() ? "yes" : "NO");
	turn++;
	CHECK(pthread_cond_broadcast(&turn_changed) == 0);
	CHECK(pthread_mutex_unlock(&lock) == 0);
	return (void *)(long)(n + 1);
}

int main(void)
{
	pthread_t t[THREADS];
	mine = -1;
	for (long i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
	long sum = 0;
	for (int i = 0; i < THREADS; i++) {
		void *ret;
		CHECK(pthread_join(t[i], &ret) == 0);
		sum += (long)ret;
	}
	int distinct = 1;
	for (int i = 0; i < THREADS; i++)
		for (int j = 0; j < i; j++)
			distinct &= tids[i] != tids[j];
	printf("counter %ld (expected %d), joined sum %ld, main tls %d, tids distinct %s\n", counter,
	       THREADS * ROUNDS, sum, mine, distinct ? "yes" : "NO");
	puts("EXIT-SUCCESS");
	return 0;
}

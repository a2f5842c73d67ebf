/* A dedicated signal thread: every thread blocks SIGUSR1 and SIGUSR2, one
 * takes them with sigwaitinfo (it is already waiting when they are sent,
 * by kill to the process and by pthread_kill to it); sigtimedwait with a
 * timeout and with a zero timeout gives EAGAIN; sigpending shows what is
 * held back. */
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include "warptest.h"

static volatile int waiting;
static volatile int got[2];

static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	for (int i = 0; i < 2; i++) {
		waiting = 1;
		siginfo_t info;
		int sig = sigwaitinfo(set, &info);
		CHECK(sig > 0 && info.si_signo == sig);
		got[i] = sig;
	}
	return NULL;
}

int main(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0);

	pthread_t t;
	CHECK(pthread_create(&t, NULL, signal_thread, &set) == 0);
	while (!waiting)
		sched_yield();
	/* Let it reach sigwaitinfo. */
	for (int i = 0; i < 100; i++)
		sched_yield();
	CHECK(kill(getpid(), SIGUSR1) == 0);
	while (!got[0])
		sched_yield();
	CHECK(pthread_kill(t, SIGUSR2) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	printf("signal thread took %s then %s\n", got[0] == SIGUSR1 ? "SIGUSR1" : "?", got[1] == SIGUSR2 ? "SIGUSR2" : "?");

	struct timespec zero = { 0, 0 }, short_wait = { 0, 20 * 1000 * 1000 };
	int r = sigtimedwait(&set, NULL, &zero);
	printf("nothing pending, zero timeout: %s\n", r < 0 ? errname(errno) : "a signal");
	r = sigtimedwait(&set, NULL, &short_wait);
	printf("nothing pending, 20 ms: %s\n", r < 0 ? errname(errno) : "a signal");

	CHECK(raise(SIGUSR2) == 0);
	sigset_t pending;
	CHECK(sigpending(&pending) == 0);
	printf("pending: SIGUSR1 %d, SIGUSR2 %d\n", sigismember(&pending, SIGUSR1), sigismember(&pending, SIGUSR2));
	r = sigtimedwait(&set, NULL, &zero);
	printf("then taken: %s\n", r == SIGUSR2 ? "SIGUSR2" : "?");
	return 0;
}

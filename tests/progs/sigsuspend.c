/* sigsuspend: wait with a temporary mask; the handler runs, the call
 * returns EINTR and the mask from before the call is back. The signal
 * comes from an interval timer (the process alone waits outside) and from
 * another thread. */
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include "warptest.h"

static volatile int handled;
static pthread_t main_thread;

static void on_signal(int sig)
{
	(void)sig;
	handled++;
}

static void *sender(void *arg)
{
	(void)arg;
	for (int i = 0; i < 1000; i++)
		sched_yield();
	CHECK(pthread_kill(main_thread, SIGUSR1) == 0);
	return NULL;
}

static void suspend(const char *what, int sig)
{
	sigset_t empty, now;
	sigemptyset(&empty);
	handled = 0;
	int r = sigsuspend(&empty);
	int e = errno;
	CHECK(sigprocmask(SIG_BLOCK, NULL, &now) == 0);
	printf("%s: %s, handler ran %d, blocked again %d\n", what, r < 0 ? errname(e) : "returned",
	       handled, sigismember(&now, sig));
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGALRM);
	sigaddset(&set, SIGUSR1);
	CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);

	struct itimerval it = { { 0, 0 }, { 0, 20000 } };
	CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
	suspend("timer", SIGALRM);

	main_thread = pthread_self();
	pthread_t t;
	CHECK(pthread_create(&t, NULL, sender, NULL) == 0);
	suspend("thread", SIGUSR1);
	CHECK(pthread_join(t, NULL) == 0);
	return 0;
}

/* Threads and signals that only preemption can serve: nothing here makes a
 * syscall while it waits, so on one vCPU the other thread runs only if the
 * computing one is stopped by a timer.
 *
 *   spin   a thread spins on a volatile flag that another thread sets
 *   race   two threads add to a counter with no lock (a lost update shows
 *          only when a thread is stopped between its load and its store)
 *   alarm  SIGALRM from setitimer lands while the program computes; the
 *          handler samples the loop's counter (so where it ran shows)
 */
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include "warptest.h"

static volatile int flag;
static volatile uint64_t counter;

static void *setter(void *arg)
{
	(void)arg;
	/* Compute a while first, so the spinner surely spins. */
	volatile uint64_t x = 1;
	for (int i = 0; i < 2000000; i++)
		x = x * 6364136223846793005ull + 1;
	flag = 1;
	return NULL;
}

static int spin(void)
{
	pthread_t t;
	CHECK(pthread_create(&t, NULL, setter, NULL) == 0);
	/* Natively the setter may be done before the loop starts (another
	 * core); recorded it never is, which the trace's events show. */
	while (!flag)
		;
	CHECK(pthread_join(t, NULL) == 0);
	puts("spin: released");
	return 0;
}

#define ADDS 20000000

static void *adder(void *arg)
{
	(void)arg;
	for (int i = 0; i < ADDS; i++)
		counter = counter + 1;
	return NULL;
}

static int race(void)
{
	pthread_t a, b;
	CHECK(pthread_create(&a, NULL, adder, NULL) == 0);
	CHECK(pthread_create(&b, NULL, adder, NULL) == 0);
	CHECK(pthread_join(a, NULL) == 0);
	CHECK(pthread_join(b, NULL) == 0);
	printf("race: total %llu of %d\n", (unsigned long long)counter, 2 * ADDS);
	return 0;
}

static volatile uint64_t loops;
static volatile int alarms;
static volatile uint64_t samples;

static void on_alarm(int sig)
{
	(void)sig;
	samples = samples * 31 + loops;
	alarms++;
}

static int alarm_loop(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
	struct itimerval it = { { 0, 3000 }, { 0, 3000 } };
	CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
	while (alarms < 10)
		loops++;
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	CHECK(setitimer(ITIMER_REAL, &off, NULL) == 0);
	printf("alarm: %d handlers while computing, samples %llu\n", alarms, (unsigned long long)samples);
	return 0;
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "spin";
	if (!strcmp(what, "spin"))
		return spin();
	if (!strcmp(what, "race"))
		return race();
	if (!strcmp(what, "alarm"))
		return alarm_loop();
	fprintf(stderr, "usage: preempt spin|race|alarm\n");
	return 2;
}

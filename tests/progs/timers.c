/* POSIX timers and queued signals: a periodic SIGEV_SIGNAL timer whose
 * handler runs while the program computes; a SIGEV_THREAD_ID timer taken
 * by its thread in sigwaitinfo; SIGEV_NONE read with timer_gettime;
 * overruns while the signal is blocked; glibc's SIGEV_THREAD (its own
 * helper thread); sigqueue and pthread_sigqueue with their values;
 * timer_delete. The siginfo each signal comes with is checked. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include "warptest.h"

static volatile int expiries;
static volatile int bad_info;
static timer_t overrun_timer;
static volatile int sample_overrun;
static volatile int first_overrun = -1;
static volatile int queued_value, queued_code, queued_pid_ok;

static void on_timer(int sig, siginfo_t *info, void *uc)
{
	(void)uc;
	if (sig != SIGUSR1 || info->si_code != SI_TIMER || info->si_value.sival_int != 42)
		bad_info = 1;
	if (expiries++ == 0 && sample_overrun)
		first_overrun = timer_getoverrun(overrun_timer);
}

static void on_queued(int sig, siginfo_t *info, void *uc)
{
	(void)uc;
	(void)sig;
	queued_value = info->si_value.sival_int;
	queued_code = info->si_code;
	queued_pid_ok = info->si_pid == getpid();
}

static void install(int sig, void (*f)(int, siginfo_t *, void *))
{
	struct sigaction sa = { .sa_sigaction = f, .sa_flags = SA_SIGINFO | SA_RESTART };
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(sig, &sa, NULL) == 0);
}

static void arm(timer_t t, long first_ns, long every_ns)
{
	struct itimerspec its = { .it_value = { 0, first_ns }, .it_interval = { 0, every_ns } };
	CHECK(timer_settime(t, 0, &its, NULL) == 0);
}

static void signal_timer_while_computing(void)
{
	install(SIGUSR1, on_timer);
	struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1 };
	ev.sigev_value.sival_int = 42;
	timer_t t;
	CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0);
	arm(t, 10 * 1000 * 1000, 10 * 1000 * 1000);
	volatile uint64_t h = FNV_INIT;
	for (uint64_t i = 0; expiries < 3; i++)
		h = fnv1a(h, &i, sizeof i);
	CHECK(timer_delete(t) == 0);
	printf("signal timer: %s expiries while computing, siginfo %s\n", expiries >= 3 ? "3 or more" : "too few",
	       bad_info ? "wrong" : "SI_TIMER with its value");
	struct itimerspec its = { 0 };
	errno = 0;
	printf("settime after delete: %s\n", timer_settime(t, 0, &its, NULL) == 0 ? "OK" : errname(errno));
}

static volatile pid_t waiter_tid;

static void *timer_waiter(void *arg)
{
	sigset_t *set = arg;
	waiter_tid = syscall(SYS_gettid);
	siginfo_t info;
	int sig = sigwaitinfo(set, &info);
	printf("thread timer: %s taken by its thread, code %s, value %d\n", sig == SIGUSR2 ? "SIGUSR2" : "?",
	       info.si_code == SI_TIMER ? "SI_TIMER" : "?", info.si_value.sival_int);
	return NULL;
}

static void thread_id_timer(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, timer_waiter, &set) == 0);
	while (!waiter_tid)
		sched_yield();
	struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR2 };
	ev._sigev_un._tid = waiter_tid;
	ev.sigev_value.sival_int = 7;
	timer_t t;
	CHECK(timer_create(CLOCK_REALTIME, &ev, &t) == 0);
	arm(t, 20 * 1000 * 1000, 0);
	CHECK(pthread_join(th, NULL) == 0);
	CHECK(timer_delete(t) == 0);
	CHECK(pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0);
}

static void none_timer(void)
{
	struct sigevent ev = { .sigev_notify = SIGEV_NONE };
	timer_t t;
	CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0);
	arm(t, 30 * 1000 * 1000, 0);
	struct itimerspec cur;
	CHECK(timer_gettime(t, &cur) == 0);
	int armed = cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 30 * 1000 * 1000;
	struct timespec nap = { 0, 50 * 1000 * 1000 };
	CHECK(nanosleep(&nap, NULL) == 0);
	CHECK(timer_gettime(t, &cur) == 0);
	int expired = cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0;
	printf("SIGEV_NONE timer: armed %s, expired %s\n", armed ? "yes" : "no", expired ? "yes" : "no");
	CHECK(timer_delete(t) == 0);
}

static void overruns(void)
{
	expiries = 0;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
	struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1 };
	ev.sigev_value.sival_int = 42;
	timer_t t;
	CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0);
	arm(t, 5 * 1000 * 1000, 5 * 1000 * 1000);
	struct timespec nap = { 0, 60 * 1000 * 1000 };
	CHECK(nanosleep(&nap, NULL) == 0);
	/* Pending by now on Linux; recorded, the expiry reaches warpd from the
	 * broker's timerfd a moment later on a loaded machine: wait for it. */
	sigset_t pending;
	struct timespec tick = { 0, 5 * 1000 * 1000 };
	for (int i = 0; i < 400; i++) {
		CHECK(sigpending(&pending) == 0);
		if (sigismember(&pending, SIGUSR1))
			break;
		nanosleep(&tick, NULL);
	}
	/* More periods with the signal pending, so that expiries are overruns
	 * whenever the first one arrived (late, under load, it can be the last
	 * of the nap). Recorded, an overrun counts once the broker's read of
	 * the next expiry has reached warpd: on a loaded two-core machine that
	 * took longer than two periods (CI), and on a host ten times slower
	 * than usual longer than eight (1 in 3 runs), so forty. */
	struct timespec more_periods = { 0, 200 * 1000 * 1000 };
	CHECK(nanosleep(&more_periods, NULL) == 0);
	overrun_timer = t;
	sample_overrun = 1;
	CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
	CHECK(timer_delete(t) == 0);
	sample_overrun = 0;
	printf("blocked for 52 periods: one handler, overrun %s\n", first_overrun > 0 ? "counted" : "missing");

	/* Disarming drops the expiry whose signal is pending. */
	expiries = 0;
	CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
	CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0);
	arm(t, 5 * 1000 * 1000, 0);
	CHECK(nanosleep(&nap, NULL) == 0);
	arm(t, 0, 0);
	CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
	printf("disarmed while its signal was blocked: %d handlers\n", expiries);
	CHECK(timer_delete(t) == 0);
}

static volatile int callback_ran;
static void callback(union sigval v)
{
	callback_ran = v.sival_int;
}

static void glibc_thread_timer(void)
{
	struct sigevent ev = { .sigev_notify = SIGEV_THREAD, .sigev_notify_function = callback };
	ev.sigev_value.sival_int = 5;
	timer_t t;
	CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0);
	arm(t, 10 * 1000 * 1000, 0);
	while (!callback_ran) {
		struct timespec nap = { 0, 1000 * 1000 };
		nanosleep(&nap, NULL);
	}
	printf("SIGEV_THREAD timer: callback ran with %d\n", callback_ran);
	CHECK(timer_delete(t) == 0);
}

static void *sleeper(void *arg)
{
	(void)arg;
	while (!queued_value) {
		struct timespec nap = { 0, 1000 * 1000 };
		nanosleep(&nap, NULL);
	}
	return NULL;
}

static void queued_signals(void)
{
	install(SIGUSR2, on_queued);
	union sigval v = { .sival_int = 99 };
	CHECK(sigqueue(getpid(), SIGUSR2, v) == 0);
	printf("sigqueue: value %d, code %s, from this pid %s\n", queued_value, queued_code == SI_QUEUE ? "SI_QUEUE" : "?",
	       queued_pid_ok ? "yes" : "no");
	queued_value = 0;
	pthread_t th;
	CHECK(pthread_create(&th, NULL, sleeper, NULL) == 0);
	v.sival_int = 123;
	CHECK(pthread_sigqueue(th, SIGUSR2, v) == 0);
	CHECK(pthread_join(th, NULL) == 0);
	printf("pthread_sigqueue: value %d, code %s\n", queued_value, queued_code == SI_QUEUE ? "SI_QUEUE" : "?");
}

static int rt_values[8], rt_count;
static void on_rt(int sig, siginfo_t *info, void *uc)
{
	(void)sig;
	(void)uc;
	if (rt_count < 8)
		rt_values[rt_count++] = info->si_value.sival_int;
}

/* Realtime signals queue: three sigqueues while blocked, three handlers,
 * in order, each with its value; a standard signal sent twice runs once. */
static void realtime_queue(void)
{
	int rt = SIGRTMIN + 1;
	install(rt, on_rt);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, rt);
	CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
	for (int v = 1; v <= 3; v++) {
		union sigval val = { .sival_int = v };
		CHECK(sigqueue(getpid(), rt, val) == 0);
	}
	CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
	printf("realtime queue: %d handlers, values %d %d %d\n", rt_count, rt_values[0], rt_values[1], rt_values[2]);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	signal_timer_while_computing();
	thread_id_timer();
	none_timer();
	overruns();
	glibc_thread_timer();
	queued_signals();
	realtime_queue();
	return 0;
}

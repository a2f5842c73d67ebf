/* Signals that reach the program from timers and notifications it set up,
 * which the broker (the process that really holds them) must pass on
 * rather than die of:
 *   prof    setitimer(ITIMER_PROF) while the program makes syscalls: SIGPROF
 *   notify  fcntl(F_NOTIFY) on a directory, then a file made in it: SIGIO
 *   cpu     ITIMER_PROF and ITIMER_VIRTUAL count the program's CPU time:
 *           they fire while it computes with no syscalls, not while it sleeps
 *   sender  prints its pid and waits for SIGUSR1 from another process: the
 *           handler's siginfo says SI_USER, that process's pid, our uid
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include "warptest.h"

static volatile sig_atomic_t got;

static void on_signal(int sig)
{
	got = sig;
}

static void handle(int sig)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	CHECK(sigaction(sig, &sa, NULL) == 0);
}

static int prof(void)
{
	handle(SIGPROF);
	struct itimerval it = { { 0, 1000 }, { 0, 1000 } };
	CHECK(setitimer(ITIMER_PROF, &it, NULL) == 0);
	int fd = open("/dev/null", O_WRONLY);
	CHECK(fd >= 0);
	char buf[4096] = { 0 };
	for (long i = 0; i < 1000000 && !got; i++)
		CHECK(write(fd, buf, sizeof buf) == sizeof buf);
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	CHECK(setitimer(ITIMER_PROF, &off, NULL) == 0);
	printf("prof: %s\n", got == SIGPROF ? "SIGPROF handled" : "no signal");
	return got == SIGPROF ? 0 : 1;
}

static volatile int profs;
static void on_prof(int sig)
{
	(void)sig;
	profs++;
}

static int cpu(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_prof;
	CHECK(sigaction(SIGPROF, &sa, NULL) == 0);
	struct itimerval it = { { 0, 10000 }, { 0, 10000 } };
	CHECK(setitimer(ITIMER_PROF, &it, NULL) == 0);
	volatile uint64_t h = FNV_INIT;
	for (uint64_t i = 0; profs < 3; i++)
		h = fnv1a(h, &i, sizeof i);
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	CHECK(setitimer(ITIMER_PROF, &off, NULL) == 0);
	printf("prof: %s while computing\n", profs >= 3 ? "3 or more SIGPROF" : "too few");

	handle(SIGVTALRM);
	got = 0;
	struct itimerval once = { { 0, 0 }, { 0, 20000 } };
	CHECK(setitimer(ITIMER_VIRTUAL, &once, NULL) == 0);
	struct timespec nap = { 0, 100 * 1000 * 1000 };
	CHECK(nanosleep(&nap, NULL) == 0);
	struct itimerval left;
	CHECK(getitimer(ITIMER_VIRTUAL, &left) == 0);
	printf("virtual: %s while sleeping, time left %s\n", got ? "a signal" : "no signal",
	       left.it_value.tv_usec > 0 && left.it_value.tv_sec == 0 ? "yes" : "no");
	for (uint64_t i = 0; !got; i++)
		h = fnv1a(h, &i, sizeof i);
	printf("virtual: %s after computing\n", got == SIGVTALRM ? "SIGVTALRM" : "?");
	CHECK(getitimer(ITIMER_VIRTUAL, &left) == 0);
	printf("virtual: disarmed after it fired %s\n", left.it_value.tv_usec == 0 && left.it_value.tv_sec == 0 ? "yes" : "no");
	return 0;
}

static volatile int from_code = 99, from_pid, from_uid = -1;
static void on_usr1(int sig, siginfo_t *info, void *uc)
{
	(void)sig;
	(void)uc;
	from_code = info->si_code;
	from_pid = info->si_pid;
	from_uid = (int)info->si_uid;
}

static int sender(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	printf("pid %d\n", (int)getpid());
	fflush(stdout);
	while (from_code == 99)
		pause();
	printf("SIGUSR1: code %s, from %s, uid %s\n", from_code == SI_USER ? "SI_USER" : "?",
	       from_pid > 0 && from_pid != getpid() ? "another process" : "?",
	       from_uid == (int)getuid() ? "ours" : "?");
	return 0;
}

static int notify(const char *dir)
{
	handle(SIGIO);
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_NOTIFY, DN_CREATE) == 0);
	char path[4096];
	snprintf(path, sizeof path, "%s/made", dir);
	int f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(f >= 0);
	close(f);
	for (int i = 0; i < 1000 && !got; i++)
		usleep(1000);
	printf("notify: %s\n", got == SIGIO ? "SIGIO handled" : "no signal");
	return got == SIGIO ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "prof"))
		return prof();
	if (argc > 1 && !strcmp(argv[1], "cpu"))
		return cpu();
	if (argc > 1 && !strcmp(argv[1], "sender"))
		return sender();
	if (argc > 2 && !strcmp(argv[1], "notify"))
		return notify(argv[2]);
	fprintf(stderr, "usage: host_signals prof | notify DIR\n");
	return 2;
}

/* Signals that reach the program from timers and notifications it set up,
 * which the broker (the process that really holds them) must pass on
 * rather than die of:
 *   prof    setitimer(ITIMER_PROF) while the program makes syscalls: SIGPROF
 *   notify  fcntl(F_NOTIFY) on a directory, then a file made in it: SIGIO
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/time.h>
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
	if (argc > 2 && !strcmp(argv[1], "notify"))
		return notify(argv[2]);
	fprintf(stderr, "usage: host_signals prof | notify DIR\n");
	return 2;
}

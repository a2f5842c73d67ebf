/* Deterministic facts about the system the program sees: uname sysname and
 * machine, getcwd equals $PWD, clocks are sane and monotonic, identity calls
 * agree with each other. Prints "ok"/"BAD" lines, never the values. */
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include "warptest.h"

static void check(const char *what, int ok)
{
	printf("%s: %s\n", what, ok ? "ok" : "BAD");
}

int main(void)
{
	struct utsname u;
	CHECK(uname(&u) == 0);
	printf("sysname %s\n", u.sysname);
	printf("machine %s\n", u.machine);

	char cwd[4096];
	CHECK(getcwd(cwd, sizeof cwd) != NULL);
	const char *pwd = getenv("PWD");
	check("getcwd equals $PWD", pwd && strcmp(cwd, pwd) == 0);
	errno = 0;
	char tiny[2];
	check("getcwd into 2 bytes is ERANGE", getcwd(tiny, sizeof tiny) == NULL && errno == ERANGE);

	struct timespec prev, now;
	CHECK(clock_gettime(CLOCK_MONOTONIC, &prev) == 0);
	int mono = 1;
	for (int i = 0; i < 1000; i++) {
		CHECK(clock_gettime(CLOCK_MONOTONIC, &now) == 0);
		if (now.tv_sec < prev.tv_sec ||
		    (now.tv_sec == prev.tv_sec && now.tv_nsec < prev.tv_nsec))
			mono = 0;
		prev = now;
	}
	check("CLOCK_MONOTONIC non-decreasing", mono);

	struct timespec real;
	CHECK(clock_gettime(CLOCK_REALTIME, &real) == 0);
	check("CLOCK_REALTIME after 2020", real.tv_sec > 1577836800);
	struct timeval tv;
	CHECK(gettimeofday(&tv, NULL) == 0);
	time_t t = time(NULL);
	check("gettimeofday near CLOCK_REALTIME", tv.tv_sec >= real.tv_sec && tv.tv_sec - real.tv_sec < 60);
	/* time() is the kernel's coarse clock, which may trail CLOCK_REALTIME by
	 * a tick: across a second's boundary it can still say the one before. */
	check("time near CLOCK_REALTIME", t >= real.tv_sec - 1 && t - real.tv_sec < 60);

	struct timespec nap = {0, 10 * 1000 * 1000}, before, after;
	CHECK(clock_gettime(CLOCK_MONOTONIC, &before) == 0);
	CHECK(nanosleep(&nap, NULL) == 0);
	CHECK(clock_gettime(CLOCK_MONOTONIC, &after) == 0);
	long long ns = (after.tv_sec - before.tv_sec) * 1000000000ll + (after.tv_nsec - before.tv_nsec);
	check("nanosleep 10ms takes at least 10ms", ns >= 10 * 1000 * 1000);

	check("getpid positive", getpid() > 0);
	check("getppid positive and different", getppid() > 0 && getppid() != getpid());
	check("getuid equals geteuid", getuid() == geteuid());
	check("getgid equals getegid", getgid() == getegid());
	puts("EXIT-SUCCESS");
	return 0;
}

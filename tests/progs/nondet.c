/* Prints values that differ from run to run: the time, random bytes, the
 * pid, addresses from mmap and malloc, /proc/uptime (read through the
 * broker). A recording matches a native run only in form; its replay must
 * print exactly what the recording printed. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include "warptest.h"

int main(void)
{
	struct timespec rt, mono;
	CHECK(clock_gettime(CLOCK_REALTIME, &rt) == 0);
	CHECK(clock_gettime(CLOCK_MONOTONIC, &mono) == 0);
	printf("realtime %lld.%09ld\n", (long long)rt.tv_sec, rt.tv_nsec);
	printf("monotonic %lld.%09ld\n", (long long)mono.tv_sec, mono.tv_nsec);
	printf("time %lld\n", (long long)time(NULL));

	unsigned char r[16];
	CHECK(getrandom(r, sizeof r, 0) == sizeof r);
	printf("random ");
	for (size_t i = 0; i < sizeof r; i++)
		printf("%02x", r[i]);
	printf("\n");

	printf("pid %d ppid %d\n", (int)getpid(), (int)getppid());
	void *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED);
	printf("mmap %p\n", m);
	printf("malloc %p\n", malloc(100));
	printf("stack %p\n", (void *)&r);

	int fd = open("/proc/uptime", O_RDONLY);
	CHECK(fd >= 0);
	char buf[128];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	CHECK(n > 0);
	buf[n] = 0;
	printf("uptime %s", buf);
	close(fd);
	puts("EXIT-SUCCESS");
	return 0;
}
